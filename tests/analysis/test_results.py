"""Experiment folder -> tidy tables: statuses, epochs, parameters, filters, damaged files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from analysis.results import filter_where, load_results, parse_where
from search.errors import ExperimentError
from tests.analysis.fake_experiment import SPEC, FakeTrial, default_trials, write_fake_experiment


def test_trials_statuses_and_epochs(fake_exp: Path) -> None:
    r = load_results(fake_exp)
    t = r.trials.set_index("trial_id")
    assert list(t["status"]) == [
        "completed",
        "completed",
        "completed",
        "scheduler_stopped",
        "scheduler_stopped",
        "error",
        "completed",
        "completed",
    ]
    assert t.loc["abc12_00003", "epochs_run"] == 1 and bool(t.loc["abc12_00003", "scheduler_stopped"])
    assert t.loc["abc12_00000", "max_epochs"] == 4 and not t.loc["abc12_00000", "scheduler_stopped"]
    assert "NonFiniteLossError" in t.loc["abc12_00005", "error"] and t.loc["abc12_00005", "num_failures"] == 1
    assert t.loc["abc12_00000", "time_total_s"] == pytest.approx(8.0)
    assert len(r.epochs) == sum(trial.epochs for trial in default_trials())
    assert r.param_names == [
        "model.encoder",
        "model.decoder",
        "train.lr",
        "model.latent_aug.mode",
        "model.latent_aug.sigma",
    ]


def test_table_has_params_and_every_metric(fake_exp: Path) -> None:
    table = load_results(fake_exp).table()
    for col in (
        "trial_id",
        "status",
        "epoch",
        "model.encoder",
        "train.lr",
        "val/dice",
        "val/dice_std",
        "fold1/val/dice",
        "val/score_best",
        "fold0/best_epoch",
    ):
        assert col in table.columns, col
    assert "config" not in table.columns and "hostname" not in table.columns
    # sigma is absent (inactive) where latent_aug.mode is none
    inactive = table[table["model.latent_aug.mode"] == "none"]["model.latent_aug.sigma"]
    assert inactive.isna().all()


def test_status_without_ray_state_is_inferred(tmp_path: Path) -> None:
    exp = write_fake_experiment(tmp_path, experiment_state=False)
    status = dict(zip(*load_results(exp).trials[["trial_id", "status"]].to_dict("list").values()))
    assert status["abc12_00003"] == "scheduler_stopped"
    assert status["abc12_00005"] == "error"
    assert status["abc12_00000"] == "completed"


def test_patience_stop_and_unfinished(tmp_path: Path) -> None:
    trials = [
        FakeTrial({"train.lr": 1e-3}, 2, patience=True),  # every fold stopped: the loop's early stopping
        FakeTrial({"train.lr": 2e-3}, 1, ray_status="RUNNING"),
    ]
    exp = write_fake_experiment(tmp_path, trials=trials)
    assert list(load_results(exp).trials["status"]) == ["patience_stopped", "unfinished"]


def _search(epochs: int, scheduler: dict[str, Any], budget: str | None) -> dict[str, Any]:
    search = {**SPEC["search"], "scheduler": scheduler}
    if budget is not None:
        search["time_budget"] = budget
    return {**SPEC, "train": {**SPEC["train"], "epochs": epochs}, "search": search}


def _status_by_end(tmp_path: Path, spec: dict[str, Any], ends: list[int]) -> dict[int, str]:
    """Load a search of one trial per entry of ``ends`` (its last epoch): last epoch -> status."""
    trials = [
        FakeTrial({"model.encoder": "tu-test_resnet", "train.lr": 1e-4 * (i + 1)}, e)
        for i, e in enumerate(ends)
    ]
    info = load_results(write_fake_experiment(tmp_path, trials=trials, spec=spec)).trials
    return dict(zip(info["epochs_run"].astype(int), info["status"]))


def test_time_budget_stops_between_asha_rungs_are_not_the_schedulers(tmp_path: Path) -> None:
    """The busi_search_cpu run (docs/results.md): ASHA grace 4, rf 3, 18 epochs decides at epochs 4 and
    12 only, so the trials its time budget ended at epochs 8 and 11 were not stopped by ASHA; at a rung
    either could have, and the scheduler keeps it. Patience stops and failures stay what they are."""
    spec = _search(18, {"type": "asha", "grace_period": 4, "reduction_factor": 3}, "75m")
    trials = [
        FakeTrial({"model.encoder": "tu-test_resnet", "train.lr": 1e-4 * (i + 1)}, e)
        for i, e in enumerate([18, 4, 8, 11, 12])
    ]
    trials.append(FakeTrial({"train.lr": 7e-4}, 6, patience=True))
    trials.append(FakeTrial({"train.lr": 8e-4}, 9, ray_status="ERROR"))
    results = load_results(write_fake_experiment(tmp_path, trials=trials, spec=spec))
    t = results.trials.set_index("epochs_run")
    assert dict(t["status"]) == {
        18: "completed",
        4: "scheduler_stopped",
        8: "budget_stopped",
        11: "budget_stopped",
        12: "scheduler_stopped",
        6: "patience_stopped",
        9: "error",
    }
    assert list(t.loc[[8, 11, 4], "budget_stopped"]) == [True, True, False]
    assert list(t.loc[[8, 11, 4, 12], "scheduler_stopped"]) == [False, False, True, True]
    from analysis.leaderboard import build_leaderboard

    board = build_leaderboard(results).set_index("trial_id")
    info = results.trials.set_index("trial_id")
    for column in ("status", "scheduler_stopped", "budget_stopped"):
        assert board[column].to_dict() == info[column].to_dict()


@pytest.mark.parametrize(
    ("epochs", "scheduler", "budget", "expected"),
    [
        # without a time budget every early end without an error is the scheduler's, as before
        (18, {"type": "asha", "grace_period": 4, "reduction_factor": 3}, None, {8: "scheduler_stopped"}),
        (4, {"type": "fifo"}, None, {2: "scheduler_stopped"}),
        # fifo stops nothing: with a budget, every early end is the budget's
        (4, {"type": "fifo"}, "10m", {2: "budget_stopped"}),
        # HyperBand (9 epochs, eta 3) pauses trials at epochs 1 and 3 only
        (
            9,
            {"type": "hyperband", "reduction_factor": 3},
            "1h",
            {2: "budget_stopped", 3: "scheduler_stopped"},
        ),
        # the median rule may stop a trial at any epoch after its grace period: ambiguous, the scheduler's
        (4, {"type": "median", "grace_period": 1}, "1h", {2: "scheduler_stopped"}),
        # a spec that is not a valid search spec (grace period beyond train.epochs): rungs unknown, as before
        (4, {"type": "asha", "grace_period": 99, "reduction_factor": 2}, "1h", {3: "scheduler_stopped"}),
    ],
)
def test_time_budget_stop_by_scheduler(
    tmp_path: Path, epochs: int, scheduler: dict[str, Any], budget: str | None, expected: dict[int, str]
) -> None:
    status = _status_by_end(tmp_path, _search(epochs, scheduler, budget), [epochs, *expected])
    assert status == {epochs: "completed", **expected}


def test_diverged_trial_is_reported_as_such_and_ranks_after_the_others(tmp_path: Path) -> None:
    trials = [
        FakeTrial({"train.lr": 1e-3}, 4, quality=0.5),
        FakeTrial({"train.lr": 9e-1}, 2, diverged=True, quality=0.9),  # good early, then NaN
    ]
    exp = write_fake_experiment(tmp_path, trials=trials)
    info = load_results(exp).trials.set_index("trial_id")
    assert list(info["status"]) == ["completed", "diverged"]
    assert "loss is nan" in info["error"].iloc[1]
    from analysis.leaderboard import build_leaderboard

    board = build_leaderboard(load_results(exp))
    assert list(board["status"])[-1] == "diverged"


def test_restored_trial_keeps_latest_value_per_iteration(fake_exp: Path) -> None:
    result = fake_exp / "train_trial_abc12_00000" / "result.json"
    lines = result.read_text(encoding="utf-8").splitlines()
    again = json.loads(lines[1])
    again["val/score"] = 0.999
    result.write_text("\n".join([*lines, json.dumps(again)]) + "\n", encoding="utf-8")
    epochs = load_results(fake_exp).epochs
    rows = epochs[(epochs["trial_id"] == "abc12_00000") & (epochs["epoch"] == 2)]
    assert len(rows) == 1 and rows.iloc[0]["val/score"] == 0.999


def test_truncated_last_line_is_skipped_other_damage_is_an_error(fake_exp: Path) -> None:
    result = fake_exp / "train_trial_abc12_00001" / "result.json"
    text = result.read_text(encoding="utf-8")
    result.write_text(text + '{"epoch": 5, "val/sco', encoding="utf-8")
    assert load_results(fake_exp).trials.set_index("trial_id").loc["abc12_00001", "epochs_run"] == 4
    result.write_text('{"broken\n' + text, encoding="utf-8")
    with pytest.raises(ExperimentError, match="line 1 is not JSON"):
        load_results(fake_exp)


def test_progress_csv_fallback(fake_exp: Path) -> None:
    (fake_exp / "train_trial_abc12_00002" / "result.json").unlink()
    r = load_results(fake_exp)
    frame = r.epochs[r.epochs["trial_id"] == "abc12_00002"]
    assert sorted(frame["epoch"]) == [1, 2, 3, 4] and frame["val/dice"].notna().all()


def test_not_an_experiment(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="not found"):
        load_results(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExperimentError, match=r"spec\.yaml: missing"):
        load_results(tmp_path / "empty")
    exp = write_fake_experiment(tmp_path)
    for d in exp.glob("train_trial_*"):
        shutil.rmtree(d)
    with pytest.raises(ExperimentError, match="no trial folders"):
        load_results(exp)


def test_where_filters(fake_exp: Path) -> None:
    r = load_results(fake_exp)
    only = filter_where(r, ["model.encoder=tu-test_resnet", "model.decoder=unet"])
    assert set(only.trials["trial_id"]) == {"abc12_00001", "abc12_00005", "abc12_00007"}
    assert set(filter_where(r, ["train.lr=1e-3"]).trials["trial_id"]) == {"abc12_00000"}
    # a fixed spec field: every trial has it
    assert len(filter_where(r, ["data.image_size=64"]).trials) == 8
    with pytest.raises(ValueError, match=r"no trial matches.*tu-test_efficientnet"):
        filter_where(r, ["model.encoder=efficientnet-b6"])
    with pytest.raises(ValueError, match=r"not a parameter.*searched parameters: model.encoder"):
        filter_where(r, ["model.encodr=x"])
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_where(["model.encoder"])
