"""Spec validation: pydantic v2 validates the spec dataclasses; this module words its errors.

Each spec section is a stdlib dataclass deriving from :class:`Section` and owned by the package that uses
it (docs/architecture.md, "Config objects"). Pydantic reads the rules from the types and from the
``field(metadata=...)`` keys that are :func:`pydantic.Field` arguments: ``ge`` / ``le`` / ``gt`` / ``lt``
bounds, ``description`` (docs, JSON Schema); ``Literal[...]`` lists the choices; ``Annotated[X,
check(fn)]`` runs ``fn(value)``, whose ``ValueError`` / ``KeyError`` message lists the valid names; a
section's ``validate(self) -> list[str]`` states the rules that span its fields (each message starts with a
dotted key relative to the section). Unknown keys are errors (``extra="forbid"``).

On top of pydantic, kept from the project's own validator: every error of a document, one per line, as
``dotted.path: expected <wording>, got <value>`` in the order of the document, "did you mean ...?" hints
for keys and choices, and YAML number handling. Scalars are strict (a YAML ``yes`` / ``1`` is not a string,
``1`` is not ``true``) except that a float field takes an int or a numeric string (PyYAML reads ``1e-3``,
without a dot, as a string) and an int field an integral float or numeric string (``1e3``, ``2.0``);
``off`` (read by YAML 1.1 as false) is the choice ``off``. Pass ``context={"exact": True}`` for JSON data
(model bundles): numbers as given, and names looked up in a registry left to the build. The module sits in
the model zoo, the bottom of the import order, so that the zoo validates bundles with the same types.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import AfterValidator, ConfigDict, TypeAdapter, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError, core_schema

from model_zoo.errors import UserError

T = TypeVar("T")
_NONE = type(None)
_MISSING = object()


class SpecError(UserError, ValueError):
    """Invalid spec data; every line of the message starts with the dotted path of the bad field."""

    def __init__(self, errors: str | list[str], source: str | None = None) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.source = source  # the file the data came from, when known
        super().__init__("\n".join(self.errors))


# ------------------------------------------------------------------------------------ the types


def _yaml_number(kind: type) -> Callable[[Any, core_schema.ValidationInfo], Any]:
    def convert(value: Any, info: core_schema.ValidationInfo) -> Any:
        if isinstance(value, bool) or (info.context or {}).get("exact"):
            return value
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return value
        if not isinstance(number, int | float) or not math.isfinite(number):
            return value
        if kind is float:
            return float(number)
        return int(number) if float(number).is_integer() else value

    return convert


def _choice(choices: list[Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if value is False and "off" in choices:  # YAML 1.1 reads an unquoted ``off`` (train.amp) as false
            return "off"
        if not any(type(c) is type(value) and c == value for c in choices):  # 1 is not true
            raise PydanticCustomError("literal_error", "not one of the choices")
        return value

    return convert


def _tighten(schema: Any, root: bool = True) -> Any:
    """Strict scalars with the YAML number exceptions, exact literals (the module docstring); a nested
    section was tightened by its own hook."""
    if isinstance(schema, list):
        return [_tighten(s, False) for s in schema]
    if not isinstance(schema, dict) or (schema.get("type") == "dataclass" and not root):
        return schema
    for key, value in schema.items():
        schema[key] = _tighten(value, False)
    kind = schema.get("type")
    if kind in ("bool", "int", "float", "str"):
        schema["strict"] = True
    if kind in ("int", "float"):
        convert = _yaml_number(int if kind == "int" else float)
        return core_schema.with_info_before_validator_function(convert, schema)
    if kind == "literal":
        return core_schema.no_info_before_validator_function(_choice(list(schema["expected"])), schema)
    return schema


def _rules(obj: Any) -> Any:
    problems = obj.validate()
    if problems:
        raise ValueError("\n".join(problems))
    return obj


_OLD_KEYS = {"min": "ge", "max": "le", "help": "description", "choices": "Literal", "check": "check()"}


class Section:
    """Base of the spec dataclasses: validated by pydantic (strict scalars, no unknown keys, instances
    revalidated), with ``validate()`` as the section's cross-field validator."""

    __pydantic_config__ = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        revalidate_instances="always",
        field_title_generator=lambda name, info: name,
    )

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        stale = [f"{f.name} ({k})" for f in dataclasses.fields(cls) for k in f.metadata if k in _OLD_KEYS]
        if stale:  # pydantic would ignore them silently
            raise TypeError(f"{cls.__name__}: old validator metadata, use {_OLD_KEYS}: {', '.join(stale)}")
        schema = _tighten(handler(source))
        if callable(getattr(cls, "validate", None)):
            schema = core_schema.no_info_after_validator_function(_rules, schema)
        return schema


