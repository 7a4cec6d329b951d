"""The leaderboard: one row per trial, ranked by its CV mean at its best common epoch.

A trial's figure is the CV mean (over folds) of the ranking metric at the single epoch where that mean
was best, and every other metric is read at that same epoch (mean +- std over folds), so all columns of
a row describe one model state per fold. Each fold's own best epoch would flatter the config more (chosen
on the fold it is scored on); those epochs are kept only as ``fold_best_epochs`` for ``refit --epochs
auto``. The figure is still selected: a maximum over epochs, and the top row a maximum over trials, so
it is optimistic (:data:`CV_FIGURE_NOTE`); the unbiased estimate is the hold-out test evaluation.

Order: trials with a finite score first, best first (direction from the metric: ``hd95``,
``normal_fp_rate`` and ``loss`` are lower-is-better); among equal scores the earlier trial id; trials that
ended in an error after those (their partial numbers are shown, never chosen by default); trials with no
reported epoch last.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.results import ExperimentResults
from search.errors import ExperimentError

BASE_METRICS = ("dice", "iou", "hd95", "nsd", "normal_fp_rate", "auc", "macro_f1", "balanced_acc")
# Mirrors trainables.metrics.HIGHER_IS_BETTER (a test keeps them equal) without importing torch and MONAI.
LOWER_IS_BETTER = ("hd95", "normal_fp_rate", "loss")
_FOLD_KEY = re.compile(r"^fold(\d+)/")

#: What the CV figure is, for every table and report that shows it.
CV_FIGURE_NOTE = (
    "The CV figure is a maximum over epochs (each trial's best common epoch) and, for the winner, over "
    "trials, so it is optimistic; it ranks configs but does not estimate their performance. The unbiased "
    "estimate is the single evaluation on the hold-out test set (`launch.py refit`)."
)


def lower_is_better(metric: str) -> bool:
    """Direction of a reported metric name (``val/`` prefix and fold prefixes allowed)."""
    return metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def leaderboard_metrics(class_names: Sequence[str]) -> list[str]:
    """The metrics a leaderboard shows: :data:`BASE_METRICS` plus recall of the malignant class (the
    last class when none is called ``malignant``)."""
    names = list(class_names)
    if not names:
        return list(BASE_METRICS)
    target = "malignant" if "malignant" in names else names[-1]
    return [*BASE_METRICS, f"recall_{target}"]


def class_names_of(results: ExperimentResults) -> list[str]:
    """The experiment's class names (``data.classes`` of its spec, default normal/benign/malignant)."""
    return list((results.spec.get("data") or {}).get("classes") or ["normal", "benign", "malignant"])


def n_folds(results: ExperimentResults) -> int:
    """How many ``fold{k}/`` prefixes the reported results carry."""
    ks = {int(m.group(1)) for c in results.epochs.columns if (m := _FOLD_KEY.match(str(c)))}
    return max(ks) + 1 if ks else 0


def best_row(frame: pd.DataFrame, column: str, lower: bool) -> int | None:
    """Position of the best finite value of ``column`` (the earliest on ties), None if there is none."""
    if column not in frame or frame.empty:
        return None
    values = frame[column].to_numpy(dtype=np.float64)
    if np.isnan(values).all():
        return None
    return int(np.nanargmin(values) if lower else np.nanargmax(values))


def build_leaderboard(results: ExperimentResults, metric: str = "score") -> pd.DataFrame:
    """One row per trial (see the module docstring); ``rank`` 1 is the best, ``score`` its figure.

    ``metric`` is a validation metric name without the ``val/`` prefix (``score``, ``macro_f1``,
    ``dice``...). The frame's ``attrs`` hold ``metric``, ``lower_is_better`` and ``metrics`` (the shown
    metric columns).
    """
    column = f"val/{metric}"
    if not results.epochs.empty and column not in results.epochs.columns:
        available = sorted(c[4:] for c in results.epochs.columns if str(c).startswith("val/"))
        available = [c for c in available if not c.endswith("_std")]
        raise ExperimentError(f"ranking metric {metric!r} was not reported; reported: {', '.join(available)}")
    lower = lower_is_better(metric)
    metrics = leaderboard_metrics(class_names_of(results))
    k = n_folds(results)
    params = results.param_frame().set_index("trial_id")
    rows = []
    for info in results.trials.to_dict("records"):
        tid = info["trial_id"]
        frame = results.epochs[results.epochs["trial_id"] == tid].sort_values("epoch", kind="stable")
        frame = frame.reset_index(drop=True)
        pos = best_row(frame, column, lower)
        best = frame.iloc[pos] if pos is not None else pd.Series(dtype=object)
        last = frame.iloc[-1] if len(frame) else pd.Series(dtype=object)
        row: dict[str, Any] = {
            "trial_id": tid,
            "status": info["status"],
            "score": _get(best, column),
            "score_std": _get(best, f"{column}_std"),
            "best_epoch": int(best["epoch"]) if pos is not None else None,
            "epochs_run": info["epochs_run"],
            "max_epochs": info["max_epochs"],
            "scheduler_stopped": info["scheduler_stopped"],
            "budget_stopped": info["budget_stopped"],
            "time_total_s": info["time_total_s"],
        }
        for m in metrics:
            row[m] = _get(best, f"val/{m}")
            row[f"{m}_std"] = _get(best, f"val/{m}_std")
        row["fold_scores"] = [_get(best, f"fold{j}/{column}") for j in range(k)]
        row["fold_best_epochs"] = [_get(last, f"fold{j}/best_epoch") for j in range(k)]
        if tid in params.index:
            row.update(params.loc[tid].to_dict())
        rows.append(row)
    board = pd.DataFrame(rows)
    if board.empty:
        board = pd.DataFrame(columns=["rank", "trial_id", "status", "score"])
    else:
        score = board["score"].astype(float)
        board["_group"] = np.where(
            score.isna(), 2, np.where(board["status"].isin(["error", "diverged"]), 1, 0)
        )
        board["_key"] = score if lower else -score
        board = board.sort_values(["_group", "_key", "trial_id"], kind="stable").drop(
            columns=["_group", "_key"]
        )
        board.insert(0, "rank", range(1, len(board) + 1))
        board = board.reset_index(drop=True)
    board.attrs.update(
        metric=metric, lower_is_better=lower, metrics=metrics, params=list(results.param_names)
    )
    return board


