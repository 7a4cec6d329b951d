"""How a recipe's CV figures grow with its training images: ``launch.py learning-curve RUN [RUN ...]``.

The runs are one recipe trained with different ``data.train_fraction`` (and, at one size, different
``train.seed`` for the noise): the command refuses runs that were not validated on the same images (same
``val`` lists per fold and the same test part), so every point is scored on the same images and only the
training set differs. Each run is one point per metric at ``n``, its mean number of training images per
fold, read two ways:

- ``end``: the mean of the last ``window`` epochs (default). Runs of small fractions are trained for more
  epochs (the same optimizer steps); the best of more epochs is the more optimistic, the end of the
  schedule is not;
- ``selected``: the CV mean at the run's own best common epoch, the figure the run reports
  (``summary.json``'s ``cv``, read from ``epochs.csv`` where the summary lacks the metric).

Means ignore a fold without a value, as the run's own summary does. The fit is least squares of
``metric = a + b log2(n)`` over every run: ``b`` is what one doubling of the training images buys (negative
for a column where lower is better, such as a loss). Because every run is scored on the same validation
folds, the same line is also fitted to each fold's own values: the spread of those per-fold slopes shows
how much ``b`` varies between folds (paired: the folds' different difficulty cancels; the mean slope's
standard error is ``slope_std / sqrt(folds)``), and with three or more sizes the residual of the mean fit
says whether the log2 law holds at all. With a target, the fit is solved for the ``n`` where it crosses the
target; outside the runs' sizes that is an extrapolation, and the report says by how many doublings and
where lines with the folds' own slopes would cross it (through the runs' centre, where the least-squares
fit is surest). matplotlib is imported lazily.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from analysis.compare_runs import DEFAULT_METRICS, LABELS, RunCurves, check_metrics, check_paired, load_runs
from model_zoo.errors import UserError
from model_zoo.files import json_safe
from trainables.metrics import mean_std

At = Literal["end", "selected"]


@dataclass(frozen=True)
class CurvePoint:
    """One run: its training images per fold and, per metric, ``(mean, std over folds)`` both ways, with
    each fold's own value (NaN where a fold has none) for the per-fold fits."""

    label: str
    path: Path
    train_images: float
    fraction: float
    epochs: int
    selected_epoch: int | None
    end_epochs: tuple[int, int]
    end: dict[str, tuple[float, float]]
    selected: dict[str, tuple[float, float]]
    end_folds: dict[str, tuple[float, ...]] = field(default_factory=dict)
    selected_folds: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def value(self, metric: str, at: At) -> tuple[float, float] | None:
        return (self.end if at == "end" else self.selected).get(metric)

    def fold_values(self, metric: str, at: At) -> tuple[float, ...]:
        return (self.end_folds if at == "end" else self.selected_folds).get(metric, ())


@dataclass(frozen=True)
class LogFit:
    """``metric = intercept + slope * log2(n)``; with a ``target``, ``images_for_target`` is the ``n`` where
    the fit crosses it (None when the fit is flat or crosses it only beyond 2**1000 images).
    ``fold_slopes``: the same fit on each fold's own values (NaN for a fold with fewer than two sizes);
    ``rms_residual``: of the mean fit, None below three sizes (a line passes through two points).
    ``center``: ``(mean log2 n, mean metric)`` of the runs, the point every least-squares line passes
    through; ``target_range``: the fewest and the most images at which lines through it with the folds' own
    slopes cross the target (None at the top: never), the spread of ``images_for_target`` over the folds."""

    metric: str
    intercept: float
    slope: float
    points: int
    target: float | None = None
    images_for_target: float | None = None
    fold_slopes: tuple[float, ...] = ()
    rms_residual: float | None = None
    center: tuple[float, float] = (math.nan, math.nan)
    target_range: tuple[float, float | None] | None = None

    @property
    def slope_std(self) -> float:
        """Sample std of the per-fold slopes (NaN with fewer than two)."""
        finite = [b for b in self.fold_slopes if not math.isnan(b)]
        return float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan

    def predict(self, n: np.ndarray | float) -> np.ndarray | float:
        return self.intercept + self.slope * np.log2(n)


def check_same_validation(runs: Sequence[RunCurves]) -> None:
    """Refuse runs whose validation folds or test part differ (or cannot be read): their points would mix
    the training set's size with the images they were scored on."""
    check_paired(runs, same_training=False)


