"""The analysis figures, as PNGs meant to be read at a glance (titled, labelled, fixed size).

- ``learning_curves.png``: every trial's CV mean per epoch; the scheduler's stops and failures marked,
  the ASHA rungs drawn, the chosen trial highlighted.
- ``score_by_<param>.png``: per choice of each categorical parameter, the best trial with that choice
  (bar = CV mean, error bar = std over folds, dots = its folds) and every other trial's CV mean (the
  thesis's encoder-benchmark and decoder-comparison figure).
- ``parallel_coordinates.png``: parameters vs score, one line per trial coloured by score.
- ``param_importance.png``: Optuna's fANOVA importance on a study rebuilt from the results.
- ``fold_spread.png``: the per-fold scores of the top trials.

Each function returns the written path, or raises :class:`PlotSkipped` saying why a figure cannot be
drawn (e.g. importance with fewer than 3 scored trials); :func:`make_plots` collects both.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.results import ExperimentResults, display_value

DPI = 100
SIZE = (10.0, 6.0)  # inches: 1000 x 600 px
WIDE = (12.0, 6.0)  # 1200 x 600 px
MAX_CHOICES = 24
TOP_K = 10
_STATUS_STYLE = {
    "completed": dict(color="#1f77b4", label="completed"),
    "patience_stopped": dict(color="#2ca02c", label="stopped by patience"),
    "scheduler_stopped": dict(color="#ff7f0e", label="stopped by the scheduler"),
    "error": dict(color="#d62728", label="failed"),
    "unfinished": dict(color="#7f7f7f", label="unfinished"),
}


class PlotSkipped(RuntimeError):
    """A figure that cannot be drawn from these results; the message says why."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def _metric_label(board: pd.DataFrame) -> str:
    metric = board.attrs.get("metric", "score")
    arrow = "lower is better" if board.attrs.get("lower_is_better") else "higher is better"
    return f"CV mean val {metric} ({arrow})"


# ----------------------------------------------------------------------------------- learning curves


def asha_rungs(spec: Mapping[str, Any]) -> list[int]:
    """Epochs at which ASHA / HyperBand judges trials (grace * eta^k below ``train.epochs``)."""
    sched = ((spec.get("search") or {}).get("scheduler")) or {}
    if sched.get("type", "asha") not in ("asha", "hyperband"):
        return []
    epochs = int((spec.get("train") or {}).get("epochs") or 0)
    grace = float(sched.get("grace_period", 1))
    eta = float(sched.get("reduction_factor", 3))
    rungs, t = [], grace
    while t < epochs and eta > 1:
        rungs.append(round(t))
        t *= eta
    return sorted(set(rungs))


def plot_learning_curves(results: ExperimentResults, board: pd.DataFrame, path: Path) -> Path:
    """Every trial's CV mean of the ranking metric per epoch; how each trial ended is marked."""
    plt = _pyplot()
    metric = board.attrs.get("metric", "score")
    column = f"val/{metric}"
    if results.epochs.empty or column not in results.epochs:
        raise PlotSkipped(f"no trial reported {column}")
    status = dict(zip(results.trials["trial_id"], results.trials["status"]))
    best = str(board.iloc[0]["trial_id"]) if len(board) else None
    fig, ax = plt.subplots(figsize=SIZE, layout="constrained")
    for rung in asha_rungs(results.spec):
        ax.axvline(rung, color="0.85", linestyle=":", zorder=0)
    seen: set[str] = set()
    for tid, frame in results.epochs.groupby("trial_id", sort=True):
        frame = frame.sort_values("epoch")
        st = status.get(tid, "completed")
        style = _STATUS_STYLE.get(st, _STATUS_STYLE["completed"])
        label = style["label"] if st not in seen else None
        seen.add(st)
        is_best = tid == best
        ax.plot(
            frame["epoch"],
            frame[column],
            color=style["color"],
            lw=2.8 if is_best else 1.2,
            alpha=1.0 if is_best else 0.7,
            marker="o",
            ms=3,
            label=label,
            zorder=3 if is_best else 2,
        )
        end = frame.iloc[-1]
        if st in ("scheduler_stopped", "error"):
            ax.plot(end["epoch"], end[column], marker="X", ms=10, color=style["color"], mec="black", zorder=4)
        if is_best:
            ax.annotate(
                f"best: {tid}",
                (end["epoch"], end[column]),
                xytext=(6, 6),
                textcoords="offset points",
                fontsize=9,
                weight="bold",
            )
    if asha_rungs(results.spec):
        ax.plot([], [], color="0.7", linestyle=":", label="scheduler rungs (stop decisions)")
    ax.plot(
        [],
        [],
        "X",
        color="0.5",
        mec="black",
        ms=9,
        linestyle="none",
        label="last epoch of a stopped/failed trial",
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel(_metric_label(board))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"Learning curves of {results.trials.shape[0]} trials ({results.name})")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


