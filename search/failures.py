"""Errors that stop a search, and the Tune callback that stops it at a trial error no retry can fix.

Tune's ``FailureConfig(max_failures)`` retries a trial after any exception, and Ray 2.60 has no
per-exception policy. Missing pretrained weights (:class:`model_zoo.weights.MissingWeightsError`, a
node without the cache or the weights file) and data errors (:class:`trainables.data.errors.DataError`)
fail the same way on every retry and in every trial placed on that node. The driver checks both before
Ray starts (``search.space.check_weights``, the data audit); should a trial still meet one, for instance
on a worker node set up differently from the head, :func:`stop_on_fatal_error` stops the search at that
first failure, before the retry runs, naming the trial, node and error; ``launch.py resume`` continues
it once the node is fixed (Tune's state keeps the failed trial as unfinished).

Light on purpose (no Ray, torch or wandb at import): the command line catches these errors.
"""

from __future__ import annotations

import re
from typing import Any

from model_zoo.errors import UserError


class FatalTrialError(UserError, RuntimeError):
    """A trial failed with an error that a retry would repeat (missing weights, unusable data); the search
    was stopped (exit 2: the input needs fixing)."""


class WandbLoginError(UserError, RuntimeError):
    """W&B is online but the node that runs the W&B logging actors has no W&B credentials."""


def fatal_errors() -> tuple[type[BaseException], ...]:
    """The exception types no retry can fix: missing weights and data errors."""
    from model_zoo.weights import MissingWeightsError
    from trainables.data.errors import DataError

    return (MissingWeightsError, DataError)


def trial_exception(trial: Any) -> tuple[BaseException | None, str]:
    """``(exception, where)`` of a trial's last failure, read from the file Tune has just written on this
    (driver) machine (:func:`search.ray_compat.read_trial_error`) and unwrapped from Ray's ``RayTaskError``
    (``where``: its first line, with the worker's pid and node ip); ``(None, "")`` when Tune kept none or
    it cannot be read (left to Tune's retries)."""
    from ray.exceptions import RayTaskError

    from search.ray_compat import read_trial_error

    error = read_trial_error(trial)
    if error is None:
        return None, ""
    if isinstance(error, RayTaskError):
        first = (str(error).splitlines() or [""])[0]
        return error.cause, re.sub(r"\x1b\[[0-9;]*m", "", first)  # without the terminal colours
    return error, ""


def check_trial_error(trial: Any) -> None:
    """Raise :class:`FatalTrialError` when the trial's last failure is one of :func:`fatal_errors`."""
    error, where = trial_exception(trial)
    if not isinstance(error, fatal_errors()):
        return
    raise FatalTrialError(
        f"trial {trial.trial_id} failed with {type(error).__name__} ({where}): {error}\n"
        "A retry would fail the same way, so the search stops here instead of retrying "
        "(failure.max_failures). Make the weights / data available on every node (docs/cluster.md, "
        "'Pretrained weights on every node'), then continue with `python launch.py resume EXPERIMENT_DIR`."
    )


def fatal_cause(exc: BaseException) -> FatalTrialError | None:
    """The :class:`FatalTrialError` behind ``exc``, if any: Tune re-raises an error of a callback as a
    ``TuneError`` holding only its traceback text, with the original as its context."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, FatalTrialError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def stop_on_fatal_error() -> Any:
    """A Tune callback that runs :func:`check_trial_error` at a trial's failure: before Tune's retry
    (``on_trial_recover``) or after its last one (``on_trial_error``). On a Ray version other than the
    tested one it raises :class:`search.ray_compat.RayVersionError` now, before the search starts, rather
    than at the first failure."""
    from ray import tune

    from search.ray_compat import FEATURE_TRIAL_ERROR, require_tested_ray

    require_tested_ray(FEATURE_TRIAL_ERROR)

    class StopOnFatalTrialError(tune.Callback):
        def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            check_trial_error(trial)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            check_trial_error(trial)

    return StopOnFatalTrialError()