def curve_point(run: RunCurves, metrics: Sequence[str], window: int = 5) -> CurvePoint:
    """The point of one run; a metric it did not record is left out (no invented number)."""
    if window < 1:
        raise UserError(f"window must be >= 1, got {window}")
    folds = run.splits["folds"] if run.splits else []
    train_images = float(np.mean([len(f.get("train", [])) for f in folds])) if folds else math.nan
    best = run.summary.get("best_epoch")
    selected_epoch = int(best) if isinstance(best, (int, float)) else None
    cv = run.summary.get("cv") if isinstance(run.summary.get("cv"), dict) else {}
    any_value = np.zeros(len(run.epochs), dtype=bool)
    for metric in metrics:
        if metric in run.columns:
            any_value |= ~np.isnan(run.columns[metric]).all(axis=1)
    recorded = np.flatnonzero(any_value)[-window:]  # the last epochs where some fold has a value
    end_epochs = (int(run.epochs[recorded[0]]), int(run.epochs[recorded[-1]])) if recorded.size else (0, 0)
    end: dict[str, tuple[float, float]] = {}
    selected: dict[str, tuple[float, float]] = {}
    end_folds: dict[str, tuple[float, ...]] = {}
    selected_folds: dict[str, tuple[float, ...]] = {}
    rows = np.flatnonzero(run.epochs == selected_epoch)
    for metric in metrics:
        if metric not in run.columns:
            continue
        values = run.columns[metric]  # [epochs, folds]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a fold without a value in the window
            per_fold = np.nanmean(values[recorded], axis=0) if recorded.size else np.array([])
        if not np.isnan(per_fold).all():
            end[metric] = mean_std(per_fold)
            end_folds[metric] = tuple(float(v) for v in per_fold)
        at_selected = values[rows[0]] if rows.size else None
        if at_selected is not None and not np.isnan(at_selected).all():
            selected_folds[metric] = tuple(float(v) for v in at_selected)
        saved = cv.get(metric.removeprefix("val/"))
        if isinstance(saved, dict) and isinstance(saved.get("mean"), (int, float)):
            selected[metric] = (float(saved["mean"]), float(saved.get("std") or 0.0))
        elif at_selected is not None and metric in selected_folds:
            selected[metric] = mean_std(at_selected)
    return CurvePoint(
        label=run.label,
        path=run.path,
        train_images=train_images,
        fraction=float(run.splits.get("train_fraction", 1.0)) if run.splits else math.nan,
        epochs=int(run.epochs.max()),
        selected_epoch=selected_epoch,
        end_epochs=end_epochs,
        end=end,
        selected=selected,
        end_folds=end_folds,
        selected_folds=selected_folds,
    )


def fit_log2(
    points: Sequence[CurvePoint], metric: str, at: At = "end", target: float | None = None
) -> LogFit | None:
    """Least squares ``a + b log2(n)`` over the points that have ``metric`` (and per fold over the folds'
    own values); None below two sizes."""
    xy = [(p.train_images, v[0]) for p in points if (v := p.value(metric, at)) is not None]
    if len({x for x, _ in xy}) < 2:
        return None
    x = np.log2([n for n, _ in xy])
    y = np.array([v for _, v in xy])
    slope, intercept = np.polyfit(x, y, 1)
    rms = None
    if len(set(x.tolist())) > 2:
        rms = float(np.sqrt(np.mean((y - (intercept + slope * x)) ** 2)))
    center = (float(x.mean()), float(y.mean()))
    folds = max((len(p.fold_values(metric, at)) for p in points), default=0)
    fold_slopes = []
    for k in range(folds):
        pairs = [
            (math.log2(p.train_images), vs[k])
            for p in points
            if len(vs := p.fold_values(metric, at)) > k and not math.isnan(vs[k])
        ]
        if len({px for px, _ in pairs}) < 2:
            fold_slopes.append(math.nan)
            continue
        fold_slopes.append(float(np.polyfit(*zip(*pairs, strict=True), 1)[0]))
    needed, spread = None, None
    if target is not None:
        needed = _images_at(target, center, slope)
        spread = _crossing_spread(target, center, slope, fold_slopes)
    return LogFit(
        metric,
        float(intercept),
        float(slope),
        len(xy),
        target,
        needed,
        tuple(fold_slopes),
        rms,
        center,
        spread,
    )


def _images_at(target: float, center: tuple[float, float], slope: float) -> float | None:
    """Training images where the line through ``center`` with ``slope`` reaches ``target``; None when it
    is flat or reaches it only beyond 2**1000 images (beyond any data set: no number)."""
    if abs(slope) <= 1e-9:
        return None
    log2_n = center[0] + (target - center[1]) / slope
    return float(2.0**log2_n) if abs(log2_n) < 1000 else None


