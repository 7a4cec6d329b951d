"""The search's console (search/console.py): quiet by default, one line per finished trial, --verbose."""

from __future__ import annotations

import logging
import os

import optuna
import pytest

from search import console


def test_a_trial_line_says_how_it_ended_and_its_figures() -> None:
    result = {
        "training_iteration": 4,
        "val/score_best": 0.4321,
        "val/dice": 0.5,
        "val/macro_f1": float("nan"),
    }
    line = console.trial_line("ab12", result, planned=18, metric="val/score_best", error=False)
    assert line == "trial ab12 stopped early at epoch 4/18: best 0.432, dice 0.500"  # NaN left out
    done = console.trial_line("ab12", {**result, "training_iteration": 18}, 18, "val/score_best", False)
    assert done.startswith("trial ab12 done: best 0.432")
    assert console.trial_line("x", {}, 18, "val/score_best", error=True) == "trial x failed at epoch 0"


def test_quiet_by_default_and_verbose_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (*console.QUIET_TUNE_ENV, console.VERBOSE_ENV):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TUNE_WARN_THRESHOLD_S", "2")  # a value the user exported wins
    try:
        assert console.configure(verbose=False) == 1
        assert console.is_verbose() is False
        assert optuna.logging.get_verbosity() == optuna.logging.WARNING
        env = os.environ
        assert env["TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S"] == "0"
        assert env["TUNE_WARN_THRESHOLD_S"] == "2"
        assert console.configure(verbose=True) == 2
        assert console.is_verbose() and optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        optuna.logging.set_verbosity(optuna.logging.INFO)


def test_trial_processes_drop_the_checkpoint_info_line_unless_verbose() -> None:
    from trainables.trainable import RAY_TRAIN_LOGGERS, quiet_ray_train_logs

    logger = logging.getLogger(RAY_TRAIN_LOGGERS[0])
    old = logger.level
    try:
        logger.setLevel(logging.NOTSET)
        quiet_ray_train_logs(verbose=True)
        assert logger.level == logging.NOTSET
        quiet_ray_train_logs(verbose=False)
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(old)
