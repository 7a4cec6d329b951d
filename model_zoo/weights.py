"""Pretrained encoder weights: offline-only loading from the local caches, explicit fetching, and files.

``encoder_weights`` is ``imagenet`` (or another named smp weight set such as ``ssl``), ``None`` or a path.

- Named weights are read ONLY from the caches the libraries themselves use: the Hugging Face hub cache
  (smp's ``smp-hub/*`` repos and timm's ``timm/*`` repos; ``$HF_HUB_CACHE``) and torch hub's
  ``checkpoints/`` folder (torchvision and older timm URLs; ``$TORCH_HOME``). The loader only looks at the
  file system; a missing file raises :class:`MissingWeightsError`, which names the file and the command that
  fetches it (``python launch.py fetch-weights ENCODER``, which calls :func:`fetch` and so warms exactly
  these paths). Nothing ever falls back to random weights.
- A path (``.pth``/``.pt``/``.bin`` through ``torch.load(weights_only=True)``, or ``.safetensors``) is
  matched against the encoder's keys (common prefixes such as ``module.``/``encoder.`` are handled);
  missing/unexpected keys are reported, and a file that matches nothing is an error. A missing file is a
  :class:`MissingWeightsError` too.
- :func:`require_cached` and :func:`file_problem` tell, without building anything, whether an encoder's
  weights can be loaded on this machine, so that a search can refuse before its trials start (they run
  in their own folders, on other nodes, and would each fail the same way).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import torch
from torch import nn

from model_zoo.errors import UserError

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


class MissingWeightsError(UserError, FileNotFoundError):
    """Pretrained weights were asked for but are not in the local cache."""


@dataclass(frozen=True)
class CachedFile:
    """One file that a named weight set is read from: a Hugging Face hub file or a torch hub URL."""

    kind: Literal["hf", "url"]
    repo_id: str = ""
    filenames: tuple[str, ...] = ()  # alternatives (hf): the first one present is used
    revision: str | None = None
    url: str = ""

    def describe(self) -> str:
        if self.kind == "hf":
            rev = f"@{self.revision}" if self.revision else ""
            return f"hf://{self.repo_id}{rev}/{' or '.join(self.filenames)} (in {hf_cache_dir()})"
        return f"{self.url} (as {self.url_path()})"

    def url_path(self) -> Path:
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(self.url).path)

    def find(self) -> Path | None:
        """The cached path, looking only at the local file system."""
        if self.kind == "url":
            path = self.url_path()
            return path if path.is_file() else None
        from huggingface_hub import try_to_load_from_cache

        for name in self.filenames:
            found = try_to_load_from_cache(
                self.repo_id, name, cache_dir=hf_cache_dir(), revision=self.revision
            )
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found)
        return None

    def fetch(self) -> Path:
        """Download into the cache that :meth:`find` reads (needs internet)."""
        found = self.find()
        if found is not None:
            return found
        if self.kind == "url":
            path = self.url_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(self.url, str(path), progress=True)
            return path
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import RemoteEntryNotFoundError

        last: Exception | None = None
        for name in self.filenames:
            try:
                return Path(
                    hf_hub_download(self.repo_id, name, revision=self.revision, cache_dir=hf_cache_dir())
                )
            except RemoteEntryNotFoundError as exc:  # the repo lacks this name: try the next one
                last = exc
        raise FileNotFoundError(f"none of {self.filenames} exists in hf://{self.repo_id}") from last


def hf_cache_dir() -> str:
    """The Hugging Face hub cache folder (``$HF_HUB_CACHE``), read at call time."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def absolute_path(weights: str | None, base: str | Path | None = None) -> str | None:
    """``weights`` with a relative file path made absolute against ``base`` (default: the current folder);
    names and None unchanged. Ray trials run in their own folders, where a relative path names nothing."""
    if weights is None or is_named(weights):
        return weights
    path = Path(weights).expanduser()
    if not path.is_absolute():
        path = Path(base if base is not None else Path.cwd()) / path
    return os.path.normpath(path)  # symlinks kept: a shared mount may be reached through one on every node


