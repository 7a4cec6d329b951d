"""``launch.py learning-curve``: CV figures against training images, runs on the same validation folds."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import launch
from analysis.compare_runs import load_run
from analysis.learning_curve import (
    CurvePoint,
    check_same_validation,
    curve_point,
    fit_log2,
    learning_curve,
    parse_targets,
    plot_learning_curve,
)
from model_zoo.errors import UserError

VAL = [["v0a", "v0b"], ["v1a", "v1b"]]
TEST = ["t1", "t2"]


def _run(path: Path, n_train: int, dice, epochs: int = 8, best: int | None = None, val=VAL, cv=None) -> Path:
    """A run whose folds train on ``n_train`` images each; fold ``k`` at epoch ``e`` has ``dice(e, k)``
    (None: no value); ``cv``: the summary's figures at the best epoch."""
    path.mkdir(parents=True)
    with (path / "epochs.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["epoch", "fold", "val/dice", "val/acc"])
        writer.writeheader()
        for epoch in range(1, epochs + 1):
            for fold in range(2):
                d = dice(epoch, fold)
                writer.writerow(
                    {"epoch": epoch, "fold": fold, "val/dice": "" if d is None else d, "val/acc": 0.7}
                )
    folds = [{"train": [f"tr{k}_{i}" for i in range(n_train)], "val": v} for k, v in enumerate(val)]
    splits = {"test": TEST, "folds": folds, "train_fraction": n_train / 64}
    (path / "splits.json").write_text(json.dumps(splits), encoding="utf-8")
    summary = {"best_epoch": best or epochs, **({"cv": cv} if cv else {})}
    (path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return path


def _law(n: int):
    """Dice 0.40 + 0.05 log2(n / 16) from epoch 4 on (0.02 lower before), folds +-0.01 around it."""
    level = 0.40 + 0.05 * math.log2(n / 16)
    return lambda e, k: level - 0.02 * (e < 4) + (0.01 if k else -0.01)


def test_points_read_both_ways_and_the_fit_recovers_the_law(tmp_path: Path) -> None:
    runs = [load_run(_run(tmp_path / f"n{n}", n, _law(n), best=3)) for n in (16, 32, 64)]
    check_same_validation(runs)
    points = [curve_point(r, ["val/dice", "val/acc", "val/auc"], window=4) for r in runs]
    p = points[2]
    assert p.train_images == 64 and p.fraction == 1.0 and p.epochs == 8 and p.selected_epoch == 3
    assert p.end["val/dice"] == pytest.approx((0.50, math.sqrt(2) * 0.01))  # last 4 epochs, both folds
    assert p.selected["val/dice"][0] == pytest.approx(0.48)  # epoch 3 sits 0.02 lower
    assert "val/auc" not in p.end  # not recorded: no invented number
    fit = fit_log2(points, "val/dice", "end", target=0.60)
    assert fit is not None and fit.points == 3
    assert fit.slope == pytest.approx(0.05) and fit.predict(16) == pytest.approx(0.40)
    assert fit.images_for_target == pytest.approx(256.0)  # two doublings beyond 64
    flat = fit_log2(points, "val/acc", "end", target=0.9)
    assert flat is not None and flat.slope == pytest.approx(0.0, abs=1e-12)
    assert flat.images_for_target is None  # flat: never crosses
    assert fit_log2(points[:1], "val/dice") is None  # one size: no curve


def test_report_figure_json_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = [str(_run(tmp_path / f"n{n}", n, _law(n))) for n in (16, 32, 64)]
    targets = {"val/dice": 0.6, "val/acc": 0.8}
    report, data = learning_curve(
        dirs, ["quarter", "half", "all"], targets=targets, figure=tmp_path / "lc.png"
    )
    assert "| quarter | 0.25 | 16.0 | 8 | 4-8 | 8 |" in report
    assert (
        "lesion Dice: b = +0.050 per doubling (3 runs; per fold +0.050 / +0.050; rms residual 0.000);"
        " crosses 0.6 at about 256" in report
    )
    assert "2.0 doublings beyond 64" in report
    assert "accuracy: b = +0.000 per doubling (3 runs; per fold" in report
    assert "crosses 0.8 at the fit never crosses it" in report
    assert (tmp_path / "lc.png").stat().st_size > 10_000 and data["at"] == "end"
    json.dumps(data, allow_nan=False)  # strict JSON: the never-crossed target is null, not Infinity
    assert [f["images_for_target"] for f in data["fits"]] == [pytest.approx(256.0), None]
    dice_fit = data["fits"][0]
    assert dice_fit["fold_slopes"] == [pytest.approx(0.05)] * 2 and dice_fit["slope_std"] < 1e-12
    below, _ = learning_curve(dirs, targets={"val/dice": 0.35})
    assert "crosses 0.35 at about 8 training images per fold (below the smallest run, 16" in below
    out = tmp_path / "lc.json"
    args = ["learning-curve", *dirs, "--target", "val/dice=0.6", "--at", "selected", "--json", str(out)]
    assert launch.main(args) == 0
    assert "Fit of the `selected` values" in capsys.readouterr().out
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert [p["train_images"] for p in saved["points"]] == [16, 32, 64]
    assert saved["fits"][0]["metric"] == "val/dice"


def test_per_fold_slopes_and_residual(tmp_path: Path) -> None:
    """Each fold is fitted on its own values (fold 0 gains 0.015 then 0.005, fold 1 0.06 then 0.02): the
    mean slope is their mean, their spread how much the gain varies between folds; a bent curve leaves a
    residual, two sizes none."""

    def bent(n: int):
        gain = {16: 0.0, 32: 0.06, 64: 0.08}[n]  # concave: the second doubling buys less
        return lambda e, k: 0.40 + (gain / 4 if k == 0 else gain) + (0.01 if e == 8 else 0.0)

    runs = [load_run(_run(tmp_path / f"n{n}", n, bent(n), best=8)) for n in (16, 32, 64)]
    points = [curve_point(r, ["val/dice"], window=1) for r in runs]
    assert points[1].end_folds["val/dice"] == pytest.approx((0.425, 0.47))
    assert points[1].selected_folds["val/dice"] == pytest.approx((0.425, 0.47))
    fit = fit_log2(points, "val/dice", "end")
    assert fit is not None
    assert fit.fold_slopes == pytest.approx((0.01, 0.04))
    assert fit.slope == pytest.approx(0.025) and fit.slope_std == pytest.approx(0.03 / math.sqrt(2))
    residuals = np.array([0.41, 0.4475, 0.46]) - (fit.intercept + fit.slope * np.log2([16, 32, 64]))
    assert fit.rms_residual == pytest.approx(float(np.sqrt(np.mean(residuals**2))))
    assert fit.rms_residual > 0.005
    aimed = fit_log2(points, "val/dice", "end", target=0.5)
    assert aimed is not None and aimed.center == pytest.approx((5.0, (0.41 + 0.4475 + 0.46) / 3))
    reach = [2 ** (5.0 + (0.5 - aimed.center[1]) / b) for b in (0.025, 0.01, 0.04)]
    assert aimed.images_for_target == pytest.approx(reach[0])
    assert aimed.target_range == pytest.approx((reach[2], reach[1]))  # steepest fold first: fewest images
    report, _ = learning_curve(
        [str(r.path) for r in runs], metrics=["val/dice"], window=1, targets={"val/dice": 0.5}
    )
    assert f"along the folds' own slopes: between {reach[2]:.0f} and {reach[1]:.0f}" in report
    two = fit_log2(points[:2], "val/dice", "selected")
    assert two is not None and two.rms_residual is None  # a line through two points: no residual to judge
    assert two.fold_slopes == pytest.approx((0.015, 0.06))
    one_fold = [
        CurvePoint(**{**vars(p), "end_folds": {"val/dice": (v, math.nan) if i else (v,)}})
        for i, (p, v) in enumerate(zip(points, (0.4, 0.45, 0.5), strict=True))
    ]
    lone = fit_log2(one_fold, "val/dice", "end")
    assert lone is not None and lone.fold_slopes[0] == pytest.approx(0.05) and math.isnan(lone.fold_slopes[1])
    assert math.isnan(lone.slope_std)  # one fold with a slope: no spread


def _points(folds: Sequence[Sequence[float]], sizes=(16, 32, 64)) -> list[CurvePoint]:
    """Points whose fold ``k`` has ``folds[k][i]`` at ``sizes[i]`` (the mean over folds as the point)."""
    return [
        CurvePoint(
            label=str(n),
            path=Path(str(n)),
            train_images=float(n),
            fraction=1.0,
            epochs=8,
            selected_epoch=None,
            end_epochs=(1, 8),
            end={"m": (float(np.mean(vs)), 0.0)},
            selected={},
            end_folds={"m": tuple(vs)},
        )
        for n, vs in zip(sizes, zip(*folds, strict=True), strict=True)
    ]


@pytest.mark.parametrize(
    ("folds", "target", "open_end"),
    [
        # rising metric, target beyond the runs: a fold going down never gets there (top open)
        ([(0.40, 0.45, 0.50), (0.40, 0.39, 0.38)], 0.6, "top"),
        # rising metric, target below the runs: that fold got there with any training set (bottom 0)
        ([(0.40, 0.45, 0.50), (0.40, 0.39, 0.38)], 0.2, "bottom"),
        # a loss (falling), target below the runs: a fold whose loss rises never gets there (top open)
        ([(0.50, 0.45, 0.40), (0.50, 0.51, 0.52)], 0.3, "top"),
        # a loss, target above the runs (reached with fewer images): bottom 0
        ([(0.50, 0.45, 0.40), (0.50, 0.51, 0.52)], 0.7, "bottom"),
        # both folds on the mean fit's side: a closed range, steep fold at the near end
        ([(0.50, 0.45, 0.40), (0.50, 0.48, 0.46)], 0.3, None),
    ],
)
def test_target_range_brackets_the_crossing_either_way(folds, target, open_end) -> None:
    fit = fit_log2(_points(folds), "m", "end", target=target)
    assert fit is not None and fit.images_for_target is not None and fit.target_range is not None
    low, high = fit.target_range
    assert low <= fit.images_for_target and (high is None or fit.images_for_target <= high)
    assert (high is None) == (open_end == "top") and (low == 0.0) == (open_end == "bottom")
    if open_end is None:  # fold 0 (slope -0.05) crosses nearest the runs, fold 1 (-0.02) farthest
        near, far = (2 ** (fit.center[0] + (target - fit.center[1]) / b) for b in fit.fold_slopes)
        assert (low, high) == pytest.approx((near, far))


def test_target_range_needs_two_fold_slopes() -> None:
    lone = _points([(0.40, 0.45, 0.50)])
    fit = fit_log2(lone, "m", "end", target=0.6)
    assert fit is not None and fit.fold_slopes == pytest.approx((0.05,)) and fit.target_range is None
    one_size = _points([(0.40, 0.45, 0.50), (math.nan, math.nan, 0.5)])
    fit = fit_log2(one_size, "m", "end", target=0.6)
    assert fit is not None and math.isnan(fit.fold_slopes[1]) and fit.target_range is None


def test_figure_with_uneven_folds(tmp_path: Path) -> None:
    """Unequal fold slopes, a fold missing at one size, one run with a single fold: the figure is drawn."""
    points = _points([(0.40, 0.45, 0.50), (0.42, math.nan, 0.44), (0.38, 0.40, 0.52)])
    points[0] = CurvePoint(**{**vars(points[0]), "end_folds": {"m": (0.40,)}})
    fits = {"m": fit_log2(points, "m", "end", target=0.6)}
    assert plot_learning_curve(points, fits, ["m"], "end", tmp_path / "f.png").stat().st_size > 10_000


def test_missing_values_are_skipped_not_invented(tmp_path: Path) -> None:
    """A fold without a value is left out of its epoch's mean (as the run's summary does); a run without a
    selected epoch has no 'selected' point, and a metric with one size left says so instead of a fit."""
    law = _law(64)
    gap = _run(tmp_path / "gap", 64, lambda e, k: None if (e == 8 and k == 1) else law(e, k), best=3)
    point = curve_point(load_run(gap), ["val/dice"], window=4)
    assert point.end_epochs == (5, 8)
    assert point.end["val/dice"][0] == pytest.approx(0.50)  # fold 1's mean over epochs 5-7 only
    assert point.selected["val/dice"][0] == pytest.approx(0.48)
    saved = _run(tmp_path / "saved", 32, _law(32), cv={"dice": {"mean": 0.61, "std": 0.02}})
    assert curve_point(load_run(saved), ["val/dice"]).selected["val/dice"] == (0.61, 0.02)  # the summary's
    (tmp_path / "gap" / "summary.json").unlink()
    report, data = learning_curve([str(gap), str(saved)], at="selected", metrics=["val/dice"])
    assert "lesion Dice: no fit (fewer than two training-set sizes have a value)" in report
    assert data["fits"] == []


def test_refuses_what_is_not_a_learning_curve(tmp_path: Path) -> None:
    a = str(_run(tmp_path / "a", 16, _law(16)))
    b = str(_run(tmp_path / "b", 32, _law(32)))
    other_val = str(_run(tmp_path / "c", 32, _law(32), val=[["v0a"], ["v1a", "v1b", "v0b"]]))
    same_size = str(_run(tmp_path / "d", 16, _law(16)))
    with pytest.raises(UserError, match="validated on different images"):
        learning_curve([a, other_val])
    with pytest.raises(UserError, match="same number of images"):
        learning_curve([a, same_size])
    with pytest.raises(UserError, match="at least two runs"):
        learning_curve([a])
    with pytest.raises(UserError, match="no run recorded 'val/dicee'; did you mean 'val/dice'"):
        learning_curve([a, b], metrics=["val/dicee"])
    with pytest.raises(UserError, match="one label per run"):
        learning_curve([a, b], labels=["x"])
    (tmp_path / "b" / "splits.json").unlink()
    with pytest.raises(UserError, match=r"no readable splits\.json"):
        learning_curve([a, b])
    assert parse_targets(["val/dice=0.76", " val/acc = 0.81"]) == {"val/dice": 0.76, "val/acc": 0.81}
    for bad in ("val/dice", "=0.7", "val/dice=high"):
        with pytest.raises(UserError, match="COLUMN=VALUE"):
            parse_targets([bad])
    assert np.isfinite(curve_point(load_run(a), ["val/dice"]).end["val/dice"][0])
