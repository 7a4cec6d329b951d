"""Choosing the winner and writing best_config.yaml that train and refit accept unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.leaderboard import build_leaderboard
from analysis.results import load_results
from analysis.selection import choose_trial, refit_epochs, trial_overrides, trial_spec, write_best_config
from trainables.schema import SpecError
from trainables.spec import Spec, load_spec, spec_to_dict


def test_best_config_round_trips_through_the_spec_validator(fake_exp: Path, tmp_path: Path) -> None:
    r = load_results(fake_exp)
    row = choose_trial(build_leaderboard(r))
    assert row["trial_id"] == "abc12_00000"
    spec = trial_spec(r, row["trial_id"])
    path = write_best_config(spec, tmp_path / "best_config.yaml", {"best trial": row["trial_id"]})
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# best trial: abc12_00000\n") and "search:" not in text
    back = load_spec(path)  # what `launch.py train` and `refit` call
    assert type(back) is Spec and spec_to_dict(back) == spec_to_dict(spec)
    assert back.model.encoder == "tu-test_efficientnet" and back.train.lr == pytest.approx(1e-3)
    assert back.data.image_size == 64 and back.train.epochs == 4  # the experiment's fixed fields kept
    assert back.name == "fake-abc12_00000"


def test_conditional_parameter_applied_only_when_active(fake_exp: Path) -> None:
    r = load_results(fake_exp)
    active = trial_spec(r, "abc12_00002")
    assert active.model.latent_aug.mode == "noise" and active.model.latent_aug.sigma == pytest.approx(0.1)
    # an inactive value that a random/grid search left in params.json does not leak into the spec
    r.params["abc12_00000"]["model.latent_aug.sigma"] = 0.19
    assert "model.latent_aug.sigma" not in trial_overrides(r, "abc12_00000")
    assert trial_spec(r, "abc12_00000").model.latent_aug.sigma == pytest.approx(0.05)  # the default


def test_invalid_trial_config_names_the_trial(fake_exp: Path) -> None:
    r = load_results(fake_exp)
    r.params["abc12_00001"]["model.decoder"] = "unett"
    r.spec["search"]["space"]["model.decoder"] = {"choice": ["unet", "unett"]}
    with pytest.raises(SpecError, match=r"(?s)trial abc12_00001 .*model.decoder: unknown decoder"):
        trial_spec(r, "abc12_00001")


def test_choose_trial_by_id_and_errors(fake_exp: Path) -> None:
    board = build_leaderboard(load_results(fake_exp))
    assert choose_trial(board, "abc12_00006")["rank"] == 2
    with pytest.raises(ValueError, match=r"no such trial; trials .*abc12_00000"):
        choose_trial(board, "zzz")
    failed_only = board[board["status"] == "error"]
    with pytest.raises(ValueError, match="no trial reported a score without failing"):
        choose_trial(failed_only)


def test_refit_epochs_is_the_mean_of_fold_best_epochs() -> None:
    assert refit_epochs({"fold_best_epochs": [3.0, 4.0, 6.0], "best_epoch": 9}) == 4
    assert refit_epochs({"fold_best_epochs": [2.0, 3.0], "best_epoch": 9}) == 3  # 2.5 rounds up
    assert refit_epochs({"fold_best_epochs": [float("nan")], "best_epoch": 7}) == 7
    with pytest.raises(ValueError, match="no epoch"):
        refit_epochs({"trial_id": "t", "fold_best_epochs": [], "best_epoch": None, "epochs_run": 0})
