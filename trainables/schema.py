"""The spec validator for the trainables and above, and the field listing for docs.

Validation is pydantic v2 over the spec dataclasses, worded by :mod:`model_zoo.schema` (the bottom of the
import order, so the model zoo checks bundles with the same types); its names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, get_args, get_origin

from model_zoo.schema import (
    Section,
    SpecError,
    bounds_text,
    check,
    error_messages,
    from_dict,
    hints,
    json_schema,
    to_dict,
    unpack,
)

__all__ = [
    "Section",
    "SpecError",
    "check",
    "dataclass_of",
    "describe_schema",
    "error_messages",
    "field_types",
    "format_schema",
    "from_dict",
    "json_schema",
    "to_dict",
]


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every field of dataclass ``cls`` (``Annotated`` validators stripped)."""
    return typing.get_type_hints(cls)


def dataclass_of(tp: Any) -> type | None:
    """The dataclass a field type holds (also through ``X | None``), or None for a leaf type."""
    tp = unpack(tp)[0]
    options = get_args(tp) if get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    found = [a for a in options if isinstance(a, type) and dataclasses.is_dataclass(a)]
    return found[0] if len(found) == 1 else None


def _type_text(tp: Any) -> str:
    """Compact type for docs: 'float', 'str | None', 'adamw | sgd', 'tuple[float, float]'."""
    tp = unpack(tp)[0]
    if tp is type(None):
        return "None"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join("..." if a is Ellipsis else _type_text(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return to_dict(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return to_dict(f.default_factory())
    return dataclasses.MISSING


def describe_schema(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Rows ``(dotted key, type, default, description)`` of every leaf field, for docs and ``--help``.

    The type column carries the bounds (``float > 0``); nested sections are expanded in place.
    """
    rows: list[tuple[str, str, Any, str]] = []
    for f in dataclasses.fields(cls):
        key, tp = f"{prefix}{f.name}", hints(cls)[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            rows.extend(describe_schema(tp, f"{key}."))
            continue
        bounds = bounds_text(f.metadata)
        type_text = f"{_type_text(tp)} {bounds}" if bounds else _type_text(tp)
        rows.append((key, type_text, _default(f), str(f.metadata.get("description", ""))))
    return rows


def format_schema(cls: type) -> str:
    """:func:`describe_schema` as an aligned plain-text table (one field per line)."""
    rows = [
        (k, t, "(required)" if d is dataclasses.MISSING else json.dumps(d), h)
        for k, t, d, h in describe_schema(cls)
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{k:<{widths[0]}}  {t:<{widths[1]}}  {d:<{widths[2]}}  {h}".rstrip() for k, t, d, h in rows]
    return "\n".join(lines)
