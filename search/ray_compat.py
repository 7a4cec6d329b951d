"""The one module that touches Ray's private internals, each behind a check of the installed Ray version.

Tested with Ray 2.60 (:data:`TESTED_RAY`). Every function or hook here that uses a private API first calls
:func:`require_tested_ray`: on another major.minor version it raises :class:`RayVersionError` (which
feature, which versions, what to do) instead of failing somewhere inside Ray. Importing this module imports
no Ray and never fails, so the project still imports (and its Ray-free parts run) on another version.

What is private, and why the public API does not do:

- ``ray._private.state.state.get_cluster_config()``: the autoscaler's node types, so that a search asking
  for more than any node (alive or launchable) has fails at once (:func:`autoscaler_node_types`). The
  public ``ray.nodes()`` / ``ray.cluster_resources()`` list only the nodes alive now.
- ``ray.tune.trainable.metadata._TrainingRunMetadata`` and the checkpoint manager's
  ``_checkpoint_results`` / ``_latest_checkpoint_result`` (its result class ``_TrainingResult``): a trial's
  recorded checkpoints, read and rewritten in Tune's own format to repair a state that names a deleted
  checkpoint, or an older one than the trial persisted (``search/checkpoint_repair.py``). ``Tuner.restore``
  only restores a state as it is (and then fails on that trial on every retry, or repeats its epochs);
  the manager's ``latest_checkpoint_result`` is read-only.
- the layout of ``experiment_state-*.json`` (which file is the newest; ``trial_data`` pairs of a trial's
  JSON state and its run metadata; the ``trial_id``, ``status``, ``relative_logdir`` and ``num_failures``
  fields): each trial's final status for the analysis (:func:`read_trial_states`) and the state to repair.
  The public reader, ``tune.ExperimentAnalysis`` (``Tuner.restore(...).get_results()`` builds on it), gives
  the same statuses on a complete state written by Ray 2.60, but not the same result in general: it
  rebuilds each Trial, so it needs every field of a full state (``trainable_name``, ...: it raises
  KeyError on the experiments the analysis tests write without Ray), it unpickles the state's embedded
  objects (``_loads_with_cloudpickle``: analysing a folder could run code from it), and ``Tuner.restore``
  also needs the trainable. This module reads the file as plain JSON and unpickles nothing.
- ``WandbLoggerCallback._start_logging_actor`` / ``_remote_logger_class`` / ``_logger_actor_cls``
  (:class:`WandbRunHook`): the only place where each run's ``wandb.init`` arguments can be changed per trial
  (run folder, effective config) and where the logging actor class is made, whose runtime env Ray fills
  with ``WANDB_API_KEY`` (written in plain text to Ray's logs). Ray's callback has no public hook for either.
- ``Trial.pickled_error_file``, the cloudpickled exception Tune writes at a trial's failure
  (:func:`read_trial_error`): the only place the trainable's exception object survives, which the search
  needs to tell errors no retry can fix from others (``search/failures.py``). Tune's public callbacks get
  the trial but not its exception.

Replaced by the public API, which gives the same result: ``ray.air.util.node._force_on_current_node``
(``search/wandb_setup.py`` pins its actors and tasks to the driver's node with the public
``NodeAffinitySchedulingStrategy``). ``tests/search/test_ray_compat.py`` fails when another module uses a
private Ray module or one of the names above.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from model_zoo.errors import UserError

TESTED_RAY = "2.60"
_DRIVER_STARTED = time.time() - 1.0  # read_trial_error unpickles only files written after this (1 s: mtime)
STATE_GLOB = "experiment_state-*.json"  # Tune's experiment state files (TuneController.CKPT_FILE_TMPL)

FEATURE_NODE_TYPES = "the resource check against the autoscaler's node types"
FEATURE_STATE = "reading Tune's experiment state (experiment_state-*.json)"
FEATURE_CHECKPOINTS = "repairing checkpoint references in Tune's experiment state before a resume"
FEATURE_WANDB = "W&B logging (the per-trial hook into Ray's WandbLoggerCallback)"
FEATURE_TRIAL_ERROR = "stopping a search at a trial error no retry can fix (Tune's pickled trial error)"


class RayVersionError(UserError, RuntimeError):
    """The installed Ray is not the version whose internals :mod:`search.ray_compat` was tested with."""


def installed_ray_version() -> str | None:
    """``ray.__version__`` of the installed Ray, or None when Ray is not installed."""
    try:
        import ray
    except ImportError:
        return None
    return str(ray.__version__)


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def require_tested_ray(feature: str) -> None:
    """Raise :class:`RayVersionError` unless the installed Ray has the tested major.minor version; called
    by everything here that uses a private Ray API, before it does."""
    installed = installed_ray_version()
    if installed is not None and _major_minor(installed) == TESTED_RAY:
        return
    shown = f"Ray {installed} is installed" if installed else "Ray is not installed"
    raise RayVersionError(
        f"{feature} uses private Ray APIs tested with Ray {TESTED_RAY} only, but {shown}. Install the tested "
        f"version (`pip install 'ray[tune,default]=={TESTED_RAY}.*'`, pinned in requirements.txt), or port "
        "search/ray_compat.py to this Ray and set TESTED_RAY there."
    )


# ------------------------------------------------------------------------------------ cluster resources


def autoscaler_node_types() -> list[dict[str, float]]:
    """The resources of each node type the autoscaler may still launch (empty without an autoscaler)."""
    require_tested_ray(FEATURE_NODE_TYPES)
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # no autoscaler config published (a plain local Ray): alive nodes only
        return []
    if config is None:
        return []
    return [dict(group.resources) for group in config.node_group_configs if group.max_count != 0]


# ------------------------------------------------------------------------------------- experiment state


class TrialRecord(TypedDict):
    """A trial's entry in Tune's experiment state, as plain JSON (nothing unpickled)."""

    trial_id: str
    status: str  # Tune's: PENDING, RUNNING, PAUSED, TERMINATED or ERROR
    relative_logdir: str | None  # the trial's folder, relative to the experiment folder
    num_failures: int


def newest_experiment_state(folder: str | Path) -> Path | None:
    """The experiment state file Tune restores from ``folder`` (the newest by its timestamped name, Tune's
    own rule), or None when there is none."""
    require_tested_ray(FEATURE_STATE)
    files = sorted(Path(folder).glob(STATE_GLOB))
    return files[-1] if files else None


def load_experiment_state(path: str | Path) -> dict[str, Any]:
    """The experiment state file as JSON; ValueError (or OSError) when it is not one Tune wrote."""
    require_tested_ray(FEATURE_STATE)
    state = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(state, dict) or not isinstance(state.get("trial_data"), list):
        raise ValueError(f"{path}: no trial_data list")
    return state


def trial_records(state: Mapping[str, Any]) -> list[TrialRecord]:
    """Each trial of a loaded experiment state, in its order (ValueError, KeyError or TypeError when a
    trial entry has another format)."""
    require_tested_ray(FEATURE_STATE)
    records: list[TrialRecord] = []
    for trial_json, meta_json in state["trial_data"]:
        trial = json.loads(trial_json)
        meta = json.loads(meta_json)
        records.append(
            TrialRecord(
                trial_id=str(trial["trial_id"]),
                status=str(trial.get("status", "")),
                relative_logdir=trial.get("relative_logdir"),
                num_failures=int(meta.get("num_failures") or 0),
            )
        )
    return records


def read_trial_states(folder: str | Path) -> dict[str, TrialRecord]:
    """``trial_id -> TrialRecord`` from Ray's newest experiment state of ``folder``.

    Empty when the file is missing or unreadable: the analysis then infers statuses from the trial folders.
    """
    path = newest_experiment_state(folder)
    if path is None:
        return {}
    try:
        return {r["trial_id"]: r for r in trial_records(load_experiment_state(path))}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


# ------------------------------------------------------------------------------------------ checkpoints


def run_metadata(state: Mapping[str, Any], index: int) -> Any:
    """Trial ``index``'s run metadata (its ``checkpoint_manager``, ...) read by Tune's own reader, the one
    ``Tuner.restore`` runs on the same entry. It unpickles: only for states this driver's searches wrote."""
    require_tested_ray(FEATURE_CHECKPOINTS)
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    return _TrainingRunMetadata.from_json_state(state["trial_data"][index][1])


