"""The experiment spec: one YAML document with sections ``name``, ``data``, ``model``, ``train``.

``train``, ``search`` and ``refit`` all read it through :func:`load_spec`, which validates the whole
document (types, bounds, component names, cross-section rules) before any compute is spent. The search
adds its sections by subclassing :class:`Spec`, so every function here takes ``spec_cls``.

Flat dotted keys (``train.lr``) are how Ray Tune configs and ``--set`` overrides address a field:
:func:`flatten` descends only into dataclass sections; a dict-typed field (``train.select``,
``model.decoder_options``) stays one key holding a dict, so a search that sets it replaces it whole
(``train.select = {macro_f1: 1}`` must not keep the default ``dice`` weight).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

from model_zoo.config import ModelConfig
from trainables.config import TrainConfig
from trainables.data.config import DataConfig
from trainables.schema import Section, SpecError, check, dataclass_of, field_types, from_dict, to_dict

S = TypeVar("S", bound="Spec")

# Per-class metrics that ``train.select`` may name as ``<metric>_<class>``; the class must be one of
# ``data.classes`` (the field's own check, ``trainables.metrics.check_select``, cannot know the classes).
PER_CLASS_METRICS = ("recall", "precision")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def check_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a valid experiment name: it names a folder, so no path
    separators and no ``.`` / ``..``."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a valid name: use letters, digits and . _ + - (it names the output folder)"
        )


@dataclass
class Spec(Section):
    """One experiment: where the data is, which network, and how to train it."""

    name: Annotated[str, check(check_name)] = field(
        default="experiment", metadata={"description": "names the output folder"}
    )
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> list[str]:
        """Rules that span sections; messages start with the dotted key (see trainables.schema)."""
        errors: list[str] = []
        classes = list(self.data.classes)
        if len(classes) < 2 or len(set(classes)) != len(classes):
            errors.append(f"data.classes: expected at least 2 distinct class names, got {classes}")
        if self.model.num_classes != len(classes):
            errors.append(
                f"model.num_classes: {self.model.num_classes} does not match the {len(classes)} names "
                f"of data.classes ({', '.join(classes)})"
            )
        targets = self.model.latent_aug.target_classes
        if isinstance(targets, str):
            if targets != "auto" and targets not in classes:
                errors.append(_unknown_class("model.latent_aug.target_classes", targets, ["auto", *classes]))
        else:
            errors.extend(
                _unknown_class(f"model.latent_aug.target_classes[{i}]", name, classes)
                for i, name in enumerate(targets)
                if name not in classes
            )
        errors.extend(_select_errors(self.train.select, classes))
        errors.extend(_model_fit_errors(self.model, self.data.image_size))
        return errors


def _unknown_class(key: str, name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f", did you mean {close[0]!r}?" if close else ""
    return f"{key}: unknown class {name!r}{hint} (valid: {', '.join(valid)})"


def _select_errors(select: Mapping[str, float], classes: Sequence[str]) -> list[str]:
    errors = []
    for metric in select:
        kind, _, name = metric.partition("_")
        if kind in PER_CLASS_METRICS and name not in classes:
            errors.append(_unknown_class(f"train.select.{metric}", name, classes))
    return errors


def _model_fit_errors(model: ModelConfig, image_size: int) -> list[str]:
    """Decoder options and the input size, checked by the model zoo without building the network."""
    from model_zoo.network import InputShapeError, check_input_shape

    try:
        check_input_shape(model, image_size, image_size)
    except InputShapeError as exc:
        return [f"data.image_size: {image_size} does not suit model.encoder / model.decoder: {exc}"]
    except ValueError as exc:  # decoder_options / decoder_attention / encoder_depth; messages name the key
        message = str(exc)
        return [message if message.startswith("model.") else f"model: {message}"]
    return []


# ------------------------------------------------------------------------------- dict <-> Spec


def spec_from_dict(d: Mapping[str, Any] | None, spec_cls: type[S] = Spec) -> S:
    """Validate plain data into ``spec_cls``; missing keys take their defaults."""
    return from_dict(spec_cls, d)


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """Plain nested dict of ``spec`` (tuples as lists), as written to ``spec.yaml``."""
    return to_dict(spec)


def set_data_root(d: dict[str, Any], root: str | Path) -> None:
    """Set ``data.root`` of a plain spec dict to ``root`` made absolute: ``--data`` of every command. The
    spec is saved with the run, and a saved spec must work from any folder (resume, analysis, trials that
    run in their own folders)."""
    set_dotted(d, "data.root", str(Path(root).expanduser().resolve()))


def with_data_root(spec: S, root: str | Path) -> S:
    """``spec`` with :func:`set_data_root` applied, validated."""
    d = spec_to_dict(spec)
    set_data_root(d, root)
    return spec_from_dict(d, type(spec))


def spec_sections(spec_cls: type = Spec) -> tuple[str, ...]:
    """The top-level keys of ``spec_cls`` (for :class:`Spec`: name, data, model, train), from its type."""
    return tuple(f.name for f in dataclasses.fields(spec_cls))


def trial_spec_dict(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The plain spec one trial ran: ``base``'s :class:`Spec` sections (a search spec's own sections
    dropped) with the trial's dotted ``overrides`` set. The trainable and the analysis both call this, so
    the analysis rebuilds exactly the spec a trial trained with."""
    d = {k: copy.deepcopy(v) for k, v in base.items() if k in spec_sections(Spec)}
    for key, value in overrides.items():
        set_dotted(d, key, copy.deepcopy(value))
    return d


