"""The pipeline file (``spaces/thesis.yaml``): its schema, loading, and the checks made before any stage runs.

A pipeline lists stages in order; each stage is a search spec of its own (a path relative to the pipeline
file) and may take fields from an earlier stage's winner::

    stages:
      - {name: stage1_encoders, spec: stage1_encoders.yaml, rank_by: macro_f1}
      - {name: stage2_decoders, spec: stage2_decoders.yaml,
         inherit: {from: stage1_encoders, fields: [model.encoder]}}
    refit: {stage: stage2_decoders, epochs: auto}
    reference: {model.encoder: efficientnet-b6}      # the thesis's choices, for the report
    smoke: {set: {...}, grid_values: 2, num_samples: 3, encoder_stand_ins: {...}}

An inherited field is any ``model.*`` / ``train.*`` key or section of the spec (a section such as
``model.latent_aug`` takes all its fields); a stage may not both inherit and search a field.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml

from model_zoo.errors import RunFailedError, UserError
from trainables.schema import Section, SpecError, check, from_dict, json_schema
from trainables.spec import spec_from_dict

INHERIT_KEYS = ("from", "fields")
INHERITABLE_SECTIONS = ("model", "train")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


class PipelineError(RunFailedError, RuntimeError):
    """The pipeline cannot go on (a stage that produced no winner, a failed stage or refit, ...): exit 1,
    with how to continue."""

    def describe(self) -> str:
        return (
            f"pipeline stopped: {self}\n(fix the cause and run the same command again: finished stages are "
            "kept, an interrupted one resumes)"
        )


class PipelineInputError(UserError, PipelineError):
    """A bad argument or folder: nothing was run (exit 2)."""

    exit_code = UserError.exit_code

    def describe(self) -> str:
        return UserError.describe(self)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid name: use letters, digits and . _ + - (it names a folder)")


def _check_inherit(value: Mapping[str, Any]) -> None:
    unknown = sorted(set(value) - set(INHERIT_KEYS))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(unknown)}; write {{from: STAGE, fields: [model.encoder, ...]}}"
        )
    source = value.get("from")
    if not isinstance(source, str) or not source:
        raise ValueError("'from' must name an earlier stage")
    fields = value.get("fields")
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
        raise ValueError("'fields' must be a non-empty list of dotted spec keys, e.g. [model.encoder]")
    if len(set(fields)) != len(fields):
        raise ValueError(f"'fields' lists a key twice: {fields}")


def _check_metric(name: str) -> None:
    from trainables.metrics import higher_is_better

    try:
        higher_is_better(name)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None


def _check_encoders(mapping: Mapping[str, str]) -> None:
    from model_zoo.encoders import check_encoder_name

    for original, stand_in in mapping.items():
        try:
            check_encoder_name(stand_in)
        except (ValueError, KeyError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            raise ValueError(f"stand-in of {original}: {message}") from None


def _check_epochs(value: int | str) -> None:
    if value != "auto" and not (isinstance(value, int) and value >= 1):
        raise ValueError(f"expected auto or a positive number of epochs, got {value!r}")


@dataclass
class StageEntry(Section):
    """One stage: a search spec, what it takes from an earlier winner, and how its winner is ranked."""

    name: Annotated[str, check(_check_name)] = field(
        metadata={"description": "names the stage's experiment folder"}
    )
    spec: str = field(metadata={"description": "search spec, relative to the pipeline file"})
    inherit: Annotated[dict[str, Any] | None, check(_check_inherit)] = field(
        default=None, metadata={"description": "{from: STAGE, fields: [dotted keys]}"}
    )
    rank_by: Annotated[str | None, check(_check_metric)] = field(
        default=None, metadata={"description": "leaderboard metric; null = the stage's search metric"}
    )
    description: str = ""

    @property
    def inherit_from(self) -> str | None:
        return self.inherit["from"] if self.inherit else None

    @property
    def inherit_fields(self) -> list[str]:
        return list(self.inherit["fields"]) if self.inherit else []


@dataclass
class RefitSection(Section):
    """Refit of one stage's winner on all development images, then one test evaluation."""

    stage: str | None = field(default=None, metadata={"description": "null = the last stage"})
    epochs: Annotated[int | str, check(_check_epochs)] = "auto"
    device: str = "auto"
    n_boot: int = field(
        default=1000, metadata={"ge": 1, "description": "bootstrap resamples for the 95% CIs"}
    )


@dataclass
class SmokeConfig(Section):
    """How ``--smoke`` shrinks every stage (see pipeline/smoke.py)."""

    set: dict[str, Any] = field(
        default_factory=dict, metadata={"description": "dotted spec key -> value, every stage"}
    )
    grid_values: int = field(default=2, metadata={"ge": 1, "description": "values kept per grid parameter"})
    num_samples: int = field(
        default=3, metadata={"ge": 1, "description": "trials of an Optuna / random stage"}
    )
    n_boot: int = field(default=200, metadata={"ge": 1})
    encoder_stand_ins: Annotated[dict[str, str], check(_check_encoders)] = field(
        default_factory=dict, metadata={"description": "large encoder -> tiny stand-in"}
    )