# -------------------------------------------------------------------------------- per categorical


def categorical_params(results: ExperimentResults) -> list[str]:
    """Searched parameters with discrete values: ``choice``/``grid`` in the space, or text values."""
    out = []
    for name in results.param_names:
        dist = results.space.get(name) or {}
        values = [p.get(name) for p in results.params.values()]
        discrete = "choice" in dist or "grid" in dist
        texty = any(isinstance(v, str | bool) for v in values if v is not None)
        if discrete or (not dist and texty):
            out.append(name)
    return out


def _choice_label(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "(not active)"
    text = str(display_value(value))
    return text if len(text) <= 22 else text[:20] + "…"


def plot_score_by_choice(results: ExperimentResults, board: pd.DataFrame, param: str, path: Path) -> Path:
    """Per choice of ``param``: best trial's CV mean ± fold std with its per-fold points, plus every
    other trial's CV mean; choices ordered best first."""
    plt = _pyplot()
    scored = board[board["score"].notna()]
    if scored.empty:
        raise PlotSkipped("no trial has a score")
    lower = bool(board.attrs.get("lower_is_better"))
    labels = [_choice_label(results.params.get(t, {}).get(param)) for t in scored["trial_id"]]
    scored = scored.assign(_choice=labels)
    groups = list(scored.groupby("_choice", sort=False))
    if len(groups) > MAX_CHOICES:
        raise PlotSkipped(f"{param} has {len(groups)} values (more than {MAX_CHOICES})")
    groups.sort(key=lambda g: g[1]["score"].min() if lower else -g[1]["score"].max())
    fig, ax = plt.subplots(figsize=WIDE, layout="constrained")
    rng = np.random.default_rng(0)
    for x, (_choice, frame) in enumerate(groups):
        best = frame.iloc[0]  # the board is sorted best first
        std = best["score_std"] if np.isfinite(best["score_std"]) else 0.0
        ax.bar(x, best["score"], width=0.6, color="#9ecae1", edgecolor="#3182bd", zorder=1)
        ax.errorbar(x, best["score"], yerr=std, color="black", capsize=6, lw=1.5, zorder=3)
        folds = [f for f in best["fold_scores"] if np.isfinite(f)]
        ax.scatter(x + rng.uniform(-0.12, 0.12, len(folds)), folds, color="black", s=22, zorder=4)
        others = frame.iloc[1:]
        failed = (others["status"] == "error").to_numpy()
        values = others["score"].to_numpy(dtype=float)
        jitter = x + rng.uniform(-0.25, 0.25, len(values))
        ax.scatter(jitter[~failed], values[~failed], marker="D", s=18, color="#ff7f0e", alpha=0.8, zorder=2)
        ax.scatter(jitter[failed], values[failed], marker="x", s=30, color="#d62728", zorder=2)
        ax.annotate(
            f"n={len(frame)}",
            (x, 0),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            color="0.3",
        )
    ax.scatter([], [], color="black", s=22, label="folds of the best trial of the choice")
    ax.scatter([], [], marker="D", s=18, color="#ff7f0e", label="CV mean of another trial")
    ax.scatter([], [], marker="x", s=30, color="#d62728", label="partial CV mean of a failed trial")
    ax.errorbar([], [], yerr=[], color="black", capsize=6, label="best trial: CV mean ± std over folds")
    ax.set_xticks(
        range(len(groups)),
        [g[0] for g in groups],
        rotation=30 if len(groups) > 6 else 0,
        ha="right" if len(groups) > 6 else "center",
    )
    ax.set_xlabel(param)
    ax.set_ylabel(_metric_label(board))
    ax.set_title(f"{board.attrs.get('metric', 'score')} by {param} (best trial per choice; n = trials)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, fontsize=9, frameon=False)
    return _save(fig, path)


# ---------------------------------------------------------------------------- parallel coordinates


def _axis_values(results: ExperimentResults, param: str, tids: Sequence[str]) -> tuple[np.ndarray, list]:
    """Trial values of ``param`` mapped to [0, 1] and the (position, label) ticks of its axis."""
    raw = [results.params.get(t, {}).get(param) for t in tids]
    dist = results.space.get(param) or {}
    numeric = [v for v in raw if isinstance(v, int | float) and not isinstance(v, bool)]
    if (
        numeric
        and len(numeric) == sum(v is not None for v in raw)
        and not ("choice" in dist or "grid" in dist)
    ):
        arr = np.array([np.nan if v is None else float(v) for v in raw])
        log = "loguniform" in dist or "qloguniform" in dist
        t = np.log10(arr) if log else arr
        lo, hi = np.nanmin(t), np.nanmax(t)
        span = hi - lo if hi > lo else 1.0
        pos = (t - lo) / span
        ticks = [(0.0, f"{(10**lo if log else lo):.3g}"), (1.0, f"{(10**hi if log else hi):.3g}")]
        if np.isnan(pos).any():
            ticks.append((-0.12, "not active"))
        return np.where(np.isnan(pos), -0.12, pos), ticks
    labels = sorted({_choice_label(v) for v in raw})
    where = {lab: i / max(1, len(labels) - 1) for i, lab in enumerate(labels)}
    pos = np.array([where[_choice_label(v)] for v in raw])
    return pos, [(p, lab) for lab, p in where.items()]


def plot_parallel_coordinates(results: ExperimentResults, board: pd.DataFrame, path: Path) -> Path:
    """One polyline per scored trial across the searched parameters and the score, coloured by score."""
    plt = _pyplot()
    import matplotlib
    from matplotlib import cm, colors

    scored = board[board["score"].notna() & (board["status"] != "error")]
    params = [
        p for p in results.param_names if any(p in results.params.get(t, {}) for t in scored["trial_id"])
    ]
    if scored.empty or not params:
        raise PlotSkipped("needs scored trials and at least one searched parameter")
    tids = list(scored["trial_id"])
    columns = [_axis_values(results, p, tids) for p in params]
    score = scored["score"].to_numpy(dtype=float)
    lo, hi = float(score.min()), float(score.max())
    columns.append(((score - lo) / (hi - lo if hi > lo else 1.0), [(0.0, f"{lo:.3g}"), (1.0, f"{hi:.3g}")]))
    names = [*params, f"val {board.attrs.get('metric', 'score')}"]
    norm = colors.Normalize(lo, hi)
    cmap = matplotlib.colormaps["viridis_r" if board.attrs.get("lower_is_better") else "viridis"]
    fig, ax = plt.subplots(figsize=WIDE, layout="constrained")
    xs = np.arange(len(columns))
    ys = np.stack([c[0] for c in columns], axis=1)
    order = np.argsort(score if not board.attrs.get("lower_is_better") else -score)  # best drawn last
    for i in order:
        ax.plot(xs, ys[i], color=cmap(norm(score[i])), lw=2.0, alpha=0.85)
    for x, (_, ticks) in zip(xs, columns):
        ax.axvline(x, color="black", lw=1)
        for pos, label in ticks:
            ax.annotate(
                label,
                (x, pos),
                xytext=(4, 0),
                textcoords="offset points",
                fontsize=8,
                va="center",
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7),
            )
    ax.set_xticks(xs, names, rotation=15, ha="right")
    ax.set_yticks([])
    ax.set_ylim(-0.2, 1.08)
    ax.set_xlim(-0.2, len(columns) - 0.5)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=_metric_label(board))
    ax.set_title(f"Parameters vs score, {len(tids)} trials that did not fail (each axis scaled to its range)")
    return _save(fig, path)


