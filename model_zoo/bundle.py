"""A trained model as one ``safetensors`` file: weights plus JSON metadata, no pickle anywhere.

The header metadata (strings) holds ``format`` (:data:`BUNDLE_KIND`), ``format_version``
(:data:`BUNDLE_FORMAT`), ``project_version``, ``created`` (UTC ISO time), ``libraries`` (torch/timm/smp
versions, informational), ``model_config`` (the ``model:`` section as JSON) and ``meta`` (JSON: class names,
input size, preprocessing such as the resize mode, and the input normalisation the network applies itself).
Loading rebuilds the network from ``model_config`` with ``encoder_weights: null`` (the bundle carries every
weight, so no weight cache is needed) and loads the tensors strictly.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from model_zoo.network import JointNet

BUNDLE_KIND = "bus-search/joint-net"
BUNDLE_FORMAT = 1


class BundleError(ValueError):
    """A file that is not a readable model bundle of a compatible format."""


def _libraries() -> dict[str, str]:
    import segmentation_models_pytorch as smp
    import timm

    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "segmentation_models_pytorch": smp.__version__,
    }


def save_bundle(path: str | Path, model: torch.nn.Module, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` and ``meta`` (JSON-serialisable: class_names, input_size, preprocessing, ...) to ``path``.

    The input normalisation and the model's class names are added to ``meta``; the file is written to a
    temporary name and moved into place, so a crash never leaves a half-written bundle under ``path``.
    """
    from safetensors.torch import save_model

    from model_zoo import __version__

    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves its underlying network
    if not isinstance(model, JointNet):
        raise TypeError(f"save_bundle expects a JointNet (from build_model), got {type(model).__name__}")
    meta = dict(meta or {})
    names = meta.get("class_names", model.class_names)
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != model.config.num_classes:
            raise ValueError(
                f"meta.class_names has {len(names)} names for {model.config.num_classes} classes"
            )
        meta["class_names"] = names
    meta["normalisation"] = {
        "mean": model.input_mean.flatten().tolist(),
        "std": model.input_std.flatten().tolist(),
        "input": "gray [B,1,H,W] in [0,1], repeated to RGB by the network",
    }
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"save_bundle: meta must be JSON-serialisable: {exc}") from exc
    header = {
        "format": BUNDLE_KIND,
        "format_version": str(BUNDLE_FORMAT),
        "project_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "libraries": json.dumps(_libraries(), sort_keys=True),
        "model_config": json.dumps(model.config_dict(), sort_keys=True),
        "meta": meta_json,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp), metadata=header)
    os.replace(tmp, path)
    return path


def read_bundle_header(path: str | Path) -> dict[str, str]:
    """The string metadata of a bundle, checked for kind and format version (tensors are not read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model bundle {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for bad headers and short files
        raise BundleError(
            f"{path}: not a readable safetensors file (truncated, corrupt or not a model bundle): {exc}"
        ) from exc
    if header.get("format") != BUNDLE_KIND:
        raise BundleError(
            f"{path}: a safetensors file but not a model bundle (format={header.get('format')!r}, "
            f"expected {BUNDLE_KIND!r}); bundles are written by model_zoo.save_bundle"
        )
    version = header.get("format_version", "?")
    if version != str(BUNDLE_FORMAT):
        raise BundleError(
            f"{path}: bundle format {version} (written by project version "
            f"{header.get('project_version', '?')}) is incompatible with this code, which reads "
            f"format {BUNDLE_FORMAT}; load it with the project version that wrote it"
        )
    for key in ("model_config", "meta"):
        if key not in header:
            raise BundleError(f"{path}: bundle metadata lacks {key!r}")
    return header


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> tuple[JointNet, dict[str, Any]]:
    """Rebuild the network of a bundle, in eval mode on ``device``; returns ``(model, meta)``.

    ``meta`` is the saved meta plus ``model_config`` (as saved), ``format_version``, ``project_version``,
    ``created`` and ``libraries``.
    """
    from safetensors.torch import load_model

    from model_zoo.build import build_model, model_config_from_dict

    header = read_bundle_header(path)
    try:
        config_dict = json.loads(header["model_config"])
        meta = json.loads(header["meta"])
        libraries = json.loads(header.get("libraries", "{}"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: bundle metadata is not valid JSON: {exc}") from exc
    config = dataclasses.replace(model_config_from_dict(config_dict), encoder_weights=None)
    model = build_model(config, class_names=meta.get("class_names"))
    try:
        missing, unexpected = load_model(model, str(path), strict=False, device="cpu")
    except RuntimeError as exc:  # shape mismatches
        raise BundleError(f"{path}: weights do not fit the network built from its config: {exc}") from exc
    except Exception as exc:
        raise BundleError(f"{path}: cannot read the bundle's tensors (truncated or corrupt?): {exc}") from exc
    if missing or unexpected:
        raise BundleError(
            f"{path}: weights do not match the network built from its config "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    meta.update(
        model_config=config_dict,
        format_version=int(header["format_version"]),
        project_version=header.get("project_version"),
        created=header.get("created"),
        libraries=libraries,
    )
    return model.to(device).eval(), meta