def put_run_metadata(state: dict[str, Any], index: int, metadata: Any) -> None:
    """Write ``metadata`` (from :func:`run_metadata`, changed) back into ``state`` in Tune's format."""
    require_tested_ray(FEATURE_CHECKPOINTS)
    metadata.invalidate_cache()
    state["trial_data"][index][1] = metadata.get_json_state()


def latest_checkpoint_result(manager: Any) -> Any | None:
    """The checkpoint result a restored trial resumes from (``.checkpoint.path``, ``.metrics``), or None."""
    require_tested_ray(FEATURE_CHECKPOINTS)
    return manager._latest_checkpoint_result


def checkpoint_results(manager: Any) -> list[Any]:
    """Every checkpoint result the manager keeps (a copy of its list)."""
    require_tested_ray(FEATURE_CHECKPOINTS)
    return list(manager._checkpoint_results)


def set_checkpoint_results(manager: Any, results: Sequence[Any], latest: Any | None) -> None:
    """Make the manager keep ``results`` and resume from ``latest`` (one of them, or None: start again)."""
    require_tested_ray(FEATURE_CHECKPOINTS)
    manager._checkpoint_results = list(results)
    manager._latest_checkpoint_result = latest


def new_checkpoint_result(path: str, metrics: Mapping[str, Any]) -> Any:
    """A checkpoint result (Ray's internal class) for the local checkpoint folder ``path``, with the metrics
    reported with it: for a trial whose recorded state names no checkpoint to copy the classes from."""
    require_tested_ray(FEATURE_CHECKPOINTS)
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint

    return _TrainingResult(Checkpoint(path), dict(metrics))


