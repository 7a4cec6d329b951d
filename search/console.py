"""What a search prints: Tune's trial table every 30 s, one line per finished trial, and nothing that is
not the user's to act on; ``--verbose`` brings Ray's full output back.

Quieted, each deliberately (the output of a 3-trial ``make demo`` before this: a screen of these):
- Tune's "experiment state snapshotting has been triggered multiple times in the last 5.0 seconds": with
  ``checkpoint.num_to_keep`` set, Tune snapshots its state whenever a trial saves a checkpoint, so that a
  resume after a kill -9 never names a deleted checkpoint; two trials saving within 5 s is normal here and
  costs milliseconds on a local disk. Threshold 0 = no warning.
- Tune's "`process_trial_result` took 0.9 s, which may be a performance bottleneck": raised to 5 s. The
  driver's W&B callback hands each result to its logging actor; on 2 busy cores that takes up to a second,
  which does not slow the trials (they run in their own processes).
- Optuna's per-study INFO line ("A new study created in Journal with name ...").
- Ray Train's "Checkpoint successfully created at: ..." INFO line, once per checkpoint of every trial
  (silenced in the trial processes: ``trainables.trainable.quiet_ray_train_logs``).
Our own causes were fixed instead: W&B's "boolean value for 'reinit' is deprecated" (``search.wandb_setup``
asks for ``reinit="finish_previous"``).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from typing import Any

VERBOSE_ENV = "BUS_VERBOSE"
# Tune reads these when a Tuner is built; setdefault: a value the user exported wins.
QUIET_TUNE_ENV = {
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "TUNE_WARN_THRESHOLD_S": "5",
}


def is_verbose(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``--verbose`` (``BUS_VERBOSE=1``) asked for Ray's full output."""
    return environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")


def configure(verbose: bool) -> int:
    """Set the driver's console for a search: quiet unless ``verbose``; returns Tune's ``verbose`` level
    (1: the trial table; 2: also every result line). The choice is exported (``BUS_VERBOSE``) and
    handed to the trials (``train_trial(verbose=...)``)."""
    import optuna

    os.environ[VERBOSE_ENV] = "1" if verbose else "0"
    if verbose:
        optuna.logging.set_verbosity(optuna.logging.INFO)
        return 2
    for key, value in QUIET_TUNE_ENV.items():
        os.environ.setdefault(key, value)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return 1


def trial_line(trial_id: str, result: Mapping[str, Any], planned: int, metric: str, error: bool) -> str:
    """One line for a finished trial: how it ended, at which epoch, its best score, Dice and macro-F1."""
    epoch = int(result.get("training_iteration", 0) or 0)
    if error:
        how = f"failed at epoch {epoch}"
    else:
        how = "done" if epoch >= planned else f"stopped early at epoch {epoch}/{planned}"
    figures = [
        f"{label} {value:.3f}"
        for label, key in (("best", metric), ("dice", "val/dice"), ("macro-F1", "val/macro_f1"))
        if isinstance(value := result.get(key), int | float) and math.isfinite(value)
    ]
    return f"trial {trial_id} {how}" + (f": {', '.join(figures)}" if figures else "")


def trial_lines_callback(planned: int, metric: str) -> Any:
    """A Tune callback printing :func:`trial_line` when a trial completes, stops early or fails."""
    from ray import tune

    class TrialLines(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._say(trial, error=False)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._say(trial, error=True)

        def _say(self, trial: Any, error: bool) -> None:
            line = trial_line(trial.trial_id, trial.last_result or {}, planned, metric, error)
            print(line, file=sys.stderr, flush=True)

    return TrialLines()
