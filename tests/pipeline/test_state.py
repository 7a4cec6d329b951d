"""What the pipeline does with a stage given its record, its spec now and its folder (no Ray)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import PipelineError, PipelineInputError
from pipeline.records import RecordError, RefitRecord, StageRecord
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
from tests.pipeline.helpers import V1_STATE, stage_result

OWN = {"train.epochs": 40, "model.encoder": "resnet18", "data.root": None}


def _record(status: str = "done", **changes: Any) -> StageRecord:
    return StageRecord(status=status, own_hash="h1", own_spec=dict(OWN), **changes)


def _plan(
    record: StageRecord | None,
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
    state.set_stage("s1", _record("running"))
    state.update_stage("s1", status="searched", search_s=1.5)
    with pytest.raises(AttributeError):
        state.update_stage("s1", serach_s=2.0)  # a misspelt field is not silently recorded
    again = PipelineState.load(tmp_path / "p")
    assert again.stage("s1") == _record("searched", search_s=1.5)
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["pipeline.json"]  # no temporary files left
    (tmp_path / "p" / "pipeline.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(PipelineError, match="not valid JSON"):
        PipelineState.load(tmp_path / "p")
    (tmp_path / "p" / "pipeline.json").write_text(json.dumps({"version": 99}), encoding="utf-8")
    with pytest.raises(PipelineError, match="version 1"):
        PipelineState.load(tmp_path / "p")


def test_a_state_file_in_the_dict_era_format_round_trips_byte_for_byte(tmp_path: Path) -> None:
    shutil.copy(V1_STATE, tmp_path / "pipeline.json")
    text = V1_STATE.read_text(encoding="utf-8")
    state = PipelineState.load(tmp_path)
    enc, att, refit = state.stages["enc"], state.stages["att"], state.refit
    assert enc.result and enc.result.winner.trial_id == "enc_00001" and enc.result.winner.refit_epochs == 13
    assert enc.result.runner_up and enc.result.runner_up.score_std is None
    assert enc.result.analysis.report == "analysis/report.md" and enc.smoke and enc.search_s == 61.2
    assert att.status == "running" and att.result is None and att.search_s is None
    assert (
        refit
        and refit.result
        and refit.started is None
        and refit.result.outputs["bundle"].endswith("model.safetensors")
    )
    assert state.to_json() == json.loads(text)
    state.save()
    saved = (tmp_path / "pipeline.json").read_text(encoding="utf-8")
    assert json.loads(saved) == {**json.loads(text), "updated": state.data["updated"]}
    assert saved.replace(state.data["updated"], "2026-11-30T10:00:01+0000") == text  # only "updated" moved


def test_new_records_keep_the_file_format() -> None:
    running = _record("running", started="t0")
    assert "search_s" not in running.to_json() and "winner" not in running.to_json()
    done = _record("done", search_s=1.0, analysis_s=2.0, finished="t1", result=stage_result("t1"))
    keys = list(done.to_json())
    assert keys[keys.index("finished") :] == [
        "finished",
        "metric",
        "lower_is_better",
        "n_trials",
        "trial_status",
        "winner",
        "runner_up",
        "analysis",
    ]
    assert done.to_json()["runner_up"] is None and StageRecord.from_json(done.to_json(), "s") == done
    assert RefitRecord(status="running", key={}, started="t0").to_json() == {
        "status": "running",
        "key": {},
        "started": "t0",
    }


def _v1() -> dict[str, Any]:
    return json.loads(V1_STATE.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["stages"]["enc"].pop("own_hash"), r"stages\.enc: missing key 'own_hash'"),
        (lambda d: d["stages"]["enc"]["winner"].pop("config"), r"stages\.enc\.winner: missing key 'config'"),
        (lambda d: d["stages"]["enc"].pop("runner_up"), r"stages\.enc: missing key 'runner_up'"),
        (lambda d: d["stages"]["enc"].update(wnner={}), r"stages\.enc: unknown key 'wnner'"),
        (
            lambda d: d["stages"]["enc"]["winner"].update(score="high"),
            r'stages\.enc\.winner\.score: expected a number, got "high"',
        ),
        (lambda d: d["stages"]["dec"].update(n_trials=True), r"stages\.dec\.n_trials: expected an integer"),
        (lambda d: d["stages"]["dec"].update(own_spec=[]), r"stages\.dec\.own_spec: expected an object"),
        (
            lambda d: d["stages"]["dec"].update(status="finished"),
            r'stages\.dec\.status: "finished" is not one',
        ),
        (lambda d: d["stages"].update(dec="done"), r'stages\.dec: expected an object, got "done"'),
        (lambda d: d["refit"].pop("refit_s"), r"refit: missing key 'refit_s'"),
        (lambda d: d["refit"].update(examples={}), r"refit\.examples: expected a list"),
        (lambda d: d.update(stages=[]), r"stages: expected an object"),
    ],
)
def test_a_malformed_state_file_names_the_key(tmp_path: Path, change: Any, message: str) -> None:
    data = _v1()
    change(data)
    (tmp_path / "pipeline.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RecordError, match=message) as info:
        PipelineState.load(tmp_path)
    assert str(info.value).startswith(str(tmp_path / "pipeline.json")) and "move it away" in str(info.value)
    assert isinstance(info.value, PipelineError)
