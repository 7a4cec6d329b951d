"""One generic validator: plain dict <-> typed dataclass, with errors that name the dotted path.

Each spec section is a dataclass owned by the package that uses it (see docs/architecture.md, "Config
objects"); this module reads the field types and these optional ``field(metadata=...)`` keys:

- ``help``: one line for docs (:func:`describe_schema`);
- ``min`` / ``max``: inclusive bounds, ``gt`` / ``lt``: exclusive bounds;
- ``choices``: allowed values;
- ``check``: a callable ``check(value) -> None`` raising ``ValueError`` / ``KeyError`` with a message that
  lists the valid names; the message is kept and prefixed with the dotted path.

Bounds and ``choices`` apply to every scalar inside the field (each number of a ``list[int]``, each
value of a ``dict[str, float]``); ``check`` gets the whole converted value, once, and never ``None``.
A dataclass may define ``validate(self) -> list[str]`` for rules that span fields; each message starts
with a dotted key relative to that object and is prefixed with its path.

All errors of one document are collected and raised together as one :class:`SpecError`, one per line.
Type rules are strict (a YAML ``yes``/``1`` is not a string, ``1`` is not ``true``) with two exceptions
made for YAML: a float field accepts an int and a numeric string (PyYAML reads ``1e-3``, without a dot,
as a string), and an int field accepts an integral float or numeric string (``1e3``, ``2.0``).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from model_zoo.errors import UserError

T = TypeVar("T")

_NONE = type(None)


class SpecError(UserError, ValueError):
    """Invalid spec data; every line of the message starts with the dotted path of the bad field."""

    def __init__(self, errors: str | list[str], source: str | None = None) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.source = source  # the file the data came from, when known
        super().__init__("\n".join(self.errors))


class _Invalid:
    """Marks a value that failed conversion (its error is already recorded)."""


_INVALID = _Invalid()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    return repr(value)


# ----------------------------------------------------------------------------------------- types


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _bounds_text(meta: Mapping[str, Any]) -> str:
    lo = ("[", meta["min"]) if "min" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["max"]) if "max" in meta else (")", meta["lt"]) if "lt" in meta else None
    if lo and hi:
        return f"in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {lo[1]}"
    if hi:
        return f"{'<=' if hi[0] == ']' else '<'} {hi[1]}"
    return ""


def _number_text(kind: str, meta: Mapping[str, Any], plural: bool = False) -> str:
    """'a positive number', 'an integer >= 32', 'numbers in [0, 1)', ..."""
    noun = "integer" if kind == "int" else "number"
    only_lower = not ({"max", "lt"} & set(meta))
    if only_lower and (meta.get("gt") == 0 or (kind == "int" and meta.get("min") == 1)):
        text = f"positive {noun}"
    elif only_lower and meta.get("min") == 0 and "gt" not in meta:
        text = f"non-negative {noun}"
    else:
        bounds = _bounds_text(meta)
        text = f"{noun}s" if plural else _a(noun)
        return f"{text} {bounds}" if bounds else text
    return f"{text}s" if plural else _a(text)


def _a(text: str) -> str:
    return f"{'an' if text[0] in 'aeiou' else 'a'} {text}"


def _one_of(choices: Any, plural: bool) -> str:
    names = ", ".join(str(c) for c in choices)
    return f"values in {{{names}}}" if plural else f"one of {names}"


def _type_text(tp: Any, meta: Mapping[str, Any], plural: bool = False) -> str:
    """Human wording of what a field accepts ('a positive number', 'a list of strings'), for errors."""
    if tp is Any:
        return "values" if plural else "any value"
    if tp is _NONE:
        return "null"
    if tp is bool:
        return "booleans" if plural else "true or false"
    if tp is int or tp is float:
        return _number_text(tp.__name__, meta, plural)
    if tp is str:
        if "choices" in meta:
            return _one_of(meta["choices"], plural)
        return "strings" if plural else "a string"
    if _is_dataclass_type(tp):
        return "mappings" if plural else "a mapping"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return _one_of(args, plural)
    if _is_union(tp):
        text = " or ".join(_type_text(a, meta, plural) for a in args if a is not _NONE)
        return f"{text} or null" if _NONE in args else text
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            kinds = {_type_text(a, meta, plural=True) for a in args}
            text = f"list of {len(args)} {kinds.pop() if len(kinds) == 1 else 'values'}"
        else:
            text = f"list of {_type_text(args[0] if args else Any, meta, plural=True)}"
    elif origin is dict:
        text = f"mapping of names to {_type_text(args[1] if args else Any, meta, plural=True)}"
    else:
        return getattr(tp, "__name__", str(tp))
    head, _, rest = text.partition(" ")
    return f"{head}s {rest}" if plural else f"a {text}"


def _choices_text(choices: Any) -> str:
    return ", ".join(str(c) for c in choices)


def _schema_type_text(tp: Any) -> str:
    """Compact type for docs: 'float', 'str | None', 'adamw | sgd', 'tuple[float, float]'."""
    if tp is _NONE:
        return "None"
    if tp is Any:
        return "Any"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if _is_union(tp):
        return " | ".join(_schema_type_text(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join("..." if a is Ellipsis else _schema_type_text(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    return getattr(tp, "__name__", str(tp))


# ------------------------------------------------------------------------------------ conversion


class _Builder:
    """Converts one document, recording every error instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, path: str, message: str) -> _Invalid:
        self.errors.append(f"{path or '<spec>'}: {message}")
        return _INVALID

    def expected(self, path: str, tp: Any, meta: Mapping[str, Any], value: Any) -> _Invalid:
        return self.fail(path, f"expected {_type_text(tp, meta)}, got {_show(value)}")

    # -- dataclasses

    def dataclass(self, cls: type, data: Any, path: str) -> Any:
        if isinstance(data, cls):
            data = to_dict(data)
        if not isinstance(data, Mapping):
            hint = " (write {} for the defaults)" if data is None else ""
            return self.fail(path, f"expected a mapping, got {_show(data)}{hint}")
        fields = {f.name: f for f in _init_fields(cls)}
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        ok = True
        for key, value in data.items():
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings, got {_show(key)}")
                ok = False
                continue
            if key not in fields:
                self.unknown_key(path, key, list(fields))
                ok = False
                continue
            f = fields[key]
            converted = self.value(hints[f.name], value, _join(path, key), f.metadata)
            if converted is _INVALID:
                ok = False
            else:
                kwargs[key] = converted
        for name, f in fields.items():
            if (
                name not in data
                and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING
            ):
                self.fail(_join(path, name), "missing required key")
                ok = False
        if not ok:
            return _INVALID
        try:
            obj = cls(**kwargs)
        except ValueError as exc:  # a __post_init__ rule of the dataclass
            return self.fail(path, str(exc))
        validate = getattr(obj, "validate", None)
        if callable(validate):
            problems = list(validate())
            for message in problems:
                self.errors.append(_join(path, message) if path else message)
            if problems:
                return _INVALID
        return obj

    def unknown_key(self, path: str, key: str, valid: list[str]) -> None:
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        if close:
            self.fail(_join(path, key), f"unknown key, did you mean {_join(path, close[0])}?")
        else:
            self.fail(_join(path, key), f"unknown key; valid keys: {', '.join(valid)}")

    # -- values

    def value(self, tp: Any, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
        """Convert ``value`` to ``tp``; on failure record an error and return ``_INVALID``."""
        out = self._convert(tp, value, path, meta)
        check = meta.get("check")
        if check is not None and out is not _INVALID and out is not None:
            try:
                check(out)
            except (ValueError, KeyError) as exc:
                message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
                return self.fail(path, str(message))
        return out

    def _convert(self, tp: Any, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
        if tp is Any:
            return to_dict(value)
        if tp is _NONE:
            return None if value is None else self.expected(path, tp, meta, value)
        if _is_union(tp):
            return self._union(tp, value, path, meta)
        if _is_dataclass_type(tp):
            return self.dataclass(tp, value, path)
        origin, args = get_origin(tp), get_args(tp)
        if origin is Literal:
            return self._choice(value, args, path)
        if origin is list:
            return self._sequence(tp, value, path, meta, [args[0] if args else Any] * _len(value))
        if origin is tuple:
            if args and args[-1] is not Ellipsis:
                if isinstance(value, list | tuple) and len(value) != len(args):
                    return self.expected(path, tp, meta, value)
                return self._sequence(tp, value, path, meta, list(args), as_tuple=True)
            inner = args[0] if args else Any
            return self._sequence(tp, value, path, meta, [inner] * _len(value), as_tuple=True)
        if origin is dict:
            return self._mapping(tp, value, path, meta)
        if tp in (bool, int, float, str):
            return self._scalar(tp, value, path, meta)
        raise TypeError(f"{path}: unsupported field type {tp!r} in the schema")

    def _union(self, tp: Any, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
        args = get_args(tp)
        if value is None:
            return None if _NONE in args else self.expected(path, tp, meta, value)
        options = [a for a in args if a is not _NONE]
        attempts: list[tuple[Any, list[str]]] = []
        # Try the alternatives whose container kind matches the value first, so a list reports its
        # element errors rather than "expected a string".
        options.sort(key=lambda a: not _kind_matches(a, value))
        for option in options:
            trial = _Builder()
            out = trial._convert(option, value, path, meta)
            if out is not _INVALID:
                return out
            attempts.append((option, trial.errors))
        first, first_errors = attempts[0]
        nested = _kind_matches(first, value) and (
            get_origin(first) in (list, tuple, dict) or _is_dataclass_type(first)
        )
        if nested or (len(options) == 1 and get_origin(first) is Literal):
            self.errors.extend(first_errors)  # element errors, or a choice error with its hint
            return _INVALID
        return self.expected(path, tp, meta, value)

    def _choice(self, value: Any, choices: tuple[Any, ...], path: str) -> Any:
        if value is False and "off" in choices:  # YAML 1.1 reads an unquoted ``off`` (train.amp) as false
            value = "off"
        if not any(type(c) is type(value) and c == value for c in choices):
            names = [str(c) for c in choices]
            close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return self.fail(path, f"expected one of {', '.join(names)}, got {_show(value)}{hint}")
        return value

    def _sequence(
        self,
        tp: Any,
        value: Any,
        path: str,
        meta: Mapping[str, Any],
        item_types: list[Any],
        as_tuple: bool = False,
    ) -> Any:
        if not isinstance(value, list | tuple):
            return self.expected(path, tp, meta, value)
        items = [
            self.value(t, v, f"{path}[{i}]", _leaf_meta(meta))
            for i, (t, v) in enumerate(zip(item_types, value))
        ]
        if any(item is _INVALID for item in items):
            return _INVALID
        return tuple(items) if as_tuple else items

    def _mapping(self, tp: Any, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
        if not isinstance(value, Mapping):
            return self.expected(path, tp, meta, value)
        key_type, value_type = get_args(tp) or (str, Any)
        out: dict[Any, Any] = {}
        ok = True
        for key, item in value.items():
            if key_type is str and not isinstance(key, str):
                self.fail(path, f"keys must be strings, got {_show(key)}")
                ok = False
                continue
            converted = self.value(value_type, item, _join(path, str(key)), _leaf_meta(meta))
            ok = ok and converted is not _INVALID
            out[key] = converted
        return out if ok else _INVALID

    def _scalar(self, tp: type, value: Any, path: str, meta: Mapping[str, Any]) -> Any:
        out = _coerce(tp, value)
        if out is _INVALID:
            return self.expected(path, tp, meta, value)
        if "choices" in meta and out not in meta["choices"]:
            return self._choice(out, tuple(meta["choices"]), path)
        if tp in (int, float) and not _in_bounds(out, meta):
            return self.expected(path, tp, meta, value)
        return out


def _len(value: Any) -> int:
    return len(value) if isinstance(value, list | tuple) else 0


def _leaf_meta(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    """Bounds and choices pass through containers to each scalar; ``check`` stays on the whole value."""
    return {k: v for k, v in meta.items() if k != "check"}


def _kind_matches(tp: Any, value: Any) -> bool:
    origin = get_origin(tp) or tp
    if isinstance(value, list | tuple):
        return origin in (list, tuple)
    if isinstance(value, Mapping):
        return origin is dict or _is_dataclass_type(tp)
    return origin not in (list, tuple, dict) and not _is_dataclass_type(tp)


def _coerce(tp: type, value: Any) -> Any:
    """Strict scalar conversion with the YAML number exceptions described in the module docstring."""
    if tp is bool:
        return value if isinstance(value, bool) else _INVALID
    if tp is str:
        return value if isinstance(value, str) else _INVALID
    if isinstance(value, bool):
        return _INVALID
    number: float | int
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return _INVALID
    else:
        return _INVALID
    if not math.isfinite(number):
        return _INVALID
    if tp is float:
        return float(number)
    if isinstance(number, int):
        return number
    return int(number) if float(number).is_integer() else _INVALID


def _in_bounds(x: float, meta: Mapping[str, Any]) -> bool:
    return (
        ("min" not in meta or x >= meta["min"])
        and ("max" not in meta or x <= meta["max"])
        and ("gt" not in meta or x > meta["gt"])
        and ("lt" not in meta or x < meta["lt"])
    )


# ------------------------------------------------------------------------------------ public API


def from_dict(cls: type[T], data: Mapping[str, Any] | None, path: str = "") -> T:
    """Build dataclass ``cls`` from plain ``data`` (``None`` = all defaults); raise :class:`SpecError`.

    ``path`` prefixes every error (``"train"`` when ``data`` is the train section).
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    builder = _Builder()
    obj = builder.dataclass(cls, {} if data is None else data, path)
    if builder.errors:
        raise SpecError(builder.errors)
    return typing.cast(T, obj)


def to_dict(obj: Any) -> Any:
    """Plain data of a dataclass (recursively): dicts, lists (tuples become lists), scalars.

    The result round-trips: ``from_dict(type(x), to_dict(x)) == x``, also through YAML or JSON.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type of every field of dataclass ``cls`` (string annotations evaluated)."""
    return dict(_hints(cls))


def dataclass_of(tp: Any) -> type | None:
    """The dataclass a field type holds (also through ``X | None``), or None for a leaf type."""
    if _is_dataclass_type(tp):
        return tp
    if _is_union(tp):
        found = [a for a in get_args(tp) if _is_dataclass_type(a)]
        return found[0] if len(found) == 1 else None
    return None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return to_dict(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return to_dict(f.default_factory())
    return dataclasses.MISSING


def describe_schema(cls: type, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Rows ``(dotted key, type, default, help)`` of every leaf field, for docs and ``--help``.

    The type column carries the bounds (``float > 0``); nested dataclasses are expanded in place.
    """
    rows: list[tuple[str, str, Any, str]] = []
    hints = _hints(cls)
    for f in _init_fields(cls):
        key, tp = _join(prefix, f.name), hints[f.name]
        if _is_dataclass_type(tp):
            rows.extend(describe_schema(tp, key))
            continue
        type_text = _schema_type_text(tp)
        if "choices" in f.metadata:
            type_text = f"{type_text} in {{{_choices_text(f.metadata['choices'])}}}"
        bounds = _bounds_text(f.metadata)
        if bounds:
            type_text = f"{type_text} {bounds}"
        help_text = str(f.metadata.get("help", ""))
        rows.append((key, type_text, _default(f), help_text))
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
