"""A trained model as one ``safetensors`` file: weights plus JSON metadata, no pickle anywhere.

The header metadata (strings) holds ``format`` (:data:`BUNDLE_KIND`), ``format_version``
(:data:`BUNDLE_FORMAT`), ``project_version``, ``created`` (UTC ISO time), ``libraries`` (torch/timm/smp
versions, informational), ``model_config`` (the ``model:`` section as JSON) and ``meta`` (JSON: class names,
input size, preprocessing such as the resize mode, and the input normalisation the network applies itself).
Loading rebuilds the network from ``model_config`` with ``encoder_weights: null`` (the bundle carries every
weight, so no weight cache is needed) and loads the tensors strictly.

A bundle is a file someone hands over, so loading trusts nothing in it before checking it: the metadata's
types and ranges (:func:`check_meta`, :func:`model_config_from_dict`), then the tensor names and shapes in
the file header against a skeleton of the network built on the ``meta`` device (no memory), and only then
builds the real network. Every failure is a :class:`BundleError` naming the file and the field or tensor.
Bundles are written with mode 0644 (readable on shared storage) unless ``save_bundle(mode=...)`` says
otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from model_zoo.config import ModelConfig
from model_zoo.errors import UserError
from model_zoo.files import replace_atomically
from model_zoo.network import JointNet

BUNDLE_KIND = "bus-search/joint-net"
BUNDLE_FORMAT = 1
BUNDLE_MODE = 0o644  # shared storage: other users read bundles; save_bundle(mode=0o600) keeps one private
MAX_INPUT_SIZE = 8192  # working size bound for meta sizes: far above any ultrasound use, below absurd
RESIZE_MODES = ("letterbox", "stretch")


class BundleError(UserError, ValueError):
    """A file that is not a readable model bundle of a compatible format."""


def _libraries() -> dict[str, str]:
    import segmentation_models_pytorch as smp
    import timm

    return {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "segmentation_models_pytorch": smp.__version__,
    }


def save_bundle(
    path: str | Path,
    model: torch.nn.Module,
    meta: Mapping[str, Any] | None = None,
    mode: int = BUNDLE_MODE,
) -> Path:
    """Write ``model`` and ``meta`` (JSON-serialisable: class_names, input_size, preprocessing, ...) to
    ``path``.

    The input normalisation and the model's class names are added to ``meta``, which is checked as
    :func:`load_bundle` will check it, so a written bundle always loads. The file is written to a temporary
    name, given ``mode`` (default 0644: safetensors alone writes 0600, which other readers of shared
    storage cannot open) and moved into place, so a crash never leaves a half-written bundle under ``path``.
    """
    from safetensors.torch import save_model

    from model_zoo import __version__

    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves its underlying network
    if not isinstance(model, JointNet):
        raise TypeError(f"save_bundle expects a JointNet (from build_model), got {type(model).__name__}")
    meta = dict(meta or {})
    names = meta.get("class_names", model.class_names)
    if isinstance(names, list | tuple):
        meta["class_names"] = [str(n) for n in names]
    elif names is not None:
        meta["class_names"] = names  # refused below: class names are a list
    meta["normalisation"] = {
        "mean": model.input_mean.flatten().tolist(),
        "std": model.input_std.flatten().tolist(),
        "input": "gray [B,1,H,W] in [0,1], repeated to RGB by the network",
    }
    try:
        meta_json = json.dumps(meta, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"save_bundle: meta must be JSON-serialisable: {exc}") from exc
    check_meta(json.loads(meta_json), model.config, "save_bundle")
    header = {
        "format": BUNDLE_KIND,
        "format_version": str(BUNDLE_FORMAT),
        "project_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "libraries": json.dumps(_libraries(), sort_keys=True),
        "model_config": json.dumps(model.config_dict(), sort_keys=True),
        "meta": meta_json,
    }

    def write(tmp: Path) -> None:
        save_model(model, str(tmp), metadata=header)
        os.chmod(tmp, mode)

    return replace_atomically(path, write)


def _kind(value: Any) -> str:
    """A JSON value's kind and a short view of it, for error messages."""
    if value is None:
        return "null"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    text = json.dumps(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{names.get(type(value), 'a number')} {text}"


def _mapping(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """``parent[key]`` when it is a JSON object, {} when absent or null; else a :class:`BundleError`."""
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BundleError(f"{where}.{key}: expected a JSON object, got {_kind(value)}")
    return value


def _check_int(parent: Mapping[str, Any], key: str, where: str, lo: int, hi: int | None = None) -> None:
    value = parent.get(key)
    if value is None:
        return
    ok = (
        isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    )
    if not ok:
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise BundleError(f"{where}.{key}: expected an integer {bound}, got {_kind(value)}")


def check_meta(meta: Any, config: ModelConfig, where: str = "meta") -> dict[str, Any]:
    """``meta`` (parsed JSON) checked field by field for what this project's readers use; returns it.

    ``class_names``: distinct non-empty strings, one per class of ``config``; working sizes
    (``input_size``, ``image_size``, ``preprocessing.image_size``, ``spec.data.image_size``): integers up to
    :data:`MAX_INPUT_SIZE` that fit the network's input rules; ``resize``: letterbox or stretch;
    ``min_area`` >= 0; ``tau`` > 0; ``fold``/``epoch`` >= 0; ``preprocessing``, ``spec``, ``source``,
    ``metrics`` and ``normalisation``: objects. Raises :class:`BundleError` naming the first bad field.
    """
    from model_zoo.network import InputShapeError, check_input_shape

    if not isinstance(meta, dict):
        raise BundleError(f"{where}: meta: expected a JSON object, got {_kind(meta)}")
    at = f"{where}: meta"
    names = meta.get("class_names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise BundleError(f"{at}.class_names: expected a list of non-empty strings, got {_kind(names)}")
        if len(set(names)) != len(names):
            raise BundleError(f"{at}.class_names: names must differ, got {names}")
        if len(names) != config.num_classes:
            raise BundleError(
                f"{at}.class_names has {len(names)} names for {config.num_classes} classes "
                "(model_config.num_classes)"
            )
    pre = _mapping(meta, "preprocessing", at)
    spec = _mapping(meta, "spec", at)
    data, train = _mapping(spec, "data", f"{at}.spec"), _mapping(spec, "train", f"{at}.spec")
    for key in ("source", "metrics", "normalisation"):
        _mapping(meta, key, at)
    sizes = [(meta, "input_size", at), (meta, "image_size", at), (pre, "image_size", f"{at}.preprocessing")]
    for parent, key, place in [*sizes, (data, "image_size", f"{at}.spec.data")]:
        _check_int(parent, key, place, 1, MAX_INPUT_SIZE)
        if parent.get(key) is not None:
            try:
                check_input_shape(config, parent[key], parent[key])
            except InputShapeError as exc:
                raise BundleError(f"{place}.{key}: {parent[key]} does not fit the network: {exc}") from None
            except Exception as exc:  # an unknown encoder or decoder name, a decoder option smp rejects
                raise BundleError(f"{where}: model_config: {type(exc).__name__}: {exc}") from exc
    for parent, place in [(pre, f"{at}.preprocessing"), (data, f"{at}.spec.data")]:
        if parent.get("resize") is not None and parent["resize"] not in RESIZE_MODES:
            raise BundleError(
                f"{place}.resize: expected one of {', '.join(RESIZE_MODES)}, got {_kind(parent['resize'])}"
            )
    for parent, place in [(meta, at), (train, f"{at}.spec.train")]:
        _check_int(parent, "min_area", place, 0)
        tau = parent.get("tau")
        if tau is not None and (
            isinstance(tau, bool) or not isinstance(tau, int | float) or not math.isfinite(tau) or tau <= 0
        ):
            raise BundleError(f"{place}.tau: expected a positive number, got {_kind(tau)}")
    for key in ("fold", "epoch"):
        _check_int(meta, key, at, 0)
    return meta


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


def _json_object(header: Mapping[str, str], key: str, path: Path) -> dict[str, Any]:
    """``header[key]`` parsed as a JSON object, or a :class:`BundleError` naming the field."""
    try:
        value = json.loads(header.get(key, "{}"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: bundle metadata {key!r} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BundleError(f"{path}: bundle metadata {key!r}: expected a JSON object, got {_kind(value)}")
    return value


def _skeleton(config: ModelConfig, class_names: Sequence[str] | None, path: Path) -> JointNet:
    """The network of ``config`` on the ``meta`` device: every shape, no memory, whatever the sizes."""
    from model_zoo.build import build_model

    try:
        with torch.device("meta"):
            return build_model(config, class_names=class_names)
    except Exception as exc:  # an unknown component, an option smp rejects, ...
        raise BundleError(
            f"{path}: model_config: cannot build the network ({type(exc).__name__}: {exc})"
        ) from exc


def check_tensor_shapes(path: str | Path, model: torch.nn.Module) -> None:
    """Compare the tensor names and shapes in the file header with ``model``'s state dict (no tensor read).

    ``model`` may live on the ``meta`` device, so a config that would need a huge network is refused
    before anything is allocated. Raises :class:`BundleError` naming up to five differing tensors.
    """
    from safetensors import safe_open

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = f.keys()
            found = {k: tuple(f.get_slice(k).get_shape()) for k in keys}
    except Exception as exc:
        raise BundleError(
            f"{path}: cannot read the bundle's tensor header (truncated or corrupt?): {exc}"
        ) from exc
    problems = [f"{k!r} missing from the file" for k in sorted(set(expected) - set(found))]
    problems += [f"{k!r} not in the network" for k in sorted(set(found) - set(expected))]
    problems += [
        f"{k!r} is {list(found[k])} in the file but {list(expected[k])} in the network"
        for k in sorted(set(found) & set(expected))
        if found[k] != expected[k]
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise BundleError(
            f"{path}: weights do not match the network built from its model_config ({len(problems)} "
            f"tensor(s): {shown}); the file's model_config was changed or the weights belong to another model"
        )


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> tuple[JointNet, dict[str, Any]]:
    """Rebuild the network of a bundle, in eval mode on ``device``; returns ``(model, meta)``.

    Checks before building: metadata types and ranges, then tensor shapes against a ``meta``-device
    skeleton (see the module docstring). ``meta`` is the saved meta plus ``model_config`` (as saved),
    ``format_version``, ``project_version``, ``created`` and ``libraries``.
    """
    from safetensors.torch import load_model

    from model_zoo.build import build_model, model_config_from_dict

    path = Path(path)
    header = read_bundle_header(path)
    config_dict = _json_object(header, "model_config", path)
    meta = _json_object(header, "meta", path)
    libraries = _json_object(header, "libraries", path)
    try:
        config = dataclasses.replace(
            model_config_from_dict(config_dict, "model_config"), encoder_weights=None
        )
    except ValueError as exc:
        raise BundleError(f"{path}: {exc}") from exc
    check_meta(meta, config, str(path))
    names = meta.get("class_names")
    check_tensor_shapes(path, _skeleton(config, names, path))
    model = build_model(config, class_names=names)
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