# ------------------------------------------------------------------------------ parameter importance


def _distribution(dist: Mapping[str, Any], values: Sequence[Any]) -> Any:
    """The Optuna distribution of one space entry (bounds widened to hold every observed value)."""
    import optuna.distributions as od

    if "choice" in dist or "grid" in dist:
        choices = dist.get("choice", dist.get("grid"))
        return od.CategoricalDistribution([_optuna_value(v) for v in choices])
    for kind in ("uniform", "loguniform", "quniform", "qloguniform", "randint"):
        if kind in dist:
            low, high = (float(b) for b in dist[kind][:2])
            low, high = min([low, *values]), max([high, *values])
            log = "log" in kind
            if kind == "randint" or all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                return od.IntDistribution(int(low), int(high), log=log)
            return od.FloatDistribution(low, high, log=log)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return od.FloatDistribution(min(values), max(values)) if min(values) < max(values) else None
    return od.CategoricalDistribution(sorted({_optuna_value(v) for v in values}, key=str))


def _optuna_value(value: Any) -> Any:
    """Optuna categoricals hold only None/bool/int/float/str: other values go by their JSON text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


def param_importances(results: ExperimentResults, board: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """fANOVA importances (normalised to sum 1) of the parameters every scored trial has.

    The study is rebuilt from the leaderboard: one COMPLETE FrozenTrial per scored, non-failed trial,
    valued by its leaderboard figure (the CV mean at its best common epoch), with distributions from the
    spec's ``search.space``.
    """
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scored = board[board["score"].notna() & (board["status"] != "error")]
    if len(scored) < 3:
        raise PlotSkipped(f"parameter importance needs at least 3 scored trials, got {len(scored)}")
    tids = list(scored["trial_id"])
    common = [p for p in results.param_names if all(results.params[t].get(p) is not None for t in tids)]
    varying = [p for p in common if len({_optuna_value(results.params[t][p]) for t in tids}) > 1]
    if not varying:
        raise PlotSkipped("no parameter varies across the scored trials (conditional ones excluded)")
    dists = {}
    for p in varying:
        d = _distribution(results.space.get(p) or {}, [results.params[t][p] for t in tids])
        if d is not None:
            dists[p] = d
    direction = "minimize" if board.attrs.get("lower_is_better") else "maximize"
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.RandomSampler(seed=seed))
    for tid, score in zip(tids, scored["score"]):
        params = {p: _optuna_value(results.params[tid][p]) for p in dists}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(score)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=seed), params=list(dists)
        )


def plot_param_importance(results: ExperimentResults, board: pd.DataFrame, path: Path) -> Path:
    """Horizontal bars of :func:`param_importances`, most important on top."""
    plt = _pyplot()
    imp = param_importances(results, board)
    names = list(imp)[::-1]
    values = [imp[n] for n in names]
    n = int((board["score"].notna() & (board["status"] != "error")).sum())
    stopped = int((board["status"] == "scheduler_stopped").sum())
    fig, ax = plt.subplots(figsize=SIZE, layout="constrained")
    bars = ax.barh(names, values, color="#6baed6", edgecolor="#2171b5")
    for bar, v in zip(bars, values):
        ax.annotate(
            f"{v:.2f}",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    ax.set_xlim(0, max(values) * 1.15 + 1e-9)
    ax.set_xlabel("fANOVA importance (share of score variance, sums to 1)")
    ax.set_title(
        f"Parameter importance for {board.attrs.get('metric', 'score')} "
        f"({n} trials, {stopped} stopped early at low fidelity)"
    )
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


# ----------------------------------------------------------------------------------- fold spread


def plot_fold_spread(results: ExperimentResults, board: pd.DataFrame, path: Path, top: int = TOP_K) -> Path:
    """The top trials' per-fold scores at their best epoch, with CV mean ± std."""
    plt = _pyplot()
    scored = board[board["score"].notna()].head(top)
    if scored.empty:
        raise PlotSkipped("no trial has a score")
    varying = [
        p
        for p in results.param_names
        if len({str(results.params.get(t, {}).get(p)) for t in scored["trial_id"]}) > 1
    ][:2]
    fig, ax = plt.subplots(figsize=WIDE, layout="constrained")
    labels = []
    for x, row in enumerate(scored.itertuples(index=False)):
        folds = np.array([f for f in row.fold_scores if np.isfinite(f)])
        ax.scatter(np.full(len(folds), x), folds, color="#3182bd", s=30, zorder=3)
        for k, f in enumerate(row.fold_scores):
            if np.isfinite(f):
                ax.annotate(
                    str(k), (x, f), xytext=(5, 0), textcoords="offset points", fontsize=7, va="center"
                )
        std = row.score_std if np.isfinite(row.score_std) else 0.0
        ax.errorbar(x, row.score, yerr=std, fmt="_", ms=20, color="black", capsize=5, zorder=2)
        extra = "\n".join(_choice_label(results.params.get(row.trial_id, {}).get(p))[:14] for p in varying)
        labels.append(f"#{row.rank} {row.trial_id}" + (f"\n{extra}" if extra else ""))
    ax.scatter([], [], color="#3182bd", s=30, label="fold (number = fold index)")
    ax.errorbar([], [], yerr=[], fmt="_", color="black", capsize=5, label="CV mean ± std over folds")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel(f"val {board.attrs.get('metric', 'score')} at the trial's best epoch")
    note = f" (rows below ids: {', '.join(varying)})" if varying else ""
    ax.set_title(f"Fold spread of the top {len(labels)} trials{note}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ all


def plot_file_name(param: str) -> str:
    """``score_by_model.encoder.png`` for parameter ``model.encoder``."""
    return "score_by_" + "".join(c if c.isalnum() or c in "._-" else "_" for c in param) + ".png"


def make_plots(results: ExperimentResults, board: pd.DataFrame, out_dir: str | Path) -> dict[str, Path | str]:
    """Every figure into ``out_dir``; values are paths, or the reason a figure was skipped."""
    out_dir = Path(out_dir)
    jobs: list[tuple[str, Any]] = [
        ("learning_curves", lambda p: plot_learning_curves(results, board, p)),
        *(
            (f"score_by_{param}", lambda p, q=param: plot_score_by_choice(results, board, q, p))
            for param in categorical_params(results)
        ),
        ("parallel_coordinates", lambda p: plot_parallel_coordinates(results, board, p)),
        ("param_importance", lambda p: plot_param_importance(results, board, p)),
        ("fold_spread", lambda p: plot_fold_spread(results, board, p)),
    ]
    out: dict[str, Path | str] = {}
    for name, draw in jobs:
        file = plot_file_name(name[len("score_by_") :]) if name.startswith("score_by_") else f"{name}.png"
        try:
            out[name] = draw(out_dir / file)
        except PlotSkipped as exc:
            out[name] = str(exc)
    return out
