"""``pipeline.json``: what each stage ran with and chose, and the decision of what to do with a stage now.

A stage's record (:class:`pipeline.records.StageRecord`) holds ``status`` (``running`` -> ``searched`` ->
``done``), ``own_hash`` (the hash of its spec as this run builds it: the stage file, ``--smoke``,
``--data``; before inheritance) with the flat spec itself (``own_spec``, for a readable diff), and the
values it ``inherited``. From these and whether its experiment folder exists, :func:`plan_stage` decides:

- same spec, same inherited values: skip a done stage, analyse a searched one, resume a running one;
- its own spec changed: refused (:class:`StageChangedError`, listing the changed keys) unless the stage
  is named with ``--rerun-stage``, then run again from scratch;
- only the inherited values changed (an earlier stage was re-run and chose differently): run again,
  since its results no longer follow from the chain.

The file is rewritten atomically after every change, so an interrupted pipeline resumes where it was. A
record of the wrong shape stops the load with a :class:`pipeline.records.RecordError` naming the key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_zoo.files import write_text_atomic
from pipeline.config import PipelineError, PipelineInputError
from pipeline.records import Record, RecordError, RefitRecord, StageRecord

PIPELINE_STATE_FILE = "pipeline.json"
VERSION = 1
SKIP, ANALYZE, RESUME, RUN, RERUN = "skip", "analyze", "resume", "run", "rerun"


class StageChangedError(PipelineInputError):
    """A finished or started stage whose spec differs from the one it ran with (exit 2: rerun it by name
    with ``--rerun-stage`` or restore its spec)."""


def normalise(value: Any) -> Any:
    """JSON round trip (tuples -> lists), so recorded and freshly computed values compare equal."""
    return json.loads(json.dumps(value, default=str))


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def spec_diff(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 12) -> list[str]:
    """``key: old -> new`` for every flat key that differs (added / removed keys too), at most ``limit``."""
    old, new = normalise(dict(old)), normalise(dict(new))
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if a != b:
            lines.append(f"{key}: {json.dumps(a)} -> {json.dumps(b)}")
    if len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines


@dataclass(frozen=True)
class Decision:
    """What to do with a stage now, and why (printed and recorded)."""

    action: str
    reason: str


def plan_stage(
    name: str,
    record: StageRecord | None,
    own_hash: str,
    own_spec: Mapping[str, Any],
    inherited: Mapping[str, Any],
    exp_exists: bool,
    allow_rerun: bool,
) -> Decision:
    """The :class:`Decision` for stage ``name`` (see the module docstring); raises
    :class:`StageChangedError` / :class:`PipelineError` when the stage may not run without
    ``--rerun-stage``."""
    if record is None:
        if not exp_exists:
            return Decision(RUN, "not run yet")
        if allow_rerun:
            return Decision(
                RERUN, "replacing an experiment folder the pipeline has no record of (--rerun-stage)"
            )
        raise PipelineInputError(
            f"stage {name}: its experiment folder exists but pipeline.json has no record of it (another run "
            f"with this name?); pass --rerun-stage {name} to replace it, or choose another --name"
        )
    if record.own_hash != own_hash:
        if allow_rerun:
            return Decision(RERUN, "its spec changed; running it again (--rerun-stage)")
        changes = spec_diff(record.own_spec, own_spec) or ["(the spec's hash differs)"]
        raise StageChangedError(
            f"stage {name}: its spec changed since it ran:\n  " + "\n  ".join(changes) + "\n"
            f"Pass --rerun-stage {name} to run it again (its results are replaced, and later stages that "
            "inherit from it follow), or restore the spec to continue."
        )
    if normalise(record.inherited) != normalise(dict(inherited)):
        changes = spec_diff(record.inherited, inherited)
        return Decision(RERUN, "an earlier stage chose differently: " + "; ".join(changes))
    status = record.status
    if not exp_exists:
        return Decision(RUN, "not run yet" if status == "running" else "its experiment folder is missing")
    if status == "done":
        return Decision(SKIP, "done")
    if status == "searched":
        return Decision(ANALYZE, "search finished, analysis missing")
    return Decision(RESUME, "interrupted; resuming its search")


class PipelineState:
    """``<pipeline dir>/pipeline.json`` in memory; :meth:`save` writes it atomically.

    ``data`` is the file's top level in its order: ``version``, ``created``, ``smoke``, ... as plain values,
    ``stages`` ({name: :class:`StageRecord`}) and ``refit`` (a :class:`RefitRecord`) as records."""

    def __init__(self, folder: str | Path, data: dict[str, Any] | None = None) -> None:
        self.folder = Path(folder)
        self.data: dict[str, Any] = data or {"version": VERSION, "stages": {}}
        self.data.setdefault("stages", {})

    @property
    def path(self) -> Path:
        return self.folder / PIPELINE_STATE_FILE

    @property
    def stages(self) -> dict[str, StageRecord]:
        return self.data["stages"]

    @property
    def refit(self) -> RefitRecord | None:
        return self.data.get("refit")

    @refit.setter
    def refit(self, record: RefitRecord) -> None:
        self.data["refit"] = record

    @classmethod
    def load(cls, folder: str | Path) -> PipelineState:
        path = Path(folder) / PIPELINE_STATE_FILE
        if not path.exists():
            return cls(folder)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise PipelineError(
                f"{path}: not valid JSON ({exc}); move it away to start the pipeline afresh"
            ) from None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise PipelineError(f"{path}: not a pipeline state file of version {VERSION}")
        return cls(folder, records_from_json(data, str(path)))

    def stage(self, name: str) -> StageRecord | None:
        return self.stages.get(name)

    def set_stage(self, name: str, record: StageRecord) -> None:
        self.stages[name] = record
        self.save()

    def update_stage(self, name: str, **changes: Any) -> StageRecord:
        """Set fields of stage ``name``'s record (an unknown field raises ``AttributeError``) and save."""
        record = self.stages[name]
        for key, value in changes.items():
            setattr(record, key, value)
        self.save()
        return record

    def to_json(self) -> dict[str, Any]:
        """The file's content: ``data`` with the records as plain JSON."""
        return json.loads(json.dumps(self.data, default=_plain, allow_nan=True))

    def save(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.data["updated"] = now()
        text = json.dumps(self.data, indent=1, default=_plain, allow_nan=True) + "\n"
        return write_text_atomic(self.path, text)


def records_from_json(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` (a state file's top level) with its stage and refit records read as records; a record of the
    wrong shape raises :class:`RecordError` (``<source>: stages.<name>.<key>: ...``)."""
    stages = data.get("stages", {})
    out = dict(data)
    try:
        if not isinstance(stages, dict):
            raise RecordError("stages: expected an object of stage records")
        out["stages"] = {name: StageRecord.from_json(r, f"stages.{name}") for name, r in stages.items()}
        if data.get("refit") is not None:
            out["refit"] = RefitRecord.from_json(data["refit"], "refit")
    except RecordError as exc:
        raise RecordError(
            f"{source}: {exc}\n(a pipeline.json this version cannot read: repair it, or move it away to "
            "start the pipeline afresh)"
        ) from None
    return out


def _plain(value: Any) -> Any:
    return value.to_json() if isinstance(value, Record) else str(value)
