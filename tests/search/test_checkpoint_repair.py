"""A state that names a checkpoint deleted after the last snapshot, an older one than the trial persisted,
or none (a driver killed in between) is pointed at the newest checkpoint that exists, in a form Tune's own
loader reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from search.checkpoint_repair import repair_checkpoint_refs
from search.config import load_search_spec
from search.tuner import local_runtime_env, run_search
from tests.search.helpers import trial_dirs, write_spec

ray = pytest.importorskip("ray")


def _latest(exp: Path) -> list[str]:
    """Each trial's latest checkpoint folder, as Tune's own loader reads the newest state."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    state = json.loads(sorted(exp.glob("experiment_state-*.json"))[-1].read_text())
    out = []
    for _, meta in state["trial_data"]:
        latest = _TrainingRunMetadata.from_json_state(meta).checkpoint_manager.latest_checkpoint_result
        out.append(Path(latest.checkpoint.path).name if latest else "")
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-trial experiment, 3 epochs, one checkpoint kept."""
    tmp = tmp_path_factory.mktemp("repair")
    assert not ray.is_initialized(), "another test left Ray running"
    ray.init(include_dashboard=False, num_cpus=1, runtime_env=local_runtime_env())
    try:
        spec = write_spec(tmp, {"search": {"num_samples": 1}, "checkpoint": {"num_to_keep": 1}})
        grid = run_search(load_search_spec(spec), storage=str(tmp / "runs"), name="exp")
        assert len(grid) == 1 and not grid.errors
    finally:
        ray.shutdown()
    return tmp / "runs" / "exp"


def _copy(src: Path, tmp: Path) -> Path:
    exp = tmp / "exp"
    shutil.copytree(src, exp, symlinks=True)
    return exp


@pytest.mark.slow
def test_nothing_to_repair_leaves_the_state_alone(finished: Path, tmp_path: Path) -> None:
    exp = _copy(finished, tmp_path)
    before = {p.name: p.read_bytes() for p in exp.glob("experiment_state-*")}
    assert repair_checkpoint_refs(exp) == []
    assert {p.name: p.read_bytes() for p in exp.glob("experiment_state-*")} == before


@pytest.mark.slow
def test_a_deleted_checkpoint_is_replaced_by_the_newest_that_exists(finished: Path, tmp_path: Path) -> None:
    exp = _copy(finished, tmp_path)
    (trial,) = trial_dirs(exp)
    assert _latest(exp) == ["checkpoint_000002"]
    _append_newer(trial, "checkpoint_000003", 4)
    shutil.rmtree(trial / "checkpoint_000002")  # deleted beyond num_to_keep

    notes = repair_checkpoint_refs(exp)
    assert len(notes) == 1 and "checkpoint_000002 is gone -> checkpoint_000003 (epoch 4.0)" in notes[0]
    assert _latest(exp) == ["checkpoint_000003"]
    assert list(exp.glob("experiment_state-*.json.before-repair"))
    assert repair_checkpoint_refs(exp) == []  # repaired once, stable afterwards


def _append_newer(trial: Path, name: str, epoch: int) -> None:
    """What a kill leaves: a checkpoint folder and its result row that the last snapshot never saw."""
    rows = [json.loads(x) for x in (trial / "result.json").read_text().splitlines()]
    newer = {**rows[-1], "checkpoint_dir_name": name, "training_iteration": epoch, "epoch": float(epoch)}
    with (trial / "result.json").open("a") as f:
        f.write(json.dumps(newer) + "\n")
    shutil.copytree(trial / "checkpoint_000002", trial / name)


@pytest.mark.slow
def test_an_older_recorded_checkpoint_moves_to_the_newest_persisted(finished: Path, tmp_path: Path) -> None:
    exp = _copy(finished, tmp_path)
    (trial,) = trial_dirs(exp)
    _append_newer(trial, "checkpoint_000003", 4)  # checkpoint_000002 (epoch 3) is still there
    (note,) = repair_checkpoint_refs(exp)
    assert "checkpoint_000002 is older than the trial's newest -> checkpoint_000003 (epoch 4.0)" in note
    assert _latest(exp) == ["checkpoint_000003"]
    assert repair_checkpoint_refs(exp) == []


@pytest.mark.slow
def test_a_state_recording_no_checkpoint_gets_the_persisted_one(finished: Path, tmp_path: Path) -> None:
    from search import ray_compat

    exp = _copy(finished, tmp_path)
    (trial,) = trial_dirs(exp)
    # the state as snapshotted before the trial's first checkpoint was registered
    state_path = sorted(exp.glob("experiment_state-*.json"))[-1]
    state = json.loads(state_path.read_text())
    metadata = ray_compat.run_metadata(state, 0)
    ray_compat.set_checkpoint_results(metadata.checkpoint_manager, [], latest=None)
    ray_compat.put_run_metadata(state, 0, metadata)
    state_path.write_text(json.dumps(state))
    assert _latest(exp) == [""]

    (note,) = repair_checkpoint_refs(exp)
    assert "no checkpoint recorded -> checkpoint_000002 (epoch 3.0)" in note
    assert _latest(exp) == ["checkpoint_000002"]
    manager = ray_compat.run_metadata(json.loads(state_path.read_text()), 0).checkpoint_manager
    latest = manager.latest_checkpoint_result
    assert Path(latest.checkpoint.path) == (trial / "checkpoint_000002").resolve()
    assert latest.metrics["training_iteration"] == 3
    assert repair_checkpoint_refs(exp) == []


@pytest.mark.slow
def test_no_checkpoint_left_means_the_trial_starts_again(finished: Path, tmp_path: Path) -> None:
    exp = _copy(finished, tmp_path)
    (trial,) = trial_dirs(exp)
    shutil.rmtree(trial / "checkpoint_000002")
    (note,) = repair_checkpoint_refs(exp)
    assert "no checkpoint: the trial starts again" in note
    assert _latest(exp) == [""]


def test_a_folder_without_state_or_with_a_broken_one(tmp_path: Path) -> None:
    assert repair_checkpoint_refs(tmp_path) == []
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable experiment state"):
        assert repair_checkpoint_refs(tmp_path) == []