def _crossing_spread(
    target: float, center: tuple[float, float], slope: float, fold_slopes: Sequence[float]
) -> tuple[float, float | None] | None:
    """Fewest and most training images at which lines through ``center`` with the folds' own slopes reach
    ``target``; None with fewer than two fold slopes or a flat mean fit. A fold whose slope is flat or
    opposite to the mean fit's never reaches the target along its own slope: beyond the runs that end is
    open (None: never), on the small side it is 0 (any training set)."""
    slopes = [b for b in fold_slopes if not math.isnan(b)]
    if len(slopes) < 2 or abs(slope) <= 1e-9:
        return None
    dy = target - center[1]
    away = math.copysign(math.inf, dy / slope) if dy else 0.0  # where a fold that never gets there ends
    log2s = [center[0] + (dy / b if b * slope > 0 else away) for b in slopes]
    low, high = min(log2s), max(log2s)
    return float(2.0 ** max(low, -1100.0)), (None if high > 1000 else float(2.0**high))


def _crossing(n: float | None, smallest: float, largest: float) -> str:
    """Where the fit crosses a target, said against the runs' sizes."""
    if n is None:
        return "the fit never crosses it (flat, or only beyond any data set)"
    if n > largest:
        doublings = math.log2(n / largest)
        return f"about {n:.0f} training images per fold ({doublings:.1f} doublings beyond {largest:.0f})"
    if n < smallest:
        return (
            f"about {n:.0f} training images per fold (below the smallest run, {smallest:.0f}: extrapolated)"
        )
    return f"about {n:.0f} training images per fold (within the runs)"


def format_report(
    points: Sequence[CurvePoint],
    fits: Mapping[str, LogFit],
    metrics: Sequence[str],
    at: At,
) -> str:
    """Markdown: one row per run (both readings per metric), then one line per metric's fit."""
    head = (
        "| run | fraction | training images / fold | epochs | end: epochs | selected epoch | "
        + " | ".join(f"{LABELS.get(m, m)} (end / selected)" for m in metrics)
    )
    lines = [head + " |", "|" + "---|" * (6 + len(metrics))]
    for p in sorted(points, key=lambda p: p.train_images):
        cells = []
        for m in metrics:
            e, s = p.end.get(m), p.selected.get(m)
            cells.append(" / ".join(f"{v[0]:.3f} ± {v[1]:.3f}" if v else "-" for v in (e, s)))
        lines.append(
            f"| {p.label} | {p.fraction:g} | {p.train_images:.1f} | {p.epochs} | "
            f"{p.end_epochs[0]}-{p.end_epochs[1]} | {p.selected_epoch or '-'} | " + " | ".join(cells) + " |"
        )
    sizes = [p.train_images for p in points]
    lines += ["", f"Fit of the `{at}` values, metric = a + b log2(training images per fold):", ""]
    for m in metrics:
        fit = fits.get(m)
        if fit is None:
            lines.append(f"- {LABELS.get(m, m)}: no fit (fewer than two training-set sizes have a value)")
            continue
        line = f"- {LABELS.get(m, m)}: b = {fit.slope:+.3f} per doubling ({fit.points} runs"
        if any(not math.isnan(b) for b in fit.fold_slopes):
            per_fold = " / ".join("-" if math.isnan(b) else f"{b:+.3f}" for b in fit.fold_slopes)
            line += f"; per fold {per_fold}"
        if fit.rms_residual is not None:
            line += f"; rms residual {fit.rms_residual:.3f}"
        line += ")"
        if fit.target is not None:
            line += f"; crosses {fit.target:g} at {_crossing(fit.images_for_target, min(sizes), max(sizes))}"
            if fit.target_range is not None and fit.images_for_target is not None:
                low, high = (
                    "never" if n is None else "<1" if n < 1 else f"{n:.0f}" for n in fit.target_range
                )
                line += f"; along the folds' own slopes: between {low} and {high}"
        lines.append(line)
    return "\n".join(lines)


