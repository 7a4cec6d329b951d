"""The records ``pipeline.json`` keeps, as typed dataclasses: one :class:`StageRecord` per stage (with its
:class:`StageResult` once analysed: the :class:`Winner`, the runner-up :class:`TrialSummary`, the
:class:`AnalysisFiles`) and one :class:`RefitRecord` for the final refit (with its :class:`RefitResult`
once done).

``to_json()`` writes the keys and shapes the file has always had: a result is written into its record's
own keys (``flat``), a field marked ``omit_none`` is left out while unset, every other field is always
written (``null`` when unset). ``from_json(data, where)`` reads them back and raises :class:`RecordError`
for a missing or unknown key or a value of the wrong type, naming it (``stages.enc.winner.score: expected
a number, got "high"``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from pipeline.config import PipelineError

OMIT_NONE = {"omit_none": True}  # left out of the file while None
FLAT = {"flat": True}  # a nested record written into its parent's keys (left out while None)
TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "an object",
    list: "a list",
}


class RecordError(PipelineError):
    """A record in ``pipeline.json`` of the wrong shape: a missing or unknown key, a wrong value type."""


class Record:
    """Base of the records: JSON in and out by the dataclass fields (see the module docstring)."""

    __slots__ = ()
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}  # the values a field may take

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("flat"):
                out.update(value.to_json() if value is not None else {})
            elif value is not None or not f.metadata.get("omit_none"):
                out[f.name] = value.to_json() if isinstance(value, Record) else value
        return out

    @classmethod
    def keys(cls) -> set[str]:
        """The keys this record writes (those of a ``flat`` result included)."""
        hints = typing.get_type_hints(cls)
        out = set()
        for f in dataclasses.fields(cls):
            out |= _record_type(hints[f.name]).keys() if f.metadata.get("flat") else {f.name}
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> Self:
        """The record in ``data`` (as ``to_json`` writes it); ``where`` names it in errors."""
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected an object, got {_show(data)}")
        unknown = sorted(set(data) - cls.keys())
        if unknown:
            raise RecordError(f"{where}: unknown key {', '.join(map(repr, unknown))}")
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            if f.metadata.get("flat"):
                nested = _record_type(kind)
                if nested.keys() & set(data):
                    values[f.name] = nested.from_json({k: data[k] for k in nested.keys() & set(data)}, where)
            elif f.name in data:
                values[f.name] = _check(data[f.name], kind, f"{where}.{f.name}")
                allowed = cls.CHOICES.get(f.name)
                if allowed and data[f.name] not in allowed:
                    raise RecordError(
                        f"{where}.{f.name}: {_show(data[f.name])} is not one of {', '.join(allowed)}"
                    )
            elif not f.metadata.get("omit_none"):
                raise RecordError(f"{where}: missing key {f.name!r}")
        return cls(**values)


def _show(value: Any) -> str:
    return json.dumps(value, default=str)[:60]


def _record_type(kind: Any) -> type[Record]:
    """``R`` of a field typed ``R | None``."""
    return next(a for a in typing.get_args(kind) if isinstance(a, type) and issubclass(a, Record))


def _check(value: Any, kind: Any, where: str) -> Any:
    """``value`` if it has the type ``kind`` (a nested record is read with its ``from_json``)."""
    if kind is Any:
        return value
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(kind):
            return None
        (kind,) = [a for a in typing.get_args(kind) if a is not type(None)]
    if isinstance(kind, type) and issubclass(kind, Record):
        return kind.from_json(value, where)
    base = typing.get_origin(kind) or kind
    accepted = (int, float) if base is float else base  # JSON writes a whole float as an integer
    if isinstance(value, bool) is not (base is bool) or not isinstance(value, accepted):
        raise RecordError(f"{where}: expected {TYPE_NAMES.get(base, base.__name__)}, got {_show(value)}")
    return value


# ----------------------------------------------------------------------------------------- stages


@dataclass(kw_only=True, slots=True)
class TrialSummary(Record):
    """A leaderboard row: the trial, its searched parameters, its CV score and Dice / macro-F1 (mean, std
    over folds). Numbers come from the leaderboard's columns, so an epoch count can be a float."""

    trial_id: str
    params: dict[str, Any]
    score: float | None = None
    score_std: float | None = None
    dice: float | None = None
    dice_std: float | None = None
    macro_f1: float | None = None
    macro_f1_std: float | None = None
    best_epoch: float | None = None
    epochs_run: float | None = None
    status: str | None = None


@dataclass(kw_only=True, slots=True)
class Winner(TrialSummary):
    """A stage's chosen trial, with its complete flat ``model.*`` / ``train.*`` config (what later stages
    inherit) and the epoch count its refit would train."""

    config: dict[str, Any]
    refit_epochs: float | None = None


@dataclass(kw_only=True, slots=True)
class AnalysisFiles(Record):
    """The stage's analysis outputs, relative to its experiment folder; ``plots`` by figure name."""

    dir: str
    report: str
    leaderboard: str
    best_config: str
    plots: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True, slots=True)
class StageResult(Record):
    """What a stage's analysis found (written into the stage record's own keys)."""

    metric: str
    lower_is_better: bool
    n_trials: int
    trial_status: dict[str, int]
    winner: Winner
    runner_up: TrialSummary | None
    analysis: AnalysisFiles


@dataclass(kw_only=True, slots=True)
class StageRecord(Record):
    """One stage: what it ran with (its own spec, its hash, the inherited values), where, and, once
    analysed, what it chose (``result``). ``status``: ``running`` -> ``searched`` -> ``done``."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"status": ("running", "searched", "done")}

    status: str
    own_hash: str
    own_spec: dict[str, Any]
    inherited: dict[str, Any] = field(default_factory=dict)
    inherited_from: str | None = None
    resolved_hash: str | None = None
    spec_file: str | None = None
    exp_dir: str | None = None
    description: str | None = None
    rank_by: str | None = None
    smoke: dict[str, Any] | None = None
    decision: str | None = None
    started: str | None = None
    search_s: float | None = field(default=None, metadata=OMIT_NONE)
    analysis_s: float | None = field(default=None, metadata=OMIT_NONE)
    finished: str | None = field(default=None, metadata=OMIT_NONE)
    result: StageResult | None = field(default=None, metadata=FLAT)


# ------------------------------------------------------------------------------------------ refit


@dataclass(kw_only=True, slots=True)
class RefitResult(Record):
    """The finished refit: the trial, its training and its test metrics (``{name: {value, ci95}}``), its
    outputs (``bundle``, ``report``, figures) and the held-out images predicted from their files."""

    stage: str
    trial_id: str
    out_dir: str
    epochs: int | None
    epochs_rule: str | None
    dev_images: int | None
    n_test: int | None
    cv_score: float | None
    metrics: dict[str, Any]
    outputs: dict[str, str]
    examples: list[dict[str, Any]]
    refit_s: float
    finished: str


@dataclass(kw_only=True, slots=True)
class RefitRecord(Record):
    """The final refit: ``key`` (stage, trial, resolved spec hash, epochs, bootstrap draws) decides whether
    a done refit still stands; ``started`` while it runs, ``result`` once done."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"status": ("running", "done")}

    status: str
    key: dict[str, Any]
    started: str | None = field(default=None, metadata=OMIT_NONE)
    result: RefitResult | None = field(default=None, metadata=FLAT)
