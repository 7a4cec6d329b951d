"""Figures: non-empty PNGs of the expected size; importance on a rebuilt Optuna study (Optuna's own
figures and the scheduler's rungs in more detail: test_plots_optuna.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from analysis.leaderboard import build_leaderboard
from analysis.plots import (
    PlotSkipped,
    categorical_params,
    make_plots,
    param_importances,
    plot_param_importance,
)
from analysis.results import load_results, scheduler_rungs
from tests.analysis.fake_experiment import SPEC, FakeTrial, write_fake_experiment

EXPECTED_SIZES = {
    "learning_curves": (1000, 600),
    "score_by_model.encoder": (1200, 600),
    "score_by_model.decoder": (1200, 600),
    "score_by_model.latent_aug.mode": (1200, 600),
    "parallel_coordinates": (1200, 600),
    "param_importance": (1000, 600),
    "intermediate_values": (1000, 600),
    "fold_spread": (1200, 600),
}


def test_every_plot_is_a_png_of_the_expected_size(fake_exp: Path, tmp_path: Path) -> None:
    r = load_results(fake_exp)
    plots = make_plots(r, build_leaderboard(r), tmp_path / "plots")
    assert set(plots) == set(EXPECTED_SIZES)
    for name, path in plots.items():
        assert isinstance(path, Path), f"{name} skipped: {path}"
        assert path.stat().st_size > 10_000, name
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == EXPECTED_SIZES[name], name
            # not a blank canvas: many distinct colours
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50, name


def test_categorical_params_and_rungs(fake_exp: Path, tmp_path: Path) -> None:
    r = load_results(fake_exp)
    assert categorical_params(r) == ["model.encoder", "model.decoder", "model.latent_aug.mode"]
    # grace 1, eta 2, 4 epochs: Ray's rungs 1, 2, 4; the one at the last epoch stops nothing early
    assert scheduler_rungs(r.spec) == ("asha", [1, 2])
    fifo = {**SPEC, "search": {**SPEC["search"], "scheduler": {"type": "fifo"}}}
    fifo_exp = load_results(write_fake_experiment(tmp_path, spec=fifo, name="fifo"))
    assert scheduler_rungs(fifo_exp.spec) == ("fifo", [])


def test_importance_finds_the_parameter_that_drives_the_score(tmp_path: Path) -> None:
    trials = []
    for i, lr in enumerate([1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 2e-4, 5e-3, 7e-4]):
        enc = "tu-test_efficientnet" if i % 2 else "tu-test_resnet"
        quality = 0.2 + 0.7 * (i % 4) / 3  # driven by lr's position, not by the encoder
        params = {
            "model.encoder": enc,
            "model.decoder": "unet",
            "train.lr": lr,
            "model.latent_aug.mode": "none",
        }
        trials.append(FakeTrial(params, 4, quality=quality))
    r = load_results(write_fake_experiment(tmp_path, trials=trials))
    imp = param_importances(r, build_leaderboard(r))
    assert set(imp) == {"model.encoder", "train.lr"}  # decoder/mode never vary; sigma never active
    assert sum(imp.values()) == pytest.approx(1.0)
    assert imp["train.lr"] > imp["model.encoder"]


def test_importance_needs_three_scored_trials(tmp_path: Path) -> None:
    trials = [FakeTrial({"model.encoder": "tu-test_resnet", "train.lr": lr}, 2) for lr in (1e-3, 2e-3)]
    r = load_results(write_fake_experiment(tmp_path, trials=trials))
    with pytest.raises(PlotSkipped, match="at least 3 scored trials, got 2"):
        plot_param_importance(r, build_leaderboard(r), tmp_path / "x.png")
    plots = make_plots(r, build_leaderboard(r), tmp_path / "plots")
    assert plots["param_importance"].startswith("parameter importance needs")
    assert isinstance(plots["learning_curves"], Path)