def trial_spec(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> Spec:
    """:func:`trial_spec_dict` validated into a :class:`Spec` (:class:`SpecError` when it is not one)."""
    return spec_from_dict(trial_spec_dict(base, overrides), Spec)


def load_spec(
    path: str | Path,
    overrides: Sequence[str] = (),
    spec_cls: type[S] = Spec,
) -> S:
    """Read a YAML spec, apply ``key=value`` overrides and validate; raise :class:`SpecError`.

    A missing or empty file, a YAML syntax error and a top level that is not a mapping are errors too;
    the error's ``source`` attribute holds the file name.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: spec file not found", source=str(path)) from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror})", source=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: invalid YAML: {exc}", source=str(path)) from None
    if data is None:
        raise SpecError(f"{path}: empty spec", source=str(path))
    if not isinstance(data, Mapping):
        raise SpecError(
            f"{path}: expected a mapping of sections (name, data, model, train, ...), got "
            f"{type(data).__name__}",
            source=str(path),
        )
    try:
        return spec_from_dict(apply_overrides(data, overrides), spec_cls)
    except SpecError as exc:
        raise SpecError(exc.errors, source=str(path)) from None


class _SpecDumper(yaml.SafeDumper):
    """Block style for sections, flow style for short lists of scalars (``scale: [0.9, 1.1]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(isinstance(v, str | int | float | bool | type(None)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_SpecDumper.add_representer(list, _represent_list)


def dump_spec(spec: Spec | Mapping[str, Any]) -> str:
    """The YAML text of a spec (or of its plain dict), in field order."""
    data = spec if isinstance(spec, Mapping) else spec_to_dict(spec)
    return yaml.dump(
        to_dict(data), Dumper=_SpecDumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def save_spec(spec: Spec, path: str | Path) -> Path:
    """Write ``spec`` as YAML (creating parent folders); it loads back equal with :func:`load_spec`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_spec(spec), encoding="utf-8")
    return path


def spec_hash(spec: Spec | Mapping[str, Any]) -> str:
    """Short stable hash of the canonical spec (sorted JSON of its plain dict), to detect a changed spec."""
    data = spec if isinstance(spec, Mapping) else spec_to_dict(spec)
    canonical = json.dumps(to_dict(data), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


# ------------------------------------------------------------------------------- dotted keys


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """``d["a"]["b"]["c"] = value`` for ``key="a.b.c"``, creating missing levels; in place."""
    parts = key.split(".")
    if not all(parts):
        raise SpecError(f"{key!r}: not a valid dotted key")
    node = d
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise SpecError(f"{where}: is a value ({child!r}), not a section, so {key} cannot be set")
        node = child
    node[parts[-1]] = value


def parse_assignment(item: str) -> tuple[str, Any]:
    """``"train.lr=1e-3"`` -> ``("train.lr", "1e-3" parsed as YAML)``; ``ValueError`` without ``KEY=``."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError("expected KEY=VALUE")
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError:
        return key, raw  # not YAML (e.g. an unbalanced bracket): keep the text, the schema judges it


def apply_overrides(d: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``d`` with each ``dotted.key=value`` set; values are parsed as YAML.

    ``train.lr=1e-3``, ``data.root=null``, ``model.latent_aug.target_classes=[benign,malignant]``.
    Keys are not checked here: validating the result (:func:`spec_from_dict`) reports an unknown key
    with the closest valid one, exactly as for a key written in the file.
    """
    out = copy.deepcopy(dict(d))
    for item in overrides:
        try:
            key, value = parse_assignment(item)
        except ValueError as exc:
            raise SpecError(f"{item!r}: {exc}, e.g. train.lr=1e-3") from None
        set_dotted(out, key, value)
    return out


def flatten(d: Spec | Mapping[str, Any], spec_cls: type = Spec) -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``, descending only into dataclass sections.

    Dict-typed fields (``train.select``, ``model.decoder_options``) and keys unknown to ``spec_cls``
    stay single keys holding their value; an empty section stays as ``{"data": {}}``. A Spec instance
    is flattened by its own class. :func:`unflatten` is the inverse.
    """
    if not isinstance(d, Mapping):
        spec_cls, d = type(d), spec_to_dict(d)
    flat: dict[str, Any] = {}
    _flatten_into(flat, d, spec_cls, "")
    return flat


def _flatten_into(flat: dict[str, Any], d: Mapping[str, Any], cls: type | None, prefix: str) -> None:
    types = field_types(cls) if cls is not None else {}
    for key, value in d.items():
        dotted = f"{prefix}{key}"
        section = dataclass_of(types.get(key))
        if section is not None and isinstance(value, Mapping) and value:
            _flatten_into(flat, value, section, f"{dotted}.")
        else:
            flat[dotted] = copy.deepcopy(value)


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 0.1}`` -> ``{"train": {"lr": 0.1}}``, keeping the order of the keys.

    A key given both as a value and as a section (``train`` and ``train.lr``) is an error.
    """
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key in _dotted_keys(out):
            raise SpecError(f"{key}: given both as a value and as a section")
        set_dotted(out, key, copy.deepcopy(value))
    return out


def _dotted_keys(d: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every path already present in ``d``, sections and values alike."""
    keys: set[str] = set()
    for key, value in d.items():
        keys.add(prefix + key)
        if isinstance(value, Mapping):
            keys |= _dotted_keys(value, f"{prefix}{key}.")
    return keys
