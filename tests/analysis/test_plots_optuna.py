"""The scheduler's rungs as Ray decides them, and Optuna's own figures on the rebuilt study: what they
draw (axes, parameters, trials), that Optuna's style and ExperimentalWarning stay inside them."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from optuna.trial import TrialState
from PIL import Image

from analysis.leaderboard import build_leaderboard
from analysis.plots import (
    PlotSkipped,
    intermediate_values_figure,
    learning_curves_figure,
    parallel_coordinates_figure,
    param_importance_figure,
    param_importances,
    plot_parallel_coordinates,
    plot_param_importance,
    rebuild_study,
)
from analysis.results import ExperimentResults, load_results, scheduler_rungs
from tests.analysis.fake_experiment import SPEC, FakeTrial, write_fake_experiment

PARAMS = ["model.decoder", "model.encoder", "model.latent_aug.mode", "model.latent_aug.sigma", "train.lr"]


def _with(epochs: int, scheduler: dict[str, Any], space: dict[str, Any] | None = None) -> dict[str, Any]:
    search = {**SPEC["search"], "scheduler": scheduler, "space": space or SPEC["search"]["space"]}
    return {**SPEC, "train": {**SPEC["train"], "epochs": epochs}, "search": search}


def _results(tmp_path: Path, spec: dict[str, Any], trials: list[FakeTrial]) -> ExperimentResults:
    return load_results(write_fake_experiment(tmp_path, trials=trials, spec=spec))


def _rung_lines(fig: Any) -> list[float]:
    """The x of every dotted vertical line drawn (the rungs; the legend's proxy line has no data)."""
    (ax,) = fig.axes
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":" and len(ln.get_xdata())]
    return sorted(float(ln.get_xdata()[0]) for ln in lines)


def _legend(fig: Any) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


# ------------------------------------------------------------------------------------------ rungs


def test_asha_rungs_are_where_ray_decides(tmp_path: Path) -> None:
    """grace 1, rf 2.5, 20 epochs: rungs at 1, 2.5, 6.25, 15.625, decided at epochs 1, 3, 7, 16 (Ray's
    ASHA compares ``training_iteration >= rung``); rounding would draw 1, 2, 6, 16."""
    spec = _with(20, {"type": "asha", "grace_period": 1, "reduction_factor": 2.5})
    trials = [FakeTrial({"model.encoder": "tu-test_resnet", "train.lr": 1e-3}, 20, quality=0.8)]
    trials += [
        FakeTrial({"model.encoder": "tu-test_resnet", "train.lr": 2e-3}, e, quality=0.3) for e in (3, 7)
    ]
    r = _results(tmp_path, spec, trials)
    assert scheduler_rungs(r.spec) == ("asha", [1, 3, 7, 16])
    fig = learning_curves_figure(r, build_leaderboard(r))
    assert _rung_lines(fig) == [1, 3, 7, 16]
    assert any(t.startswith("ASHA rungs") for t in _legend(fig))


def test_hyperband_draws_its_bracket_milestones_not_ashas_formula(tmp_path: Path) -> None:
    """Ray's HyperBand ignores grace_period: for 9 epochs and eta 3 its brackets start at 9, 3 and 1
    epochs and pause at 1, 3 (and end at 9); ASHA's formula with grace 2 would say 2 and 6."""
    spec = _with(9, {"type": "hyperband", "grace_period": 2, "reduction_factor": 3})
    trials = [
        FakeTrial({"model.encoder": "tu-test_resnet", "train.lr": lr}, e) for lr, e in ((1e-3, 9), (2e-3, 3))
    ]
    r = _results(tmp_path, spec, trials)
    assert scheduler_rungs(r.spec) == ("hyperband", [1, 3])
    fig = learning_curves_figure(r, build_leaderboard(r))
    assert _rung_lines(fig) == [1, 3]
    assert any(t.startswith("HyperBand bracket milestones") for t in _legend(fig))


def test_no_rungs_without_an_early_stopping_scheduler(tmp_path: Path) -> None:
    spec = _with(4, {"type": "median", "grace_period": 1})
    r = _results(tmp_path, spec, [FakeTrial({"model.encoder": "tu-test_resnet", "train.lr": 1e-3}, 4)])
    assert scheduler_rungs(r.spec) == ("median", [])
    fig = learning_curves_figure(r, build_leaderboard(r))
    assert _rung_lines(fig) == [] and not any("rung" in t for t in _legend(fig))


