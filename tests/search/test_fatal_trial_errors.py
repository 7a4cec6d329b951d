"""Missing weights and data errors in a trial stop the search at the first failure, never retried."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ray import tune

from model_zoo.weights import MissingWeightsError
from search.config import load_search_spec
from search.failures import FatalTrialError, check_trial_error
from tests.model_zoo.test_weights import _put_hf
from tests.search.helpers import trial_dirs, write_spec
from trainables.data.errors import DataError

STARTS: list[str] = []  # trial ids, once per attempt (Tune starts a new actor for each retry)


class _CountStarts(tune.Callback):
    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        STARTS.append(trial.trial_id)


def _failed_trial(tmp_path: Path, cause: BaseException) -> SimpleNamespace:
    """A trial whose last failure Tune pickled as it does: a RayTaskError around the trainable's error."""
    import ray.cloudpickle as pickle
    from ray.exceptions import RayTaskError

    path = tmp_path / "error.pkl"
    error = RayTaskError("train_trial", "Traceback ...", cause, pid=4321, ip="10.0.0.7").as_instanceof_cause()
    path.write_bytes(pickle.dumps(error))
    return SimpleNamespace(trial_id="abc_00000", pickled_error_file=str(path))


@pytest.mark.parametrize("cause", [MissingWeightsError("no weights here"), DataError("bad image")])
def test_fatal_errors_stop_the_search_naming_trial_node_and_fix(tmp_path: Path, cause: BaseException) -> None:
    with pytest.raises(FatalTrialError) as info:
        check_trial_error(_failed_trial(tmp_path, cause))
    msg = str(info.value)
    for text in ("abc_00000", "10.0.0.7", type(cause).__name__, str(cause), "launch.py resume"):
        assert text in msg


def test_other_errors_are_left_to_tune_retries(tmp_path: Path) -> None:
    check_trial_error(_failed_trial(tmp_path, RuntimeError("CUDA out of memory")))
    check_trial_error(SimpleNamespace(trial_id="x", pickled_error_file=None))
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle")
    check_trial_error(SimpleNamespace(trial_id="x", pickled_error_file=str(garbage)))


@pytest.mark.slow
def test_missing_weights_on_a_worker_are_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's cache has the weights (its check passes), the workers' cache is empty: the one trial
    fails once, and the search stops instead of retrying it (failure.max_failures = 2)."""
    import huggingface_hub.constants
    import ray

    from search.tuner import local_runtime_env, run_search

    driver_cache = tmp_path / "hf-driver"
    _put_hf(driver_cache, "timm/test_efficientnet.r160_in1k", None, {"model.safetensors": b"only looked at"})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(driver_cache))
    spec = load_search_spec(
        write_spec(
            tmp_path,
            {
                "model": {"encoder_weights": "imagenet"},
                "search": {"num_samples": 1, "space": {"train.lr": {"loguniform": [5.0e-4, 2.0e-3]}}},
                "failure": {"max_failures": 2},
            },
        )
    )
    assert not ray.is_initialized(), "another test left Ray running"
    ray.init(
        num_cpus=1,
        include_dashboard=False,
        runtime_env=local_runtime_env({"HF_HUB_CACHE": str(tmp_path / "hf-worker-empty")}),
    )
    try:
        with pytest.raises(FatalTrialError, match="failed with MissingWeightsError") as info:
            run_search(spec, storage=str(tmp_path / "runs"), callbacks=[_CountStarts()])
    finally:
        ray.shutdown()
    assert "hf-worker-empty" in str(info.value)
    (trial,) = trial_dirs(tmp_path / "runs" / "tiny")
    assert [trial.name.removeprefix("train_trial_")] == STARTS  # one attempt, no retry