def plot_learning_curve(
    points: Sequence[CurvePoint], fits: Mapping[str, LogFit], metrics: Sequence[str], at: At, path: str | Path
) -> Path:
    """One panel per metric: each run's value (error bar: ± one std over folds) against its training
    images on a log2 axis, the fit (dashed where it extrapolates) and the target line."""
    from analysis.plots import pyplot, save_figure

    plt = pyplot()

    ncols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.6 * nrows), squeeze=False)
    sizes = [p.train_images for p in points]
    lo, hi = min(sizes), max(sizes)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        ordered = sorted(points, key=lambda p: p.train_images)
        folds = max((len(p.fold_values(metric, at)) for p in ordered), default=0)
        for k in range(folds):  # each fold's own curve, faint: the same validation images at every size
            xy = [(p.train_images, vs[k]) for p in ordered if len(vs := p.fold_values(metric, at)) > k]
            label = "folds" if k == 0 else None
            ax.plot(*zip(*xy, strict=True), color="0.6", lw=0.8, marker=".", label=label)
        for p in points:
            v = p.value(metric, at)
            if v is not None:
                ax.errorbar(p.train_images, v[0], yerr=v[1], fmt="o", capsize=3, color="C0", alpha=0.85)
        fit = fits.get(metric)
        if fit is not None:
            xs = np.geomspace(lo, hi, 50)
            ax.plot(xs, fit.predict(xs), color="C1", label=f"fit: {fit.slope:+.3f} per doubling")
            reach = fit.images_for_target
            if reach is not None and reach > hi:
                far = np.geomspace(hi, min(reach, hi * 64), 30)
                ax.plot(far, fit.predict(far), color="C1", linestyle="--", label="extrapolation")
                xs = np.geomspace(lo, far[-1], 80)
            slopes = [b for b in fit.fold_slopes if not math.isnan(b)]
            if len(slopes) > 1:  # the lines through the fit's centre with the folds' extreme slopes
                dx = np.log2(xs) - fit.center[0]
                fan = [fit.center[1] + b * dx for b in (min(slopes), max(slopes))]
                ax.fill_between(xs, *fan, color="C1", alpha=0.12, lw=0, label="fold slopes")
            if fit.target is not None:
                ax.axhline(fit.target, color="C3", linestyle=":", label=f"target {fit.target:g}")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xscale("log", base=2)
        # the runs' sizes (and where a target is crossed beyond them) as plain numbers, not powers of 2
        ticks = {round(n) for n in sizes}
        if fit is not None and fit.images_for_target is not None and fit.images_for_target > hi:
            ticks.add(round(min(fit.images_for_target, hi * 64)))
        ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
        ax.minorticks_off()
        ax.set_title(LABELS.get(metric, metric))
        ax.set_xlabel("training images per fold")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    reading = "mean of the last epochs" if at == "end" else "best common epoch"
    fig.suptitle(f"CV mean ({reading}) against training images, same validation folds (bars: ± 1 std)")
    fig.tight_layout()
    return save_figure(fig, path)


def parse_targets(items: Sequence[str]) -> dict[str, float]:
    """``["val/dice=0.76", ...]`` -> ``{"val/dice": 0.76}``; a clear error on anything else."""
    targets = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            targets[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise UserError(f"--target {item!r}: expected COLUMN=VALUE, e.g. val/dice=0.76")
    return targets


def learning_curve(
    run_dirs: Sequence[str | Path],
    labels: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    window: int = 5,
    at: At = "end",
    targets: Mapping[str, float] | None = None,
    figure: str | Path | None = None,
) -> tuple[str, dict[str, Any]]:
    """Read the runs, fit every metric, return the Markdown report and its data; draw ``figure``."""
    if len(run_dirs) < 2:
        raise UserError("a learning curve needs at least two runs (two training-set sizes)")
    if at not in ("end", "selected"):
        raise UserError(f"at: expected 'end' or 'selected', got {at!r}")
    runs = load_runs(run_dirs, labels)
    check_same_validation(runs)
    targets = dict(targets or {})
    check_metrics(runs, [*(metrics or ()), *targets])
    recorded = set().union(*(run.columns for run in runs))
    metrics = list(metrics or [m for m in DEFAULT_METRICS if m in recorded])
    metrics += [m for m in targets if m not in metrics]
    points = [curve_point(run, metrics, window) for run in runs]
    if len({p.train_images for p in points}) < 2:
        raise UserError("every run trained on the same number of images: set data.train_fraction per run")
    fits = {m: f for m in metrics if (f := fit_log2(points, m, at, targets.get(m))) is not None}
    report = format_report(points, fits, metrics, at)
    data: dict[str, Any] = {
        "at": at,
        "window": window,
        "points": [{**vars(p), "path": str(p.path)} for p in points],
        "fits": [{**vars(f), "slope_std": f.slope_std} for f in fits.values()],
    }
    if figure is not None:
        data["figure"] = str(plot_learning_curve(points, fits, metrics, at, figure))
    return report, json_safe(data)
