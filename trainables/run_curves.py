"""The learning curves of one ``launch.py train`` run, drawn from its ``epochs.csv``.

One PNG, six panels, each the CV mean over folds per epoch with a band of +- one standard deviation:
loss (train and validation), lesion Dice, macro-F1 and accuracy, AUC, normal specificity, and the
selection score. The best common epoch (the one ``summary.json`` reports) is marked in every panel,
so a reader sees at a glance whether the run had converged, overfitted or was still learning.
matplotlib is imported lazily: training never needs it.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FIGURE = "learning_curves.png"
# (panel title, [(csv column, legend label)]); a panel is drawn when any of its columns has a value.
PANELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("loss", (("train/loss", "train"), ("val/loss", "validation"))),
    ("lesion Dice", (("val/dice", "Dice"),)),
    ("classification", (("val/macro_f1", "macro-F1"), ("val/acc", "accuracy"))),
    ("AUC (one-vs-rest, macro)", (("val/auc", "AUC"),)),
    ("normal specificity", (("val/normal_specificity", "no lesion drawn on normal images"),)),
    ("selection score", (("val/score", "score"),)),
)


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_fold_curves(csv_path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(epochs, {column: array [epochs, folds]})`` from an ``epochs.csv`` (NaN where a fold has no row)."""
    with Path(csv_path).open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{csv_path}: no epochs recorded yet")
    epochs = sorted({int(r["epoch"]) for r in rows})
    folds = sorted({int(r["fold"]) for r in rows})
    where = {(int(r["epoch"]), int(r["fold"])): r for r in rows}
    columns: dict[str, np.ndarray] = defaultdict(lambda: np.full((len(epochs), len(folds)), math.nan))
    for i, epoch in enumerate(epochs):
        for j, fold in enumerate(folds):
            row = where.get((epoch, fold))
            if row is None:
                continue
            for key, value in row.items():
                if key not in ("epoch", "fold"):
                    columns[key][i, j] = _number(value)
    return np.asarray(epochs), dict(columns)


def fold_mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-epoch mean and std over folds, ignoring missing folds (an epoch with none stays NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs: NaN is the honest answer
        return np.nanmean(values, axis=1), np.nanstd(values, axis=1, ddof=1)


def plot_run_curves(
    run_dir: str | Path,
    path: str | Path | None = None,
    summary: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> Path:
    """Draw ``run_dir/epochs.csv`` into ``path`` (default ``run_dir/learning_curves.png``); return the path.

    ``summary`` (default: ``run_dir/summary.json`` if present) supplies the best common epoch to mark.
    Raises ``ValueError`` when the run has no recorded epoch.
    """
    import json

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out = Path(path) if path is not None else run_dir / FIGURE
    epochs, columns = read_fold_curves(run_dir / "epochs.csv")
    if summary is None and (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    best = (summary or {}).get("best_epoch")
    n_folds = next(iter(columns.values())).shape[1] if columns else 0
    panels = [(name, [(c, lab) for c, lab in series if c in columns]) for name, series in PANELS]
    panels = [(name, series) for name, series in panels if series]
    ncols = 3
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(13.0, 3.6 * nrows), squeeze=False)
    for ax, (name, series) in zip(axes.flat, panels):
        for column, label in series:
            mean, std = fold_mean_std(columns[column])
            (line,) = ax.plot(epochs, mean, label=label, linewidth=1.6)
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
        if best is not None:
            ax.axvline(int(best), color="#444444", linestyle="--", linewidth=1.0, label=f"best epoch {best}")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if name == "loss":
            ax.set_yscale("log")  # early validation losses of a from-scratch model are 10-50x the final ones
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8, loc="best")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    heading = title or f"{run_dir.name}: CV mean ± std over {n_folds} folds per epoch"
    fig.suptitle(heading)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
