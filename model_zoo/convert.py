"""A ``model:`` section (a plain dict) -> :class:`ModelConfig`, strictly.

The full spec validator lives in ``trainables/schema.py``; model_zoo does not import trainables, so a plain
dict is converted here by a small strict converter: unknown keys, values of the wrong type, values outside
a ``Literal`` or the field's ``choices`` and numbers outside its ``min``/``max``/``gt``/``lt`` are errors
that name the dotted path. A config read from a file (a model bundle) thus fails here, with the field
named, before any layer is sized from it. Its own module, since both :mod:`model_zoo.build` and
:mod:`model_zoo.network` need it and the first imports the second.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import operator
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from model_zoo.config import ModelConfig

D = TypeVar("D")


def _accepts(kind: Any, value: Any) -> bool:
    """Whether ``value`` (parsed JSON/YAML) has the type hint ``kind`` of a config field."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arm, value) for arm in args)
    if kind is type(None):
        return value is None
    if kind is Any:
        return True
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(_accepts(args[0], v) for v in value)
    if origin is dict:
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
    return True  # a hint this converter does not know: left to the constructor


def _kind_text(kind: Any) -> str:
    """'an integer', 'a string or null', 'a list of strings', ... for error messages."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_kind_text(arm) for arm in args)
    if origin is list:
        return f"a list of {_kind_text(args[0]).split(' ', 1)[1]}s"
    if origin is dict:
        return "a mapping"
    names = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}
    return names.get(kind, "null" if kind is type(None) else f"a {getattr(kind, '__name__', kind)}")


_BOUNDS = {
    "min": (">=", operator.ge),
    "max": ("<=", operator.le),
    "gt": (">", operator.gt),
    "lt": ("<", operator.lt),
}


def _check_range(value: float, meta: Mapping[str, Any], path: str) -> None:
    """The field's ``min``/``max``/``gt``/``lt`` metadata (as ``trainables/schema.py`` states them)."""
    broken = [
        f"{sign} {meta[key]}"
        for key, (sign, ok) in _BOUNDS.items()
        if key in meta and not ok(value, meta[key])
    ]
    if broken:
        raise ValueError(f"{path}: expected a value {' and '.join(broken)}, got {value!r}")


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
        kind, meta, where = hints[key], fields[key].metadata, f"{path}.{key}"
        if dataclasses.is_dataclass(kind):
            value = _from_dict(kind, value, where)
        elif typing.get_origin(kind) is typing.Literal:
            if value not in typing.get_args(kind):
                raise ValueError(
                    f"{where}: {value!r} is not one of {', '.join(map(repr, typing.get_args(kind)))}"
                )
        elif not _accepts(kind, value):
            raise ValueError(f"{where}: expected {_kind_text(kind)}, got {value!r}")
        elif "choices" in meta and value not in meta["choices"]:
            raise ValueError(f"{where}: {value!r} is not one of {', '.join(map(repr, meta['choices']))}")
        elif kind in (int, float):
            _check_range(value, meta, where)
            value = float(value) if kind is float else value
        kwargs[key] = value
    return cls(**kwargs)


def model_config_from_dict(data: Mapping[str, Any] | ModelConfig, path: str = "model") -> ModelConfig:
    """A :class:`ModelConfig` from the ``model:`` section of a spec (missing keys take their defaults)."""
    return _from_dict(ModelConfig, data, path)