def check(fn: Callable[[Any], None], lookup: bool = False) -> AfterValidator:
    """``Annotated[X, check(fn)]``: ``fn(value)`` raises ``ValueError`` / ``KeyError`` with a message that
    lists the valid names; it never sees ``None`` or a value of the wrong type. ``lookup``: a registry
    name, left to the build for exact (bundle) data."""

    def run(value: Any, info: ValidationInfo) -> Any:
        if value is None or (lookup and (info.context or {}).get("exact")):
            return value
        try:
            fn(value)
        except (ValueError, KeyError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise ValueError(str(message)) from None
        return value

    return AfterValidator(run)


@cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def json_schema(cls: type, title: str, description: str) -> dict[str, Any]:
    """The JSON Schema document (draft 2020-12) of section ``cls``, for editors: completion and checks as
    you type."""
    schema = _adapter(cls).json_schema()
    schema["title"], schema["description"] = title, description
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# ------------------------------------------------------------------------------------ wording


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


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def unpack(tp: Any) -> tuple[Any, dict[str, Any]]:
    """``Annotated[float, Field(gt=0)]`` -> ``(float, {"gt": 0})``; other types pass unchanged."""
    meta: dict[str, Any] = {}
    while get_origin(tp) is Annotated:
        tp, *extras = get_args(tp)
        for extra in extras:
            for item in [extra, *getattr(extra, "metadata", [])]:
                bounds = {k: getattr(item, k, None) for k in ("ge", "le", "gt", "lt")}
                meta.update({k: v for k, v in bounds.items() if v is not None})
    return tp, meta


def bounds_text(meta: Mapping[str, Any]) -> str:
    lo = ("[", meta["ge"]) if "ge" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["le"]) if "le" in meta else (")", meta["lt"]) if "lt" in meta else None
    if lo and hi:
        return f"in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {lo[1]}"
    if hi:
        return f"{'<=' if hi[0] == ']' else '<'} {hi[1]}"
    return ""


def _a(text: str) -> str:
    return f"{'an' if text[0] in 'aeiou' else 'a'} {text}"


def _number_text(kind: str, meta: Mapping[str, Any], plural: bool) -> str:
    """'a positive number', 'an integer >= 32', 'numbers in [0, 1)', ..."""
    noun = "integer" if kind == "int" else "number"
    only_lower = not ({"le", "lt"} & set(meta))
    if only_lower and (meta.get("gt") == 0 or (kind == "int" and meta.get("ge") == 1)):
        text = f"positive {noun}"
    elif only_lower and meta.get("ge") == 0 and "gt" not in meta:
        text = f"non-negative {noun}"
    else:
        bounds = bounds_text(meta)
        text = f"{noun}s" if plural else _a(noun)
        return f"{text} {bounds}" if bounds else text
    return f"{text}s" if plural else _a(text)


def _type_text(tp: Any, meta: Mapping[str, Any], plural: bool = False) -> str:
    """What a field accepts, in words ('a positive number', 'a list of strings'), for errors."""
    tp, inner = unpack(tp)
    meta = {**meta, **inner}
    if tp is Any:
        return "values" if plural else "any value"
    if tp is _NONE:
        return "null"
    if tp is bool:
        return "booleans" if plural else "true or false"
    if tp is int or tp is float:
        return _number_text(tp.__name__, meta, plural)
    if tp is str:
        return "strings" if plural else "a string"
    if _is_section(tp):
        return "mappings" if plural else "a mapping"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        names = ", ".join(str(c) for c in args)
        return f"values in {{{names}}}" if plural else f"one of {names}"
    if _is_union(tp):
        text = " or ".join(_type_text(a, meta, plural) for a in args if a is not _NONE)
        return f"{text} or null" if _NONE in args else text
    if origin is tuple and args and args[-1] is not Ellipsis:
        kinds = {_type_text(a, {}, plural=True) for a in args}
        text = f"list of {len(args)} {kinds.pop() if len(kinds) == 1 else 'values'}"
    elif origin in (list, tuple):
        text = f"list of {_type_text(args[0] if args else Any, {}, plural=True)}"
    elif origin is dict:
        text = f"mapping of names to {_type_text(args[1] if args else Any, {}, plural=True)}"
    else:
        return getattr(tp, "__name__", str(tp))
    head, _, rest = text.partition(" ")
    return f"{head}s {rest}" if plural else f"a {text}"


@cache
def hints(cls: type) -> dict[str, Any]:
    """The resolved type of every field of dataclass ``cls``, ``Annotated`` kept."""
    return typing.get_type_hints(cls, include_extras=True)


# ------------------------------------------------------------------------------ error messages