def file_problem(weights: str) -> str | None:
    """Why the weights file ``weights`` cannot be read here (None when it can), without reading it: a
    relative path, a suffix other than :data:`WEIGHT_SUFFIXES`, a missing or unreadable file."""
    path = Path(weights)
    if not path.is_absolute():
        return (
            f"encoder weights {weights!r}: a relative path; give an absolute one (trials run in their own "
            "folders, on any node; `launch.py search` makes it absolute against the current folder)"
        )
    if path.suffix not in WEIGHT_SUFFIXES:
        return f"encoder weights {weights!r}: expected one of {', '.join(WEIGHT_SUFFIXES)}"
    if not path.is_file():
        return f"encoder weights file {weights!r} does not exist"
    if not os.access(path, os.R_OK):
        return f"encoder weights file {weights!r} is not readable"
    return None


def is_named(weights: str | None) -> bool:
    """True for a weight-set name (``imagenet``, ``ssl``, ...), False for None or a file path."""
    return weights is not None and not _looks_like_path(weights)


def _looks_like_path(weights: str) -> bool:
    return weights.lower().endswith(WEIGHT_SUFFIXES) or "/" in weights or os.sep in weights


def sources(encoder: str, weights: str = "imagenet") -> list[CachedFile]:
    """The cache files a named weight set of ``encoder`` is read from (all must be present)."""
    from model_zoo.plain_encoder import PLAIN_ENCODERS

    if encoder in PLAIN_ENCODERS:
        raise ValueError(
            f"encoder {encoder!r} (nnU-Net's plain encoder) has no pretrained weights, so it cannot use "
            f"encoder_weights: {weights!r}; use null (from scratch) or a state-dict file path"
        )
    if encoder.startswith("tu-"):
        return [_timm_source(encoder[3:], weights)]
    if encoder.startswith("tv-"):
        return [_torchvision_source(encoder[3:], weights)]
    from segmentation_models_pytorch.encoders import encoders as smp_encoders

    if encoder not in smp_encoders:
        raise ValueError(f"unknown encoder {encoder!r}")
    settings = smp_encoders[encoder]["pretrained_settings"]
    if weights not in settings:
        raise ValueError(
            f"encoder {encoder!r} has no weights named {weights!r}; valid: {', '.join(settings)}, "
            "null or a file path"
        )
    repo, rev = settings[weights]["repo_id"], settings[weights]["revision"]
    return [
        CachedFile("hf", repo, ("config.json",), rev),
        CachedFile("hf", repo, ("model.safetensors",), rev),
    ]