@dataclass
class PipelineConfig(Section):
    """The whole pipeline file."""

    name: Annotated[str, check(_check_name)]
    stages: list[StageEntry] = field(metadata={"description": "in the order they run"})
    description: str = ""
    refit: RefitSection = field(default_factory=RefitSection)
    reference: dict[str, Any] = field(
        default_factory=dict, metadata={"description": "dotted key -> the thesis's choice, for the report"}
    )
    smoke: SmokeConfig = field(default_factory=SmokeConfig)

    def validate(self) -> list[str]:
        errors: list[str] = []
        if not self.stages:
            errors.append("stages: expected at least one stage")
        seen: list[str] = []
        for i, stage in enumerate(self.stages):
            if stage.name in seen:
                errors.append(f"stages[{i}].name: {stage.name!r} is used twice")
            source = stage.inherit_from
            if source is not None and source not in seen:
                where = "is a later stage" if source in {s.name for s in self.stages} else "is not a stage"
                errors.append(
                    f"stages[{i}].inherit.from: {source!r} {where}; a stage inherits from an earlier one "
                    f"({', '.join(seen) or 'none before it'})"
                )
            seen.append(stage.name)
        if self.refit.stage is not None and self.refit.stage not in seen:
            errors.append(f"refit.stage: {self.refit.stage!r} is not a stage ({', '.join(seen)})")
        return errors

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    @property
    def refit_stage(self) -> str:
        return self.refit.stage or self.stages[-1].name


@dataclass
class Stage(Section):
    """A stage with its spec file read (``raw`` is the YAML as written)."""

    entry: StageEntry
    path: Path
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass
class Pipeline(Section):
    """A loaded, checked pipeline file."""

    config: PipelineConfig
    path: Path
    stages: list[Stage]

    @property
    def name(self) -> str:
        return self.config.name

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages: {', '.join(self.config.stage_names)}")


# ``inherit`` is a mapping checked by :func:`_check_inherit` ("from" is a Python keyword, so no section
# type); the JSON Schema spells out its two keys so that an editor flags a misspelt one.
_INHERIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "from": {"type": "string", "minLength": 1, "description": "an earlier stage"},
        "fields": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
            "uniqueItems": True,
            "description": "dotted model.* / train.* keys or sections, e.g. model.encoder",
        },
    },
    "required": list(INHERIT_KEYS),
    "additionalProperties": False,
}


def pipeline_json_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline file: :class:`PipelineConfig`, what :func:`load_pipeline` reads the
    YAML document into."""
    schema = json_schema(
        PipelineConfig,
        "bus-search pipeline",
        "A pipeline file (spaces/thesis.yaml): stages of search specs, the refit of a stage's winner, "
        "the reference choices and the --smoke settings. Written by `python launch.py schema --pipeline`; "
        "the pipeline validator also checks names, metrics, stage order and each stage's spec.",
    )
    inherit = schema["$defs"]["StageEntry"]["properties"]["inherit"]
    inherit["anyOf"] = [_INHERIT_SCHEMA, {"type": "null"}]
    return schema


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found", source=str(path)) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: invalid YAML: {exc}", source=str(path)) from None
    if not isinstance(data, Mapping):
        raise SpecError(f"{path}: expected a mapping, got {type(data).__name__}", source=str(path))
    return dict(data)


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and check a pipeline file and every stage spec it names; raise :class:`SpecError` listing
    every problem (stage spec errors are prefixed with the stage)."""
    path = Path(path)
    try:
        config = from_dict(PipelineConfig, _read_yaml(path))
    except SpecError as exc:
        raise SpecError(exc.errors, source=str(path)) from None
    stages: list[Stage] = []
    errors: list[str] = []
    for i, entry in enumerate(config.stages):
        spec_path = (path.parent / entry.spec).resolve()
        try:
            raw = _read_yaml(spec_path)
        except SpecError as exc:
            errors.append(f"stages[{i}] ({entry.name}).spec: {exc}")
            continue
        stages.append(Stage(entry, spec_path, raw))
    pipeline = Pipeline(config, path.resolve(), stages)
    if not errors:
        errors = pipeline_errors(pipeline)
    if errors:
        raise SpecError(errors, source=str(path))
    return pipeline


def pipeline_errors(pipeline: Pipeline) -> list[str]:
    """Stage specs valid as search specs; inherited and reference keys real fields, never searched by
    the stage that inherits them."""
    from search.config import SearchSpec
    from search.space import key_error, searchable_keys

    errors: list[str] = []
    valid: list[str] = []
    for i, stage in enumerate(pipeline.stages):
        where = f"stages[{i}] ({stage.name})"
        try:
            spec = spec_from_dict(stage.raw, SearchSpec)
        except SpecError as exc:
            errors.extend(f"{where} {stage.path.name}: {e}" for e in exc.errors)
            continue
        valid = searchable_keys(spec)
        searched = list(spec.search.space)
        for key in stage.entry.inherit_fields:
            if key.split(".")[0] not in INHERITABLE_SECTIONS:
                errors.append(
                    f"{where}.inherit.fields: {key}: only model.* and train.* fields can be inherited "
                    "(each stage keeps its own data, search and resources sections)"
                )
                continue
            problem = key_error(key, valid, path=f"{where}.inherit.fields")
            if problem:
                errors.append(problem.replace("search it whole", "inherit it whole"))
                continue
            clash = [s for s in searched if s == key or s.startswith(key + ".") or key.startswith(s + ".")]
            if clash:
                errors.append(
                    f"{where}.inherit.fields: {key} is also searched by this stage ({', '.join(clash)}); "
                    "a stage either inherits a field or searches it"
                )
    if valid:
        for key in pipeline.config.reference:
            problem = key_error(key, valid, path="reference")
            if problem:
                errors.append(problem)
    return errors


def stage_dict(stage: Stage) -> dict[str, Any]:
    """A deep copy of the stage's spec as written."""
    return copy.deepcopy(stage.raw)
