"""Trials in parallel: fractional GPU packing on one logical GPU, and fault tolerance from checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search.config import load_search_spec
from search.tuner import run_search
from tests.search.helpers import results, trial_dirs, write_spec

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
    rows = results(trial)
    assert [r["epoch"] for r in rows] == [1.0, 2.0, 3.0]  # epoch 1 was not trained twice
    assert [r["restored_from_epoch"] for r in rows] == [0, 1, 1]
    assert (trial / "error.txt").exists() and "injected failure before epoch 2" in (
        trial / "error.txt"
    ).read_text()