def _get(row: pd.Series, key: str) -> float:
    value = row.get(key, math.nan) if len(row) else math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# ------------------------------------------------------------------------------------------ output


def format_number(value: Any, metric: str = "", small: bool = True) -> str:
    """3 decimals for [0, 1] metrics, 1 for distances and seconds, 3 significant digits for small values
    such as learning rates (unless ``small`` is False); '-' for missing."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "-"
    if small and x != 0 and abs(x) < 0.01:
        return f"{x:.2e}"
    return f"{x:.1f}" if metric in ("hd95", "time_total_s") or abs(x) >= 10 else f"{x:.3f}"


def _pm(mean: Any, std: Any, metric: str) -> str:
    text = format_number(mean, metric)
    if text == "-" or std is None or (isinstance(std, float) and math.isnan(std)):
        return text
    return f"{text} ± {format_number(std, metric, small=False)}"


COMPACT_METRICS = ("dice", "macro_f1")


def display_frame(board: pd.DataFrame, top: int | None = None, compact: bool = False) -> pd.DataFrame:
    """Strings for people: ``mean ± std`` cells, epochs as ``run/max``, stops and errors marked.

    ``compact`` (for the terminal) shows only the ranking metric, Dice and macro-F1.
    """
    metric = board.attrs.get("metric", "score")
    metrics = board.attrs.get("metrics", [])
    if compact:
        metrics = [m for m in metrics if m in COMPACT_METRICS]
    params = board.attrs.get("params", [])
    shown = board if top is None else board.head(top)
    out = pd.DataFrame(index=shown.index)
    out["rank"] = shown["rank"]
    out["trial"] = shown["trial_id"]
    for p in params:
        if p in shown:
            out[p] = [format_number(v) if isinstance(v, float) else str(v) for v in shown[p]]
    out[f"{metric} (CV)"] = [_pm(m, s, metric) for m, s in zip(shown["score"], shown["score_std"])]
    for m in metrics:
        if m != metric:
            out[m] = [_pm(a, b, m) for a, b in zip(shown[m], shown[f"{m}_std"])]
    out["best epoch"] = [("-" if e is None or e != e else str(int(e))) for e in shown["best_epoch"]]
    out["epochs"] = [
        f"{r}/{mx}" if mx is not None and mx == mx else str(r)
        for r, mx in zip(shown["epochs_run"], shown["max_epochs"])
    ]
    out["status"] = [s.replace("_", " ") for s in shown["status"]]
    out["time (s)"] = [format_number(t, "time_total_s") for t in shown["time_total_s"]]
    return out.reset_index(drop=True)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a frame of strings (``|`` escaped)."""
    cols = [str(c) for c in frame.columns]
    cells = [[str(v).replace("|", "\\|") for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines) + "\n"


def to_text(frame: pd.DataFrame) -> str:
    """A plain aligned table for the terminal."""
    cols = [str(c) for c in frame.columns]
    rows = [[str(v) for v in r] for r in frame.itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [fmt.format(*cols), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)]
    )


def write_leaderboard(board: pd.DataFrame, out_dir: str | Path) -> tuple[Path, Path]:
    """``leaderboard.csv`` (all columns, numbers) and ``leaderboard.md`` (people's view) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "leaderboard.csv", out_dir / "leaderboard.md"
    board.to_csv(csv_path, index=False)
    metric = board.attrs.get("metric", "score")
    head = (
        f"Ranked by the CV mean of `{metric}` at the epoch where it was best "
        f"({'lower' if board.attrs.get('lower_is_better') else 'higher'} is better); "
        f"every metric is mean ± std over folds at that epoch. {CV_FIGURE_NOTE}\n\n"
    )
    md_path.write_text(head + to_markdown(display_frame(board)), encoding="utf-8")
    return csv_path, md_path
