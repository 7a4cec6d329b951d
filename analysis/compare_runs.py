"""Paired comparison of ``launch.py train`` runs on the same folds: ``launch.py compare REF RUN [RUN ...]``.

A change to a recipe is judged against the run it changes, fold by fold: both runs saw the same
training and validation images (the command refuses runs whose ``splits.json`` differ), so the
per-fold difference removes the fold-to-fold spread that dominates a CV standard deviation. For each
metric the report gives, against the reference run:

- the difference of the CV means at the last epoch both runs recorded, with its per-fold differences;
- the same over the mean of the last ``window`` common epochs (a single epoch of a from-scratch run moves
  by +-0.01-0.02 Dice from one epoch to the next);
- on how many common epochs the run's CV mean is ahead.

A difference is only worth reading beside the run-to-run noise of the recipe itself: compare a run with
the same spec under another ``train.seed`` to measure it (docs/results.md, section 1). The figure draws
every run's CV mean per epoch (band: +- one standard deviation over folds for the reference) so a reader
sees whether a difference is a level shift or one lucky epoch. matplotlib is imported lazily.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.report import read_json
from model_zoo.errors import UserError
from model_zoo.files import json_safe
from trainables.run_curves import fold_mean_std, read_fold_curves

DEFAULT_METRICS: tuple[str, ...] = (
    "val/dice",
    "val/acc",
    "val/macro_f1",
    "val/auc",
    "val/normal_specificity",
    "val/score",
)
# Drawn beside the metrics when present: how each run fits its training images.
TRAIN_PANELS: tuple[str, ...] = ("train/seg", "train/cls")
LABELS: dict[str, str] = {
    "val/dice": "lesion Dice",
    "val/ungated_dice": "lesion Dice, ungated",
    "val/dice_benign": "Dice, benign",
    "val/dice_malignant": "Dice, malignant",
    "val/acc": "accuracy",
    "val/macro_f1": "macro-F1",
    "val/auc": "AUC",
    "val/normal_specificity": "normal specificity",
    "val/score": "selection score",
    "train/seg": "training segmentation loss",
    "train/cls": "training classification loss",
}


@dataclass(frozen=True)
class RunCurves:
    """One train run's per-fold curves (``columns[name]``: array ``[epochs, folds]``) and its files."""

    label: str
    path: Path
    epochs: np.ndarray
    columns: dict[str, np.ndarray]
    summary: dict[str, Any]
    splits: dict[str, Any] | None


@dataclass(frozen=True)
class MetricDelta:
    """``other - reference`` for one metric; fold differences in fold order."""

    metric: str
    last_epoch: int
    reference: float
    other: float
    delta: float
    fold_deltas: tuple[float, ...]
    window: tuple[int, int]
    window_delta: float
    window_fold_deltas: tuple[float, ...]
    epochs_ahead: int
    epochs_common: int


def load_run(run_dir: str | Path, label: str | None = None) -> RunCurves:
    """Read a train run folder (``epochs.csv``, and ``summary.json`` / ``splits.json`` where present)."""
    path = Path(run_dir)
    csv_path = path / "epochs.csv"
    if not csv_path.is_file():
        raise UserError(f"{path}: no epochs.csv here; give the folder of a `launch.py train` run")
    try:
        epochs, columns = read_fold_curves(csv_path)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    splits = read_json(path / "splits.json") or None  # missing or unreadable: the folds cannot be checked
    return RunCurves(label or path.name, path, epochs, columns, read_json(path / "summary.json"), splits)


