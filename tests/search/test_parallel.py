"""Trials in parallel: fractional GPU packing on one logical GPU, and fault tolerance from checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search.config import load_search_spec
from search.tuner import run_search
from tests.search.helpers import results, trial_dirs, write_spec
from trainables.loop import CHECKPOINT_STATE_FILE, read_loop_state

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_four_trials_share_one_gpu(tmp_path: Path, local_ray) -> None:
    """gpu: 0.25 on one (logical) GPU: four trials run at the same time, all on the same device id."""
    barrier = tmp_path / "barrier"
    local_ray({"BUS_TEST_BARRIER": f"{barrier}:4"}, num_cpus=2, num_gpus=1)
    path = write_spec(
        tmp_path,
        {"search": {"num_samples": 4}, "resources": {"cpu": 0.5, "gpu": 0.25}, "train": {"epochs": 2}},
    )
    grid = run_search(load_search_spec(path), storage=str(tmp_path / "runs"), name="pack")
    assert len(grid) == 4 and not grid.errors
    last = [r.metrics for r in grid]
    starts = [m["trial_started_at"] for m in last]
    ends = [m["reported_at"] for m in last]
    assert max(starts) < min(ends), "the four trials did not run at the same time"
    assert len({m["gpu_id"] for m in last}) == 1 and last[0]["gpu_id"] != ""
    # a logical GPU without CUDA trains on the CPU; a real one (a lent GPU machine) on CUDA
    assert all(m["cuda"] == float(torch.cuda.is_available()) for m in last)
    assert len(list(barrier.iterdir())) == 4


@pytest.mark.slow
def test_failed_trial_resumes_from_its_checkpoint(tmp_path: Path, local_ray) -> None:
    """The fault switch raises before epoch 2; the retry continues from epoch 1's checkpoint."""
    local_ray({"BUS_FAULT_AT_EPOCH": "2"}, num_cpus=2)
    path = write_spec(tmp_path, {"search": {"num_samples": 1}, "train": {"epochs": 3}})
    grid = run_search(load_search_spec(path), storage=str(tmp_path / "runs"), name="fault")
    assert len(grid) == 1 and not grid.errors
    (trial,) = trial_dirs(tmp_path / "runs" / "fault")
    # Tune's result.json may lack the epoch-1 row: it is reported right before the injected failure, and
    # Tune restores the trial's result file from storage when it restarts it (seen once in CI under
    # load, rows [2, 3]). Each epoch is still reported at most once, in order, and the retry reports
    # that it continued from epoch 1's checkpoint.
    epochs = [r["epoch"] for r in results(trial)]
    assert epochs == sorted(set(epochs)) and epochs[-2:] == [2.0, 3.0]
    rows = {r["epoch"]: r for r in results(trial)}
    assert rows[2.0]["restored_from_epoch"] == rows[3.0]["restored_from_epoch"] == 1
    assert rows.get(1.0, {"restored_from_epoch": 0})["restored_from_epoch"] == 0
    # the final loop state carries epoch 1 (from the checkpoint) and epochs 2, 3 (the retry), each once:
    # epoch 1 was not trained twice
    final = max(trial.glob("checkpoint_*"), key=lambda p: p.name)
    history = read_loop_state(final / CHECKPOINT_STATE_FILE)["history"]
    assert [h["epoch"] for h in history] == [1.0, 2.0, 3.0]
    assert (trial / "error.txt").exists() and "injected failure before epoch 2" in (
        trial / "error.txt"
    ).read_text()
