"""Experiment folder -> tidy tables: statuses, epochs, parameters, filters, damaged files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from analysis.results import filter_where, load_results, parse_where
from search.errors import ExperimentError
from tests.analysis.fake_experiment import FakeTrial, default_trials, write_fake_experiment


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
