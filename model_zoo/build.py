"""``build_model(cfg)``: the one entry point from a ``model:`` section (dict or :class:`ModelConfig`).

The full spec validator lives in ``trainables/schema.py``; model_zoo does not import trainables, so a plain
dict is converted here by a small strict converter: unknown keys and values outside a ``Literal`` are
errors that name the dotted path and list the valid choices. Component names are checked by their
registries when the model is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from model_zoo.config import ModelConfig
from model_zoo.network import JointNet

D = TypeVar("D")


def _from_dict(cls: type[D], data: Any, path: str) -> D:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" Did you mean {path}.{close[0]}?" if close else ""
            raise ValueError(f"{path}.{key}: unknown key.{hint} Valid: {', '.join(fields)}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            value = _from_dict(kind, value, f"{path}.{key}")
        elif typing.get_origin(kind) is typing.Literal and value not in typing.get_args(kind):
            raise ValueError(
                f"{path}.{key}: {value!r} is not one of {', '.join(map(repr, typing.get_args(kind)))}"
            )
        elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{path}.{key}: expected an integer, got {value!r}")
        elif kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{path}.{key}: expected a number, got {value!r}")
        elif kind is float:
            value = float(value)
        kwargs[key] = value
    return cls(**kwargs)


def model_config_from_dict(data: Mapping[str, Any] | ModelConfig, path: str = "model") -> ModelConfig:
    """A :class:`ModelConfig` from the ``model:`` section of a spec (missing keys take their defaults)."""
    return _from_dict(ModelConfig, data, path)


def build_model(cfg: ModelConfig | Mapping[str, Any], class_names: Sequence[str] | None = None) -> JointNet:
    """Build the joint network named by ``cfg``; ``class_names`` (label order) resolve named latent-aug targets."""
    return JointNet(model_config_from_dict(cfg), class_names=class_names)
