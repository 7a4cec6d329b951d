"""``checkpoint.every_epochs``: validation, the scheduler's milestones, which epochs get a checkpoint, and a
tiny search that saves only those epochs and resumes a failed trial from the last saved one."""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from search.config import load_search_spec, scheduler_milestones
from search.space import space_from_spec
from search.tuner import checkpoint_parameters, run_search
from tests.search.helpers import results, trial_dirs, write_spec
from trainables.loop import CHECKPOINT_STATE_FILE
from trainables.schema import SpecError
from trainables.trainable import checkpoint_due, train_trial


def _spec(tmp_path: Path, changes: dict | None = None):
    return load_search_spec(write_spec(tmp_path, changes))


def _saved(epochs: int, every: int, milestones: tuple[int, ...] = ()) -> list[int]:
    """The epochs of a trial running ``epochs`` epochs whose reports carry a checkpoint."""
    return [e for e in range(1, epochs + 1) if checkpoint_due(e, every, milestones, last=e == epochs)]


# ------------------------------------------------------------------------------------------- config


def test_every_epochs_defaults_to_every_epoch(tmp_path: Path) -> None:
    assert _spec(tmp_path).checkpoint.every_epochs == 1
    assert _spec(tmp_path, {"checkpoint": {"every_epochs": 5}}).checkpoint.every_epochs == 5
    path = write_spec(tmp_path)
    assert load_search_spec(path, ["checkpoint.every_epochs=3"]).checkpoint.every_epochs == 3


@pytest.mark.parametrize("value", [0, -1, 2.5, "often"])
def test_every_epochs_must_be_a_positive_integer(tmp_path: Path, value: object) -> None:
    with pytest.raises(SpecError) as info:
        _spec(tmp_path, {"checkpoint": {"every_epochs": value}})
    assert f"checkpoint.every_epochs: expected a positive integer, got {value!r}" in str(info.value)


# ------------------------------------------------------------------------------ scheduler milestones


def _sched(tmp_path: Path, epochs: int, **scheduler: object):
    return _spec(tmp_path, {"train": {"epochs": epochs}, "search": {"scheduler": scheduler}})


def test_asha_milestones_are_its_rungs(tmp_path: Path) -> None:
    # the final B6 search: grace 5, eta 3, 60 epochs
    assert scheduler_milestones(_sched(tmp_path, 60, type="asha", grace_period=5, reduction_factor=3)) == (
        5,
        15,
        45,
    )
    # a fractional rung (4.5, 6.75) is decided at the first epoch that reaches it
    spec = _sched(tmp_path, 10, type="asha", grace_period=2, reduction_factor=1.5)
    assert scheduler_milestones(spec) == (2, 3, 5, 7)
    # no rung past train.epochs; the rung at max_t is kept (it is also the last epoch)
    assert scheduler_milestones(_sched(tmp_path, 9, type="asha", grace_period=1, reduction_factor=3)) == (
        1,
        3,
        9,
    )


def test_milestones_follow_searched_epochs(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        {
            "train": {"epochs": 4},
            "search": {
                "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 2},
                "space": {"train.epochs": {"choice": [4, 20]}},
            },
        },
    )
    assert scheduler_milestones(spec, space_from_spec(spec)) == (2, 4, 8, 16)


def test_hyperband_and_other_schedulers(tmp_path: Path) -> None:
    # brackets s=0..3 of max_t 27, eta 3: r0 = 27, 9, 3, 1, each multiplied by 3 up to 27
    spec = _sched(tmp_path, 27, type="hyperband", reduction_factor=3)
    assert scheduler_milestones(spec) == (1, 3, 9, 27)
    assert scheduler_milestones(_sched(tmp_path, 27, type="fifo")) == ()
    assert scheduler_milestones(_sched(tmp_path, 27, type="median", grace_period=3)) == ()


@pytest.mark.parametrize(
    ("max_t", "grace"), [(t, g) for t in (1, 4, 10, 27, 40, 60, 81, 100) for g in (1, 2, 5) if g <= t]
)
@pytest.mark.parametrize("rf", [1.5, 2.0, 3.0, 4.0])
def test_milestones_match_rays_schedulers(tmp_path: Path, max_t: int, grace: int, rf: float) -> None:
    """Every epoch where Ray's ASHA records a rung / HyperBand pauses is a milestone (no Ray session)."""
    pytest.importorskip("ray")
    from ray.tune.schedulers.async_hyperband import _Bracket
    from ray.tune.schedulers.hyperband import HyperBandScheduler

    rungs = {math.ceil(m) for m, _ in _Bracket(grace, max_t, rf, 0)._rungs}
    asha = _sched(tmp_path, max_t, type="asha", grace_period=grace, reduction_factor=rf)
    assert {r for r in rungs if r <= max_t} == set(scheduler_milestones(asha))

    hb = HyperBandScheduler(max_t=max_t, reduction_factor=rf)
    pauses = set()
    for s in range(hb._s_max_1):
        if hb._get_r0(s) == 0:
            continue
        bracket = hb._create_bracket(s)
        pauses.add(bracket._cumul_r)
        for _ in range(s):
            bracket._r = int(min(bracket._r * rf, max_t))
            pauses.add(bracket._r)
    hyperband = _sched(tmp_path, max_t, type="hyperband", grace_period=1, reduction_factor=rf)
    assert pauses == set(scheduler_milestones(hyperband))