def checkpoint_result_like(like: Any, path: str, metrics: Mapping[str, Any]) -> Any:
    """A checkpoint result of the same classes as ``like`` (Ray's internal result and its checkpoint
    class) for the checkpoint folder ``path`` on ``like``'s file system, with the metrics reported with it."""
    require_tested_ray(FEATURE_CHECKPOINTS)
    checkpoint = type(like.checkpoint)(path, filesystem=like.checkpoint.filesystem)
    return type(like)(checkpoint, dict(metrics))


# ------------------------------------------------------------------------------------------------- W&B


class WandbRunHook:
    """Put before Ray's callback: ``class C(WandbRunHook, WandbLoggerCallback)``.

    At each run's start (Ray's ``_start_logging_actor``, with ``wandb.init``'s keyword arguments), calls
    ``self.prepare_run(trial, init_kwargs)`` to edit those arguments in place; makes the logging actor
    class, once, with ``self.logging_actor_options()`` as its options, where Ray would add
    ``runtime_env={"env_vars": {"WANDB_API_KEY": ...}}``. A subclass defines both methods.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        require_tested_ray(FEATURE_WANDB)  # when the search is set up, not at its first trial
        super().__init__(*args, **kwargs)

    def prepare_run(self, trial: Any, init_kwargs: dict[str, Any]) -> None:
        """Edit ``wandb.init``'s keyword arguments for ``trial`` in place."""
        raise NotImplementedError(f"{type(self).__name__} must define prepare_run")

    def logging_actor_options(self) -> dict[str, Any]:
        """``ray.remote`` options of the W&B logging actors."""
        raise NotImplementedError(f"{type(self).__name__} must define logging_actor_options")

    def _start_logging_actor(self, trial: Any, exclude_results: list[str], **init_kwargs: Any) -> None:
        require_tested_ray(FEATURE_WANDB)
        self.prepare_run(trial, init_kwargs)
        if self._remote_logger_class is None:
            import ray

            self._remote_logger_class = ray.remote(**self.logging_actor_options())(self._logger_actor_cls)
        super()._start_logging_actor(trial, exclude_results, **init_kwargs)


# ---------------------------------------------------------------------------------------- trial errors


def read_trial_error(trial: Any) -> BaseException | None:
    """The exception of the trial's last failure as Tune pickled it (usually Ray's ``RayTaskError`` around
    the trainable's error), or None when Tune kept none or it cannot be read here.

    Unpickling runs code, so only a file written since this driver started is read: one Tune wrote during
    this run, never one found in an experiment folder handed to ``resume`` (those give None, and the
    failure is handled by Tune's retries; the analysis reads ``error.txt``, plain text)."""
    require_tested_ray(FEATURE_TRIAL_ERROR)
    import ray.cloudpickle as pickle

    path = trial.pickled_error_file
    if not path:
        return None
    try:
        if os.stat(path).st_mtime < _DRIVER_STARTED:
            return None
        with open(path, "rb") as f:
            error = pickle.load(f)
    except Exception:  # unreadable (or not unpicklable here): left to Tune's retries
        return None
    return error if isinstance(error, BaseException) else None