def _timm_source(model_name: str, weights: str) -> CachedFile:
    from timm.models import get_pretrained_cfg, list_pretrained

    if weights != "imagenet":
        raise ValueError(
            f"tu-{model_name}: timm weights are chosen by a tag in the name (e.g. tu-resnet18.a1_in1k); "
            f"use encoder_weights: imagenet, null or a file path, got {weights!r}"
        )
    cfg = get_pretrained_cfg(model_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        tags = ", ".join(list_pretrained(model_name.split(".")[0] + ".*")[:8]) or "none"
        raise ValueError(f"timm model {model_name!r} has no pretrained weights (pretrained tags: {tags})")
    if cfg.hf_hub_id:
        repo, _, rev = cfg.hf_hub_id.partition("@")
        names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
        return CachedFile("hf", repo, names, rev or None)
    return CachedFile("url", url=cfg.url)


def _torchvision_source(model_name: str, weights: str) -> CachedFile:
    from torchvision.models import get_model_weights

    if weights != "imagenet":
        raise ValueError(
            f"tv-{model_name}: only encoder_weights imagenet, null or a file path, got {weights!r}"
        )
    return CachedFile("url", url=get_model_weights(model_name).DEFAULT.url)


def require_cached(encoder: str, weights: str = "imagenet") -> list[Path]:
    """Paths of the cached files of a named weight set; :class:`MissingWeightsError` if any is missing."""
    files = sources(encoder, weights)
    found = [f.find() for f in files]
    missing = [f.describe() for f, p in zip(files, found) if p is None]
    if missing:
        raise MissingWeightsError(
            f"encoder {encoder!r} with encoder_weights={weights!r}: pretrained weights are not in the "
            f"local cache (builds never download). Missing: {'; '.join(missing)}. On a machine with "
            f"internet run `python launch.py fetch-weights {encoder}"
            f"{'' if weights == 'imagenet' else f' --weights {weights}'}` and copy the caches "
            f"($HF_HUB_CACHE, $TORCH_HOME/hub) here, or set encoder_weights: null to train from scratch."
        )
    return [p for p in found if p is not None]


def fetch(encoder: str, weights: str = "imagenet") -> list[Path]:
    """Download a named weight set into the caches :func:`require_cached` reads (needs internet)."""
    return [f.fetch() for f in sources(encoder, weights)]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` file, loaded without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"encoder weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"encoder weights {str(path)!r}: expected one of {', '.join(WEIGHT_SUFFIXES)}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"encoder weights {str(path)!r} cannot be read as a weights-only state dict: {exc}"
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"encoder weights {str(path)!r}: expected a state dict, got {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


@dataclass
class LoadReport:
    """How a state dict matched a module: loaded, missing, unexpected, shape-mismatched and ignored keys.

    ``ignored`` are the file's keys outside the prefix the encoder was found under (``encoder.`` of a
    whole-model checkpoint leaves ``decoder.*`` aside); only missing/unexpected/mismatched keys warn.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (" ..." if len(keys) > 5 else "")

        parts = [f"{len(self.loaded)} tensors loaded from {self.source}"]
        for name, keys in (
            ("missing", self.missing),
            ("unexpected", self.unexpected),
            ("shape-mismatched", self.mismatched),
            ("ignored (other parts of the file)", self.ignored),
        ):
            if keys:
                parts.append(f"{len(keys)} {name} ({few(keys)})")
        return "; ".join(parts)


_STRIP = ("module.", "encoder.", "model.", "body.", "backbone.")


def _remap(source: dict[str, torch.Tensor], target_keys: set[str]) -> dict[str, str]:
    """Target name -> source name, by the one prefix rule (strip / add) that matches most target keys."""
    rules: list[tuple[str, str]] = [("", "")] + [(p, "") for p in _STRIP] + [("", p) for p in _STRIP]
    rules += [(s, a) for s in _STRIP for a in _STRIP if s != a]
    best: dict[str, str] = {}
    best_hits = -1
    for strip, add in rules:
        renamed = {add + k[len(strip) :]: k for k in source if k.startswith(strip)}
        hits = len(target_keys & renamed.keys())
        if hits > best_hits:
            best, best_hits = renamed, hits
    return best


def load_into(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> LoadReport:
    """Load matching tensors into ``module``; warn on missing/unexpected keys, raise when nothing matches."""
    own = module.state_dict()
    names = _remap(state_dict, set(own))
    report = LoadReport(source)
    usable = {}
    for key, src in names.items():
        value = state_dict[src]
        if key not in own:
            report.unexpected.append(src)
        elif own[key].shape != value.shape:
            report.mismatched.append(f"{src} {tuple(value.shape)} vs {tuple(own[key].shape)}")
        else:
            usable[key] = value
    kept = set(names.values())
    report.ignored = [
        k for k in state_dict if k not in kept
    ]  # outside the prefix the encoder was found under
    report.loaded = sorted(usable)
    report.missing = sorted(k for k in own if k not in usable and not k.endswith("num_batches_tracked"))
    if not usable:
        raise ValueError(
            f"encoder weights {source}: no tensor matches the encoder ({report.summary()}); "
            f"expected keys like {', '.join(list(own)[:3])}"
        )
    module.load_state_dict(usable, strict=False)
    if report.missing or report.unexpected or report.mismatched:
        warnings.warn(f"encoder weights: {report.summary()}", UserWarning, stacklevel=2)
    return report
