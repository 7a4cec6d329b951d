"""The Ray Tune function trainable: a thin wrapper that runs the K-fold lockstep loop of one trial config.

The only module of ``trainables`` that imports Ray. Per trial:

1. config (flat dotted keys) -> overrides via ``resolve`` (inactive conditional keys dropped) -> the
   base spec with those overrides -> a validated :class:`trainables.spec.Spec`;
2. torch threads = the trial's CPUs; a GPU (or a fraction of one) -> CUDA, with AMP per ``train.amp``;
   a logical GPU with no CUDA behind it (a test cluster, a mis-set node) -> CPU with a warning;
3. resume from ``tune.get_checkpoint()`` when Tune restarts the trial (retry, node loss, restore);
4. each epoch: ``loop.step()`` -> ``tune.report(every key)``, with the loop state as a checkpoint when
   :func:`checkpoint_due` (every ``checkpoint_every`` epochs, the last epoch and the scheduler's
   milestones, both given by the search as parameters).

The dataset arrives once per experiment through ``tune.with_parameters`` (Ray's object store; trials on a
node read the same memory, with no PNG decoding in trials).

Test-only switches (environment of the workers):

- ``BUS_FAULT_AT_EPOCH=N`` (N >= 2): a trial that started fresh raises before epoch N; its retry resumes
  from the last checkpoint (epoch N-1 when every epoch is saved) and does not raise again (the
  fault-tolerance tests). With ``checkpoint.every_epochs`` > 1, an epoch before N must be saved: a retry
  that restores nothing starts fresh and raises again;
- ``BUS_TEST_BARRIER=DIR:N``: each trial marks its start in DIR and waits (up to 3 minutes) until N trials
  have started, so a test can tell whether N trials really run at once (the GPU-packing test).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from ray import tune

from trainables.loop import (
    CHECKPOINT_STATE_FILE,
    CrossValLoop,
    NonFiniteLossError,
    read_loop_state,
    save_loop_state,
)
from trainables.spec import trial_spec

FAULT_ENV = "BUS_FAULT_AT_EPOCH"
BARRIER_ENV = "BUS_TEST_BARRIER"
BARRIER_TIMEOUT_S = 180.0
RAY_TRAIN_LOGGERS = ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage")


class InjectedFault(RuntimeError):
    """Raised by the test-only fault switch (``BUS_FAULT_AT_EPOCH``)."""


def quiet_ray_train_logs(verbose: bool) -> None:
    """Ray Train's "Checkpoint successfully created at: ..." INFO line, once per checkpoint of every trial,
    off in this trial's process unless the search runs ``--verbose`` (search/console.py lists what a
    search keeps quiet and why)."""
    if not verbose:
        for name in RAY_TRAIN_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def trial_device() -> tuple[str, list[str]]:
    """``cuda`` when Ray gave this trial a GPU that CUDA can see, else ``cpu`` (warning on a logical GPU)."""
    import ray

    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    if not gpu_ids:
        return "cpu", []
    if torch.cuda.is_available():
        return "cuda", gpu_ids  # Ray sets CUDA_VISIBLE_DEVICES, so the trial's GPU is cuda:0
    warnings.warn(
        f"Ray assigned GPU {','.join(gpu_ids)} but CUDA is not available here "
        f"(torch {torch.__version__}); training this trial on the CPU",
        RuntimeWarning,
        stacklevel=2,
    )
    return "cpu", gpu_ids


def _set_threads() -> int:
    resources = tune.get_context().get_trial_resources().required_resources
    threads = max(1, int(resources.get("CPU", 1)))
    torch.set_num_threads(threads)
    return threads


def _restore(loop: CrossValLoop) -> int:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        state = read_loop_state(Path(folder) / CHECKPOINT_STATE_FILE)
    loop.load_state_dict(state)
    return loop.epoch


def checkpoint_due(epoch: int, every: int = 1, milestones: Collection[int] = (), last: bool = False) -> bool:
    """Whether the report of ``epoch`` (1-based) carries the loop state.

    Yes every ``every`` epochs, at the trial's ``last`` epoch (its final result keeps its models) and at the
    scheduler's ``milestones`` (a trial stopped or paused there keeps its state); otherwise the report is
    metrics only, and a failed trial's retry re-trains the epochs since the last saved one.
    """
    if every < 1:
        raise ValueError(f"checkpoint every {every} epochs: expected a positive integer")
    return last or epoch % every == 0 or epoch in milestones


def _fault_epoch() -> int | None:
    value = os.environ.get(FAULT_ENV)
    return int(value) if value else None


def _barrier() -> None:
    value = os.environ.get(BARRIER_ENV)
    if not value:
        return
    folder, _, count = value.rpartition(":")
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / tune.get_context().get_trial_id()).touch()
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while len(list(Path(folder).iterdir())) < int(count) and time.monotonic() < deadline:
        time.sleep(0.2)


def train_trial(
    config: dict[str, Any],
    *,
    base_spec: Mapping[str, Any],
    resolve: Callable[[Mapping[str, Any]], dict[str, Any]],
    dataset: Any,
    splits: Mapping[str, Any],
    checkpoint_every: int = 1,
    milestones: Collection[int] = (),
    verbose: bool = False,
) -> None:
    """Run one trial to the end (or until the scheduler stops it), reporting each epoch and saving the loop
    state when :func:`checkpoint_due` (``checkpoint_every``, the last epoch, the scheduler's
    ``milestones``); Ray Train's per-checkpoint log line only when ``verbose``."""
    import ray

    from trainables.data.splits import split_indices

    quiet_ray_train_logs(verbose)
    _barrier()
    started = time.time()
    spec = trial_spec(base_spec, resolve(config))
    threads = _set_threads()
    device, gpu_ids = trial_device()
    loop = CrossValLoop(spec, dataset, split_indices(dict(splits), dataset, validate=False), device)
    restored_epoch = _restore(loop)
    fault_at = _fault_epoch()
    extra = {
        "restored_from_epoch": restored_epoch,
        "trial_started_at": started,
        "node_id": ray.get_runtime_context().get_node_id(),
        "gpu_id": gpu_ids[0] if gpu_ids else "",
        "cuda": float(device == "cuda"),
        "threads": threads,
    }
    milestones = frozenset(int(m) for m in milestones)
    while not loop.done:
        if fault_at is not None and restored_epoch == 0 and loop.epoch + 1 == fault_at:
            raise InjectedFault(f"{FAULT_ENV}={fault_at}: injected failure before epoch {fault_at}")
        try:
            result = loop.step()
        except NonFiniteLossError as exc:
            # A diverging config is a search outcome, not a failure to retry (it would diverge again):
            # end the trial with a last result whose metrics are NaN, so that Optuna records a failed
            # trial rather than the last finite score, and analysis shows it as diverged.
            warnings.warn(f"trial stopped: {exc}", RuntimeWarning, stacklevel=1)
            last = loop.history[-1] if loop.history else {}
            nan_metrics = {k: math.nan for k in last if k.startswith("val/") or "/val/" in k}
            tune.report(
                {
                    **nan_metrics,
                    "val/score": math.nan,
                    "val/score_best": math.nan,
                    "epoch": float(loop.epoch + 1),
                    "diverged": 1.0,
                    "diverged_error": str(exc),
                    **extra,
                    "reported_at": time.time(),
                }
            )
            return
        report = {**result, **extra, "reported_at": time.time()}
        if not checkpoint_due(loop.epoch, checkpoint_every, milestones, last=loop.done):
            tune.report(report)
            continue
        with tempfile.TemporaryDirectory(prefix="bus-ckpt-") as folder:
            save_loop_state(loop, Path(folder) / CHECKPOINT_STATE_FILE)
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(folder))