def test_a_spec_that_does_not_validate_still_gets_its_curves(fake_exp: Path) -> None:
    r = load_results(fake_exp)
    r.spec["search"]["scheduler"]["grace_period"] = 99  # more than train.epochs
    fig = learning_curves_figure(r, build_leaderboard(r))
    assert _rung_lines(fig) == []
    assert "scheduler rungs not drawn: spec.yaml is not a valid search spec" in _legend(fig)


def test_time_budget_stops_are_drawn_apart_from_the_schedulers(tmp_path: Path) -> None:
    """ASHA grace 4, rf 3, 18 epochs with a time budget: the trials ended at epochs 8 and 11 (between the
    rungs 4 and 12) were stopped by the budget: their own colour and legend entry, the same end marker
    as the scheduler's stop at epoch 4; all three count as stopped early at low fidelity."""
    spec = _with(18, {"type": "asha", "grace_period": 4, "reduction_factor": 3})
    spec["search"] = {**spec["search"], "time_budget": "75m"}
    ends = [(18, "tu-test_resnet", 0.8), (18, "tu-test_efficientnet", 0.6), (4, "tu-test_resnet", 0.3)]
    ends += [(8, "tu-test_efficientnet", 0.5), (11, "tu-test_resnet", 0.7)]
    trials = [
        FakeTrial({"model.encoder": enc, "train.lr": 1e-4 * (i + 1)}, e, quality=q)
        for i, (e, enc, q) in enumerate(ends)
    ]
    r = _results(tmp_path, spec, trials)
    board = build_leaderboard(r)
    fig = learning_curves_figure(r, board)
    (ax,) = fig.axes
    assert {"stopped by the time budget", "stopped by the scheduler", "completed"} <= set(_legend(fig))
    marked = [ln for ln in ax.get_lines() if ln.get_marker() == "X" and len(ln.get_xdata())]
    assert sorted(float(ln.get_xdata()[0]) for ln in marked) == [4, 8, 11]
    purple = {
        int(ln.get_xdata()[-1])
        for ln in ax.get_lines()
        if ln.get_marker() == "o" and matplotlib.colors.to_hex(ln.get_color()) == "#9467bd"
    }
    assert purple == {8, 11}
    assert _rung_lines(fig) == [4, 12]
    matplotlib.pyplot.close(fig)
    fig = param_importance_figure(r, board)
    assert fig.axes[0].get_title(loc="left").endswith("(5 trials, 3 stopped early at low fidelity)")
    matplotlib.pyplot.close(fig)


# ----------------------------------------------------------------------------------- the study


def test_rebuilt_study_holds_each_scored_trial_with_its_active_parameters(fake_exp: Path) -> None:
    r = load_results(fake_exp)
    board = build_leaderboard(r)
    study = rebuild_study(r, board)
    assert study.direction.name == "MAXIMIZE"
    assert len(study.trials) == 7 and all(t.state == TrialState.COMPLETE for t in study.trials)  # 1 failed
    scored = board[board["status"] != "error"]
    assert [t.value for t in study.trials] == pytest.approx(list(scored["score"]))
    sigma = [t.params.get("model.latent_aug.sigma") for t in study.trials]
    assert sorted(s for s in sigma if s is not None) == [0.05, 0.1, 0.15]  # only where mode is noise
    first = study.trials[0]
    assert first.params == r.params[str(scored.iloc[0]["trial_id"])]
    assert first.distributions["train.lr"].log and first.distributions["model.encoder"].choices == (
        "tu-test_efficientnet",
        "tu-test_resnet",
    )


# ------------------------------------------------------------------------------ Optuna's figures


def test_importance_figure_is_optunas_bars_of_our_importances(fake_exp: Path, tmp_path: Path) -> None:
    r = load_results(fake_exp)
    board = build_leaderboard(r)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ExperimentalWarning included
        fig = param_importance_figure(r, board)
    (ax,) = fig.axes
    expected = param_importances(r, board)  # most important first
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == list(expected)[::-1]  # Optuna draws the most important on top
    widths = [p.get_width() for p in ax.patches]
    assert widths == pytest.approx([expected[n] for n in names], abs=1e-9)
    assert ax.get_xlabel().startswith("fANOVA importance") and ax.get_ylabel() == "Hyperparameter"
    assert (
        ax.get_title(loc="left")
        == "Parameter importance for score (7 trials, 2 stopped early at low fidelity)"
    )
    assert tuple(fig.get_size_inches()) == (10.0, 6.0)
    assert matplotlib.rcParams["axes.facecolor"] == "white"  # Optuna's ggplot style did not leak out
    matplotlib.pyplot.close(fig)
    path = plot_param_importance(r, board, tmp_path / "param_importance.png")
    with Image.open(path) as image:
        assert image.size == (1000, 600)