def test_checkpoint_parameters_reach_train_trial(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        {
            "train": {"epochs": 20},
            "search": {"scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 3}},
            "checkpoint": {"every_epochs": 4},
        },
    )
    params = checkpoint_parameters(spec, space_from_spec(spec))
    assert params == {"checkpoint_every": 4, "milestones": (2, 6, 18)}
    assert set(params) <= set(inspect.signature(train_trial).parameters)


# ------------------------------------------------------------------------------- checkpoint_due


def test_every_epoch_by_default() -> None:
    assert _saved(5, 1) == [1, 2, 3, 4, 5]


def test_every_n_epochs_plus_the_last() -> None:
    assert _saved(3, 2) == [2, 3]
    assert _saved(10, 3) == [3, 6, 9, 10]
    assert _saved(9, 3) == [3, 6, 9]
    assert _saved(2, 5) == [2]  # a trial shorter than every_epochs still saves its last epoch


def test_milestones_always_get_a_checkpoint() -> None:
    # the final B6 search with every_epochs 10: ASHA rungs 5, 15, 45 are saved too
    assert _saved(60, 10, (5, 15, 45)) == [5, 10, 15, 20, 30, 40, 45, 50, 60]
    assert _saved(4, 3, (1, 2)) == [1, 2, 3, 4]


def test_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        checkpoint_due(1, 0)


# ------------------------------------------------------------------------------------------ Ray


def _checkpoint_epochs(trial: Path) -> list[int]:
    """The loop epoch saved in each of the trial's checkpoint_* folders, in order."""
    folders = sorted(trial.glob("checkpoint_*"))
    return [
        int(torch.load(f / CHECKPOINT_STATE_FILE, map_location="cpu", weights_only=True)["epoch"])
        for f in folders
    ]


def _recorder() -> tuple[Any, dict[int, list[tuple]]]:
    """A Tune callback recording, per trial (by its train.epochs), every result the driver receives:
    ``(epoch, training_iteration, restored_from_epoch, has checkpoint)``. The trial's result.json is no
    record of a failed attempt: on the retry Ray copies the file back from storage, where rows reported
    since its last sync of the experiment are missing."""
    from ray.tune import Callback

    rows: dict[int, list[tuple]] = {}

    class Record(Callback):
        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            rows.setdefault(int(trial.config["train.epochs"]), []).append(
                (
                    int(result["epoch"]),
                    int(result["training_iteration"]),
                    int(result["restored_from_epoch"]),
                    result.get("checkpoint_dir_name") is not None,
                )
            )

    return Record(), rows


@pytest.mark.slow
def test_search_saves_every_second_epoch_and_resumes_from_the_last_saved(tmp_path: Path, local_ray) -> None:
    """every_epochs 2; a grid over train.epochs runs a 3-epoch trial (saves epochs 2 and 3) and a 5-epoch
    trial that fails before epoch 4: its retry restores epoch 2, re-trains epoch 3 and saves 4 and 5."""
    local_ray({"BUS_FAULT_AT_EPOCH": "4"}, num_cpus=2)
    path = write_spec(
        tmp_path,
        {
            "search": {"algorithm": "grid", "space": {"train.epochs": {"grid": [3, 5]}}},
            "checkpoint": {"num_to_keep": None, "every_epochs": 2},
        },
    )
    recorder, rows = _recorder()
    grid = run_search(
        load_search_spec(path), storage=str(tmp_path / "runs"), name="every2", callbacks=[recorder]
    )
    assert len(grid) == 2 and not grid.errors
    dirs = trial_dirs(tmp_path / "runs" / "every2")
    trials = {int(results(d)[0]["config"]["train.epochs"]): d for d in dirs}
    assert sorted(trials) == [3, 5]

    # (epoch, training_iteration, restored_from_epoch, checkpoint attached)
    assert rows[3] == [(1, 1, 0, False), (2, 2, 0, True), (3, 3, 0, True)]
    assert [(r["epoch"], r["checkpoint_dir_name"] is not None) for r in results(trials[3])] == [
        (1.0, False),
        (2.0, True),
        (3.0, True),
    ]
    assert _checkpoint_epochs(trials[3]) == [2, 3]
    assert not (trials[3] / "error.txt").exists()

    # the fault before epoch 4; the retry restores epoch 2 (Tune's clock too) and re-trains epoch 3 only
    assert rows[5] == [
        (1, 1, 0, False),
        (2, 2, 0, True),
        (3, 3, 0, False),
        (3, 3, 2, False),
        (4, 4, 2, True),
        (5, 5, 2, True),
    ]
    assert _checkpoint_epochs(trials[5]) == [2, 4, 5]
    assert "injected failure before epoch 4" in (trials[5] / "error.txt").read_text()
    assert grid.get_best_result().checkpoint is not None