def load_runs(run_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[RunCurves]:
    """:func:`load_run` for each folder; ``labels``: one per run, or None for the folder names."""
    if labels is not None and len(labels) != len(run_dirs):
        raise UserError(f"{len(labels)} labels for {len(run_dirs)} runs: give one label per run")
    return [load_run(d, labels[i] if labels else None) for i, d in enumerate(run_dirs)]


def check_paired(runs: Sequence[RunCurves], same_training: bool = True) -> None:
    """Refuse runs that did not train and validate on the same images: their differences mix the
    change with the folds. Runs without ``splits.json`` cannot be checked and are refused too.

    ``same_training=False`` (learning curves) checks the validation folds and the test part only: the runs
    differ by their training lists on purpose, but every point must be scored on the same images."""
    reference = runs[0]
    for run in runs:
        if run.splits is None or not isinstance(run.splits.get("folds"), list) or not run.splits["folds"]:
            raise UserError(
                f"{run.path}: no readable splits.json, so the folds cannot be checked; not compared"
            )

    def scored(run: RunCurves) -> tuple[list, list]:
        folds = run.splits["folds"]
        parts = folds if same_training else [sorted(f.get("val", [])) for f in folds]
        return parts, sorted(run.splits.get("test", []))

    for run in runs[1:]:
        if scored(run) == scored(reference):
            continue
        if same_training:
            raise UserError(
                f"{run.path} and {reference.path} were split differently (splits.json folds or test "
                "images differ): a paired comparison needs the same folds; train both with the same "
                "data.seed and data.folds, or the same data.splits file"
            )
        raise UserError(
            f"{run.path} and {reference.path} were validated on different images (splits.json val "
            "folds or test part differ): a learning curve needs the same folds; train every point with "
            "the same data.seed and data.folds (or data.splits), changing only data.train_fraction"
        )


def check_metrics(runs: Sequence[RunCurves], metrics: Sequence[str]) -> None:
    """Refuse a metric no run recorded (a typo), naming the closest column and all of them."""
    recorded = sorted(set().union(*(run.columns for run in runs)) - {"best_epoch", "stopped"})
    for metric in metrics:
        if metric not in recorded:
            close = difflib.get_close_matches(metric, recorded, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(f"no run recorded {metric!r}; {hint}epochs.csv columns: {', '.join(recorded)}")


def paired_delta(reference: RunCurves, other: RunCurves, metric: str, window: int = 5) -> MetricDelta | None:
    """``other - reference`` for ``metric`` on the epochs both runs recorded for every fold; ``None``
    when either run lacks the metric or they share no complete epoch."""
    if window < 1:
        raise UserError(f"window must be >= 1, got {window}")
    if metric not in reference.columns or metric not in other.columns:
        return None
    ref_rows = {int(e): row for e, row in zip(reference.epochs, reference.columns[metric], strict=True)}
    oth_rows = {int(e): row for e, row in zip(other.epochs, other.columns[metric], strict=True)}
    common = [
        e
        for e in sorted(ref_rows.keys() & oth_rows.keys())
        if ref_rows[e].shape == oth_rows[e].shape
        and not np.isnan(ref_rows[e]).any()
        and not np.isnan(oth_rows[e]).any()
    ]
    if not common:
        return None
    ref = np.stack([ref_rows[e] for e in common])  # [epochs, folds]
    oth = np.stack([oth_rows[e] for e in common])
    diff = oth - ref
    tail = slice(max(0, len(common) - window), len(common))
    return MetricDelta(
        metric=metric,
        last_epoch=common[-1],
        reference=float(ref[-1].mean()),
        other=float(oth[-1].mean()),
        delta=float(diff[-1].mean()),
        fold_deltas=tuple(float(d) for d in diff[-1]),
        window=(common[tail][0], common[-1]),
        window_delta=float(diff[tail].mean()),
        window_fold_deltas=tuple(float(d) for d in diff[tail].mean(axis=0)),
        epochs_ahead=int((oth.mean(axis=1) > ref.mean(axis=1)).sum()),
        epochs_common=len(common),
    )


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def format_table(reference: RunCurves, other: RunCurves, deltas: Sequence[MetricDelta]) -> str:
    """A Markdown table of ``other`` against ``reference``, one row per metric."""
    lines = [
        f"**{other.label}** against **{reference.label}** (same folds; per-fold differences in fold order)",
        "",
        "| metric | epoch | reference | run | difference (per fold) | last epochs | difference there "
        "(per fold) | epochs ahead |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in deltas:
        folds = ", ".join(_signed(x) for x in d.fold_deltas)
        window_folds = ", ".join(_signed(x) for x in d.window_fold_deltas)
        lines.append(
            f"| {LABELS.get(d.metric, d.metric)} | {d.last_epoch} | {d.reference:.3f} | {d.other:.3f} "
            f"| {_signed(d.delta)} ({folds}) | {d.window[0]}-{d.window[1]} | {_signed(d.window_delta)} "
            f"({window_folds}) | {d.epochs_ahead}/{d.epochs_common} |"
        )
    best = [
        f"{run.label}: best common epoch {run.summary.get('best_epoch')}, score {run.summary['score']:.3f}"
        for run in (reference, other)
        if isinstance(run.summary.get("score"), (int, float))
    ]
    if best:
        lines += ["", "Each run's own selection: " + "; ".join(best) + "."]
    return "\n".join(lines)


def plot_comparison(runs: Sequence[RunCurves], path: str | Path, metrics: Sequence[str]) -> Path:
    """Each run's CV mean per epoch, one panel per metric (and per training loss present); the
    reference (first run) with a +- one standard deviation band over folds."""
    from analysis.plots import pyplot, save_figure

    plt = pyplot()

    panels = [m for m in (*metrics, *TRAIN_PANELS) if any(m in run.columns for run in runs)]
    if not panels:
        raise UserError(f"none of {list(metrics)} was recorded by these runs")
    ncols = 3
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(13.0, 3.5 * nrows), squeeze=False)
    for ax, metric in zip(axes.flat, panels, strict=False):
        for i, run in enumerate(runs):
            if metric not in run.columns:
                continue
            mean, std = fold_mean_std(run.columns[metric])
            (line,) = ax.plot(run.epochs, mean, label=run.label, linewidth=1.8 if i == 0 else 1.4)
            if i == 0:
                ax.fill_between(
                    run.epochs, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0
                )
        ax.set_title(LABELS.get(metric, metric))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if metric.startswith("train/"):
            ax.set_yscale("log")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    n_folds = runs[0].columns[panels[0]].shape[1] if panels[0] in runs[0].columns else 0
    fig.suptitle(f"CV mean per epoch over the same {n_folds} folds (band: {runs[0].label} ± 1 std)")
    fig.tight_layout()
    return save_figure(fig, path)


def compare_runs(
    run_dirs: Sequence[str | Path],
    labels: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    window: int = 5,
    figure: str | Path | None = None,
) -> tuple[str, dict[str, Any]]:
    """Compare every run with the first (the reference); return the Markdown report and its data
    (``{"reference": path, "runs": [{"path", "label", "deltas": [...]}]}``), and draw ``figure``.

    ``metrics``: ``epochs.csv`` columns, each of which some run must have recorded (a typo fails);
    default :data:`DEFAULT_METRICS`, those the runs recorded."""
    if len(run_dirs) < 2:
        raise UserError("compare needs a reference run and at least one other run")
    runs = load_runs(run_dirs, labels)
    check_paired(runs)
    check_metrics(runs, metrics or ())
    metrics = metrics or DEFAULT_METRICS
    reference, others = runs[0], runs[1:]
    sections, data = [], {"reference": str(reference.path), "runs": []}
    for other in others:
        deltas = [d for m in metrics if (d := paired_delta(reference, other, m, window)) is not None]
        if not deltas:
            raise UserError(f"{other.path} and {reference.path} share no complete epoch of {list(metrics)}")
        sections.append(format_table(reference, other, deltas))
        data["runs"].append(
            {"path": str(other.path), "label": other.label, "deltas": [vars(d) for d in deltas]}
        )
    if figure is not None:
        data["figure"] = str(plot_comparison(runs, figure, metrics))
    return "\n\n".join(sections), json_safe(data)