def test_parallel_coordinates_figure_has_an_axis_per_parameter(fake_exp: Path) -> None:
    r = load_results(fake_exp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ExperimentalWarning included
        fig = parallel_coordinates_figure(r, build_leaderboard(r))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["val score", *PARAMS]  # full names
    (lines,) = ax.collections
    assert len(lines.get_segments()) == 7  # one polyline per trial that did not fail
    ticks = {tuple(t.get_text() for t in a.get_yticklabels()) for a in fig.axes[1:]}
    assert ("tu-test_efficientnet", "tu-test_resnet") in ticks
    assert any(t[0] == "None" for t in ticks)  # sigma is not active in every trial
    assert matplotlib.rcParams["axes.facecolor"] == "white"
    matplotlib.pyplot.close(fig)


def test_mapping_choices_are_labelled_and_cut_to_fit(tmp_path: Path) -> None:
    options = [{"decoder_channels": [64, 32, 16, 16, 8]}, {"decoder_channels": [128, 64, 32, 32, 16]}]
    space = {**SPEC["search"]["space"], "model.decoder_options": {"choice": options}}
    spec = _with(4, SPEC["search"]["scheduler"], space)
    trials = [
        FakeTrial(
            {"model.encoder": enc, "model.decoder": "unet", "train.lr": lr, "model.decoder_options": opt},
            4,
            quality=q,
        )
        for enc, lr, opt, q in [
            ("tu-test_resnet", 1e-3, options[0], 0.8),
            ("tu-test_efficientnet", 2e-3, options[1], 0.6),
            ("tu-test_resnet", 5e-4, options[1], 0.4),
        ]
    ]
    r = _results(tmp_path, spec, trials)
    study = rebuild_study(r, build_leaderboard(r))
    assert study.trials[0].params["model.decoder_options"] == '{"decoder_channels": [64, 32, 16, 16, 8]}'
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # model.decoder has one value: its axis does not warn either
        fig = parallel_coordinates_figure(r, build_leaderboard(r))
    labels = [t.get_text() for a in fig.axes[1:] for t in a.get_yticklabels()]
    cut = [t for t in labels if t.startswith('{"decoder_')]
    assert len(cut) == 2 and all(len(t) == 19 and t.endswith("…") for t in cut)
    matplotlib.pyplot.close(fig)
    assert set(param_importances(r, build_leaderboard(r))) == {
        "model.encoder",
        "train.lr",
        "model.decoder_options",
    }


def test_intermediate_values_are_each_trials_cv_curve_in_optunas_figure(fake_exp: Path) -> None:
    r = load_results(fake_exp)
    board = build_leaderboard(r)
    study = rebuild_study(r, board)
    for trial, tid in zip(study.trials, board[board["status"] != "error"]["trial_id"]):
        frame = r.epochs[r.epochs["trial_id"] == tid].sort_values("epoch")
        assert trial.intermediate_values == pytest.approx(dict(zip(frame["epoch"], frame["val/score"])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ExperimentalWarning included
        fig = intermediate_values_figure(r, board)
    (ax,) = fig.axes
    drawn = [ln for ln in ax.get_lines() if len(ln.get_xdata())]
    assert len(drawn) == 7  # one line per trial that did not fail
    longest = max(study.trials, key=lambda t: len(t.intermediate_values))
    assert any(
        list(ln.get_xdata()) == sorted(longest.intermediate_values) for ln in drawn
    )  # steps are epochs
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "val score (CV mean)"
    assert matplotlib.rcParams["axes.facecolor"] == "white"
    matplotlib.pyplot.close(fig)


def test_figures_written_as_pngs_with_the_names_the_report_links(fake_exp: Path, tmp_path: Path) -> None:
    r = load_results(fake_exp)
    board = build_leaderboard(r)
    path = plot_parallel_coordinates(r, board, tmp_path / "parallel_coordinates.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1200, 600)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


def test_parallel_coordinates_need_a_scored_trial(tmp_path: Path) -> None:
    trials = [FakeTrial({"model.encoder": "tu-test_resnet", "train.lr": 1e-3}, 2, ray_status="ERROR")]
    r = _results(tmp_path, dict(SPEC), trials)
    with pytest.raises(PlotSkipped, match="no trial has a score without failing"):
        parallel_coordinates_figure(r, build_leaderboard(r))
