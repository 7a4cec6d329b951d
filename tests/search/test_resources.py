"""Feasibility of the per-trial resource request: fail at once instead of waiting forever."""

from __future__ import annotations

import pytest

from search.config import ResourcesConfig
from search.resources import ResourceError, check_feasible, infeasible_reason, trial_request

CPU_NODE = {"CPU": 8.0, "memory": 1e10}
GPU_NODE = {"CPU": 48.0, "GPU": 4.0}


def test_request_in_ray_names() -> None:
    assert trial_request(ResourcesConfig(cpu=4, gpu=0.25)) == {"CPU": 4.0, "GPU": 0.25}


def test_fitting_requests() -> None:
    assert infeasible_reason({"CPU": 4, "GPU": 0.25}, [CPU_NODE, GPU_NODE]) is None
    assert infeasible_reason({"CPU": 8, "GPU": 0}, [CPU_NODE]) is None


def test_gpu_request_on_a_cluster_without_gpus() -> None:
    reason = infeasible_reason({"CPU": 1, "GPU": 0.25}, [CPU_NODE, CPU_NODE])
    assert reason is not None
    assert "each trial asks for cpu=1, gpu=0.25, but no node can provide it" in reason
    assert "the cluster has no GPUs: set resources.gpu: 0" in reason


def test_more_cpus_than_any_node() -> None:
    reason = infeasible_reason({"CPU": 64, "GPU": 0}, [CPU_NODE, GPU_NODE])
    assert reason is not None and "lower resources.cpu to at most the largest node's CPUs" in reason


def test_cpus_and_gpus_must_fit_on_one_node() -> None:
    # 8 CPUs exist (CPU node) and GPUs exist (GPU node with 4 CPUs), but never together.
    reason = infeasible_reason({"CPU": 8, "GPU": 1}, [CPU_NODE, {"CPU": 4, "GPU": 4}])
    assert reason is not None


def test_check_against_a_local_ray() -> None:
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
    try:
        check_feasible(ResourcesConfig(cpu=1, gpu=0))
        with pytest.raises(ResourceError, match="no GPUs"):
            check_feasible(ResourcesConfig(cpu=1, gpu=0.25))
    finally:
        if started:
            ray.shutdown()