def _child(value: Any, item: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(item, _MISSING)
    if isinstance(value, list | tuple) and isinstance(item, int):
        return value[item] if 0 <= item < len(value) else _MISSING
    if dataclasses.is_dataclass(value) and isinstance(item, str):
        return getattr(value, item, _MISSING)
    return _MISSING


def _position(value: Any, item: Any) -> int:
    if isinstance(value, Mapping):
        keys = list(value)
        return keys.index(item) if item in keys else len(keys)
    return item if isinstance(item, int) else 0


def _message(cls: type, data: Any, error: Mapping[str, Any], path: str) -> tuple[tuple, str, str | None]:
    """``(order, message, union)`` of one pydantic error; ``union``: the path of the union whose whole
    value is reported (dropped when an alternative of that union reports errors inside the value)."""
    loc, kind = list(error["loc"]), error["type"]
    tp, meta, value, where, order = cls, {}, data, path, []
    parent: Any = None
    union: str | None = None
    while True:
        declared = tp
        tp, inner = unpack(tp)
        meta = {**meta, **inner}
        args = [a for a in get_args(tp) if a is not _NONE] if _is_union(tp) else []
        if len(args) == 1:  # X | None: pydantic adds no step to the location
            tp, inner = unpack(args[0])
            meta = {**meta, **inner}
        if not loc:
            break
        item = loc.pop(0)
        if len(args) > 1:  # the location names the alternative (a tag); pick it by the kind of the value
            kinds = [a for a in args if _kind_matches(a, value)]
            if not loc or not kinds or not _is_container(kinds[0]):
                union = where
                break
            tp = kinds[0]
            continue
        order.append(_position(value, item))
        if _is_section(tp):
            fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
            if item not in fields:
                return tuple(order), _unknown_key(where, item, list(fields)), None
            parent, tp, meta = tp, hints(tp)[item], dict(fields[item].metadata)
            value, where = _child(value, item), _join(where, item)
        elif get_origin(tp) in (list, tuple) and isinstance(item, int):
            targs = get_args(tp)
            fixed = get_origin(tp) is tuple and targs and targs[-1] is not Ellipsis
            if kind == "missing" or (fixed and not 0 <= item < len(targs)):
                parent = None
                break  # too short / too long: the tuple as a whole
            parent, tp, meta = tp, (targs[item] if fixed else targs[0] if targs else Any), {}
            value, where = _child(value, item), f"{where}[{item}]"
        elif get_origin(tp) is dict:
            if loc == ["[key]"]:
                return tuple(order), f"{where}: keys must be strings, got {_show(item)}", None
            targs = get_args(tp)
            parent, tp, meta = tp, (targs[1] if targs else Any), {}
            value, where = _child(value, item), _join(where, str(item))
        else:
            break
    shown = error["input"] if value is _MISSING else value  # as written, before the YAML number handling
    if kind == "missing" and _is_section(parent):
        text = f"{where}: missing required key"
    elif kind in ("value_error", "assertion_error"):
        message = str(error["ctx"]["error"])
        if _is_section(tp):  # the section's validate(): dotted keys relative to the section
            return tuple(order), "\n".join(_join(where, line) for line in message.splitlines()), None
        text = f"{where}: {message}"
    elif get_origin(tp) is Literal and union is None:
        text = f"{where}: {_choice_text(get_args(tp), shown)}"
    else:
        hint = " (write {} for the defaults)" if _is_section(tp) and shown is None else ""
        text = f"{where or '<spec>'}: expected {_type_text(declared, meta)}, got {_show(shown)}{hint}"
    return tuple(order), text, union


def _kind_matches(tp: Any, value: Any) -> bool:
    tp = unpack(tp)[0]
    origin = get_origin(tp) or tp
    if isinstance(value, list | tuple):
        return origin in (list, tuple)
    if isinstance(value, Mapping):
        return origin is dict or _is_section(tp)
    return origin not in (list, tuple, dict) and not _is_section(tp)


def _is_container(tp: Any) -> bool:
    tp = unpack(tp)[0]
    return get_origin(tp) in (list, tuple, dict) or _is_section(tp)


def _choice_text(choices: tuple[Any, ...], value: Any) -> str:
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"expected one of {', '.join(names)}, got {_show(value)}{hint}"


def _unknown_key(path: str, key: Any, valid: list[str]) -> str:
    if not isinstance(key, str):
        return f"{path or '<spec>'}: keys must be strings, got {_show(key)}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"{_join(path, key)}: unknown key, did you mean {_join(path, close[0])}?"
    return f"{_join(path, key)}: unknown key; valid keys: {', '.join(valid)}"


def error_messages(cls: type, data: Any, exc: ValidationError, path: str = "") -> list[str]:
    """The errors of ``exc`` (validating ``data`` as ``cls``), worded, in the order of the document."""
    found = [_message(cls, data, e, path) for e in exc.errors(include_url=False)]
    nested = {text.split(":")[0] for _, text, union in found if union is None}
    messages: dict[str, tuple] = {}
    for order, text, union in sorted(found, key=lambda f: f[0]):
        inside = union is not None and any(n.startswith((union + ".", union + "[")) for n in nested)
        if not inside:
            messages.setdefault(text, order)
    return list(messages)


# ------------------------------------------------------------------------------------ public API


def from_dict(cls: type[T], data: Any, path: str = "", *, exact: bool = False) -> T:
    """Validate plain ``data`` (``None`` = all defaults) into section ``cls``; raise :class:`SpecError`.

    ``path`` prefixes every error (``"train"`` when ``data`` is the train section); ``exact``: JSON data
    (see the module docstring).
    """
    if not (_is_section(cls) and issubclass(cls, Section)):
        raise TypeError(f"from_dict needs a Section dataclass, got {cls!r}")
    data = {} if data is None else data
    try:
        return typing.cast(T, _adapter(cls).validate_python(data, context={"exact": exact}))
    except ValidationError as exc:
        raise SpecError(error_messages(cls, data, exc, path)) from None


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
