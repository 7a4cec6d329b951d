"""What the pipeline does with a stage given its record, its spec now and its folder (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.config import PipelineError, PipelineInputError
from pipeline.state import (
    ANALYZE,
    RERUN,
    RESUME,
    RUN,
    SKIP,
    PipelineState,
    StageChangedError,
    plan_stage,
    spec_diff,
)

OWN = {"train.epochs": 40, "model.encoder": "resnet18", "data.root": None}


def _record(status: str = "done", **changes: object) -> dict:
    return {"status": status, "own_hash": "h1", "own_spec": dict(OWN), "inherited": {}, **changes}


def _plan(
    record: dict | None,
    own_hash: str = "h1",
    own: dict | None = None,
    inherited: dict | None = None,
    exists: bool = True,
    rerun: bool = False,
) -> str:
    return plan_stage("s2", record, own_hash, own or OWN, inherited or {}, exists, rerun).action


@pytest.mark.parametrize(
    ("status", "exists", "action"),
    [
        ("done", True, SKIP),
        ("searched", True, ANALYZE),
        ("running", True, RESUME),
        ("running", False, RUN),
        ("done", False, RUN),
    ],
)
def test_same_spec(status: str, exists: bool, action: str) -> None:
    assert _plan(_record(status), exists=exists) == action


def test_new_stage_runs_and_a_foreign_folder_is_refused() -> None:
    assert _plan(None, exists=False) == RUN
    with pytest.raises(PipelineInputError, match=r"no record of it.*--rerun-stage s2"):
        _plan(None, exists=True)
    assert _plan(None, exists=True, rerun=True) == RERUN


def test_changed_spec_is_refused_with_a_diff_unless_rerun_is_allowed() -> None:
    changed = {**OWN, "train.epochs": 2, "data.root": "/data/busi"}
    with pytest.raises(StageChangedError) as info:
        _plan(_record("done"), own_hash="h2", own=changed)
    message = str(info.value)
    assert "stage s2: its spec changed since it ran" in message
    assert "train.epochs: 40 -> 2" in message and 'data.root: null -> "/data/busi"' in message
    assert "--rerun-stage s2" in message
    for status in ("done", "running", "searched"):
        assert _plan(_record(status), own_hash="h2", own=changed, rerun=True) == RERUN
    assert isinstance(info.value, PipelineError)


def test_rerun_flag_alone_does_not_rerun_an_unchanged_stage() -> None:
    """--rerun-stage only permits: the same command repeated after an interrupted re-run resumes it."""
    assert _plan(_record("done"), rerun=True) == SKIP
    assert _plan(_record("running"), rerun=True) == RESUME


def test_an_earlier_stage_choosing_differently_reruns_the_stage() -> None:
    record = _record("done", inherited={"model.encoder": "resnet18"})
    decision = plan_stage("s2", record, "h1", OWN, {"model.encoder": "efficientnet-b6"}, True, False)
    assert decision.action == RERUN and 'model.encoder: "resnet18" -> "efficientnet-b6"' in decision.reason
    # Tuples and lists, as recorded in JSON and as computed, compare equal.
    record = _record("done", inherited={"train.augment.scale": [0.9, 1.1]})
    assert (
        plan_stage("s2", record, "h1", OWN, {"train.augment.scale": (0.9, 1.1)}, True, False).action == SKIP
    )


def test_spec_diff_limits_its_lines() -> None:
    old = {f"k{i}": i for i in range(20)}
    lines = spec_diff(old, {**old, **{f"k{i}": -i for i in range(1, 20)}, "new": 1}, limit=5)
    assert len(lines) == 6 and lines[-1] == "... and 15 more"
    assert spec_diff({"a": 1}, {"a": 1}) == []
    assert spec_diff({"a": 1}, {}) == ['a: 1 -> "<unset>"']


def test_state_round_trip_and_bad_files(tmp_path: Path) -> None:
    state = PipelineState.load(tmp_path / "p")
    assert state.stage("s1") is None
    state.set_stage("s1", {"status": "running", "own_hash": "x"})
    state.update_stage("s1", status="done")
    again = PipelineState.load(tmp_path / "p")
    assert again.stage("s1") == {"status": "running", "own_hash": "x"} | {"status": "done"}
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["pipeline.json"]  # no temporary files left
    (tmp_path / "p" / "pipeline.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(PipelineError, match="not valid JSON"):
        PipelineState.load(tmp_path / "p")
    (tmp_path / "p" / "pipeline.json").write_text(json.dumps({"version": 99}), encoding="utf-8")
    with pytest.raises(PipelineError, match="version 1"):
        PipelineState.load(tmp_path / "p")
