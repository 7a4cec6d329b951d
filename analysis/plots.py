"""The analysis figures, as PNGs meant to be read at a glance (titled, labelled, fixed size).

- ``learning_curves.png``: every trial's CV mean per epoch; the stops by the scheduler or the time
  budget and the failures marked, the epochs where ASHA / HyperBand decides drawn
  (:func:`analysis.results.scheduler_rungs`), the chosen trial highlighted.
- ``score_by_<param>.png``: per choice of each categorical parameter, the best trial with that choice
  (bar = CV mean, error bar = std over folds, dots = its folds) and every other trial's CV mean (the
  thesis's encoder-benchmark and decoder-comparison figure).
- ``parallel_coordinates.png``: parameters vs score, one line per trial coloured by score.
- ``param_importance.png``: fANOVA importance of each parameter.
- ``intermediate_values.png``: Optuna's per-epoch view of the same curves (what its dashboard shows).
- ``fold_spread.png``: the per-fold scores of the top trials.

The three generic figures (parallel coordinates, importance, intermediate values) are Optuna's own
(``optuna.visualization.matplotlib``) on the study :func:`rebuild_study` makes from the leaderboard;
``learning_curves.png`` draws the same curves with what Optuna's cannot show (the scheduler's rungs, how
each trial ended, the chosen trial). Parameters are read through the parsed space of :mod:`search.space`
(:func:`analysis.selection.experiment_space`).

Each function returns the written path, or raises :class:`PlotSkipped` saying why a figure cannot be
drawn (e.g. importance with fewer than 3 scored trials); :func:`make_plots` collects both.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis.results import ExperimentResults, display_value, scheduler_rungs
from analysis.selection import experiment_space

if TYPE_CHECKING:
    import optuna

    from search.space import Param

DPI = 100
SIZE = (10.0, 6.0)  # inches: 1000 x 600 px
WIDE = (12.0, 6.0)  # 1200 x 600 px
MAX_CHOICES = 24
TOP_K = 10
_EARLY_STOPS = ("scheduler_stopped", "budget_stopped")  # ended early at low fidelity, without an error
_STATUS_STYLE = {
    "completed": dict(color="#1f77b4", label="completed"),
    "patience_stopped": dict(color="#2ca02c", label="stopped by patience"),
    "scheduler_stopped": dict(color="#ff7f0e", label="stopped by the scheduler"),
    "budget_stopped": dict(color="#9467bd", label="stopped by the time budget"),
    "error": dict(color="#d62728", label="failed"),
    "unfinished": dict(color="#7f7f7f", label="unfinished"),
}


class PlotSkipped(RuntimeError):
    """A figure that cannot be drawn from these results; the message says why."""


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (folders made) at the analysis figures' DPI and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


def _metric_label(board: pd.DataFrame) -> str:
    metric = board.attrs.get("metric", "score")
    arrow = "lower is better" if board.attrs.get("lower_is_better") else "higher is better"
    return f"CV mean val {metric} ({arrow})"


# ----------------------------------------------------------------------------------- learning curves


_RUNG_LABEL = {
    "asha": "ASHA rungs (a trial below the rung's cutoff stops here)",
    "hyperband": "HyperBand bracket milestones (a bracket pauses here, keeps its best 1/eta)",
}


def learning_curves_figure(results: ExperimentResults, board: pd.DataFrame) -> Any:
    """The figure of :func:`plot_learning_curves` (a matplotlib ``Figure``, not yet saved)."""
    from trainables.schema import SpecError

    plt = pyplot()
    metric = board.attrs.get("metric", "score")
    column = f"val/{metric}"
    if results.epochs.empty or column not in results.epochs:
        raise PlotSkipped(f"no trial reported {column}")
    status = dict(zip(results.trials["trial_id"], results.trials["status"]))
    best = str(board.iloc[0]["trial_id"]) if len(board) else None
    try:
        scheduler, rungs = scheduler_rungs(results.spec)
        rung_note = None
    except SpecError:
        scheduler, rungs = "", []
        rung_note = "scheduler rungs not drawn: spec.yaml is not a valid search spec"
    fig, ax = plt.subplots(figsize=SIZE, layout="constrained")
    for rung in rungs:
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
        if st in (*_EARLY_STOPS, "error"):
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
    if rungs:
        ax.plot([], [], color="0.7", linestyle=":", label=_RUNG_LABEL[scheduler])
    if rung_note:
        ax.plot([], [], linestyle="none", label=rung_note)
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
    return fig


def plot_learning_curves(results: ExperimentResults, board: pd.DataFrame, path: Path) -> Path:
    """Every trial's CV mean of the ranking metric per epoch; how each trial ended is marked, and the
    epochs where the scheduler decided (:func:`analysis.results.scheduler_rungs`) are drawn."""
    return save_figure(learning_curves_figure(results, board), path)


# -------------------------------------------------------------------------------- per categorical


def _space_params(results: ExperimentResults) -> dict[str, Param]:
    """The parsed parameters of the experiment's ``search.space`` by key (empty without a space)."""
    space = experiment_space(results)
    return {} if space is None else {p.key: p for p in space.params}


def categorical_params(results: ExperimentResults) -> list[str]:
    """Searched parameters with discrete values: ``choice``/``grid`` in the space or, for a key the
    space does not name, text or boolean values."""
    space = _space_params(results)
    out = []
    for name in results.param_names:
        values = [p.get(name) for p in results.params.values()]
        texty = any(isinstance(v, str | bool) for v in values if v is not None)
        if space[name].discrete if name in space else texty:
            out.append(name)
    return out


def _shorten(text: str, width: int = 22) -> str:
    return text if len(text) <= width else text[: width - 2] + "…"


def _choice_label(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "(not active)"
    return _shorten(str(display_value(value)))


def plot_score_by_choice(results: ExperimentResults, board: pd.DataFrame, param: str, path: Path) -> Path:
    """Per choice of ``param``: best trial's CV mean ± fold std with its per-fold points, plus every
    other trial's CV mean; choices ordered best first."""
    plt = pyplot()
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
    return save_figure(fig, path)


# ------------------------------------------------------------------------- the study, Optuna's figures


def _study_value(param: Param | None, value: Any) -> Any:
    """``value`` as an Optuna study holds it: the parameter's own encoding (list or mapping choices go
    by label); a key the space does not name goes by its JSON text when it is not a scalar."""
    if param is not None:
        return param.optuna_value(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)


def _distribution(param: Param | None, values: Sequence[Any]) -> Any:
    """The Optuna distribution of one parameter (numeric bounds widened to hold every observed value)."""
    import optuna.distributions as od

    if param is not None and param.discrete:
        return od.CategoricalDistribution([param.optuna_value(v) for v in param.values])
    if param is not None:
        low, high = min([param.low, *values]), max([param.high, *values])
        if param.integer or all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return od.IntDistribution(int(low), int(high), log=param.log)
        return od.FloatDistribution(low, high, log=param.log)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return od.FloatDistribution(min(values), max(values))
    return od.CategoricalDistribution(sorted({_study_value(None, v) for v in values}, key=str))


def _scored(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard rows with a score that did not fail: the trials of :func:`rebuild_study`."""
    return board[board["score"].notna() & (board["status"] != "error")]


def rebuild_study(results: ExperimentResults, board: pd.DataFrame, seed: int = 0) -> optuna.Study:
    """An in-memory Optuna study of the search, for Optuna's importance and figures.

    One COMPLETE trial per scored, non-failed leaderboard row, valued by its leaderboard figure (the CV
    mean at its best common epoch), holding the parameters the trial ran with (the space's active ones,
    :meth:`search.space.Space.resolve`; conditional ones only where active) with the distributions of
    the spec's ``search.space``, and its per-epoch CV means of the ranked metric as intermediate values
    (step = epoch). Raises :class:`PlotSkipped` when no trial qualifies.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scored = _scored(board)
    if scored.empty:
        raise PlotSkipped("no trial has a score without failing")
    space = experiment_space(results)
    params = {} if space is None else {p.key: p for p in space.params}
    chosen = {}
    for tid in scored["trial_id"]:
        config = results.params.get(tid, {})
        active = space.resolve(config) if space is not None else {}
        chosen[tid] = {
            k: active[k] if k in params else config[k]
            for k in results.param_names
            if k in active or (k not in params and config.get(k) is not None)
        }
    observed: dict[str, list[Any]] = {}
    for values in chosen.values():
        for k, v in values.items():
            observed.setdefault(k, []).append(v)
    dists = {k: _distribution(params.get(k), v) for k, v in observed.items()}
    direction = "minimize" if board.attrs.get("lower_is_better") else "maximize"
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.RandomSampler(seed=seed))
    curves = _epoch_curves(results, f"val/{board.attrs.get('metric', 'score')}")
    for tid, score in zip(scored["trial_id"], scored["score"]):
        values = {k: _study_value(params.get(k), v) for k, v in chosen[tid].items()}
        study.add_trial(
            optuna.trial.create_trial(
                params=values,
                distributions={k: dists[k] for k in values},
                value=float(score),
                intermediate_values=curves.get(tid, {}),
            )
        )
    return study


def _epoch_curves(results: ExperimentResults, column: str) -> dict[str, dict[int, float]]:
    """``{trial_id: {epoch: finite value of column}}`` from the trials' epoch tables."""
    if results.epochs.empty or column not in results.epochs:
        return {}
    rows = results.epochs[["trial_id", "epoch", column]].dropna()
    return {
        str(tid): {int(e): float(v) for e, v in zip(frame["epoch"], frame[column])}
        for tid, frame in rows.groupby("trial_id", sort=True)
    }


def _importance_params(study: optuna.Study) -> list[str]:
    """The parameters fANOVA can weigh: held by every trial (conditional ones excluded) and varying."""
    trials = study.trials
    if len(trials) < 3:
        raise PlotSkipped(f"parameter importance needs at least 3 scored trials, got {len(trials)}")
    common = [k for k in trials[0].params if all(k in t.params for t in trials)]
    varying = [k for k in common if len({t.params[k] for t in trials}) > 1]
    if not varying:
        raise PlotSkipped("no parameter varies across the scored trials (conditional ones excluded)")
    return varying


def param_importances(results: ExperimentResults, board: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """fANOVA importances (normalised to sum 1) on :func:`rebuild_study`, most important first, of the
    parameters every scored trial has; :class:`PlotSkipped` with fewer than 3 scored trials."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    study = rebuild_study(results, board, seed)
    params = _importance_params(study)
    return get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed), params=params)


@contextmanager
def _optuna_figure(size: tuple[float, float], rc: dict[str, Any] | None = None) -> Iterator[None]:
    """Around an ``optuna.visualization.matplotlib`` call: our figure size, a constrained layout, ``rc``,
    Optuna's style kept to this figure (it calls ``plt.style.use``, which would restyle every later
    figure), and two warnings silenced: ExperimentalWarning (those functions are marked experimental;
    the tests check what they draw) and matplotlib's note on the axis of a parameter with one value
    (Optuna centres it; nothing for the user to act on)."""
    import matplotlib
    from optuna.exceptions import ExperimentalWarning

    pyplot()
    rc = {"figure.figsize": size, "figure.constrained_layout.use": True, **(rc or {})}
    with matplotlib.rc_context(rc), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ExperimentalWarning)
        warnings.filterwarnings("ignore", "Attempting to set identical low and high ylims", UserWarning)
        yield


def _shorten_tick_labels(fig: Any, width: int) -> None:
    """Value ticks longer than ``width`` (JSON of list or mapping choices) cut to fit between two
    axes; mathtext (a log axis's powers of ten) left whole."""
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_yticklabels()]
        short = [t if t.startswith("$") else _shorten(t, width) for t in labels]
        if short != labels:
            ax.set_yticks(ax.get_yticks(), short)


def _full_axis_names(ax: Any, names: Sequence[str]) -> None:
    """Optuna cuts axis names to 17 characters (``model.latent_aug...`` for both ``.mode`` and
    ``.sigma``): put the full ``names`` back, checked name by name against what Optuna wrote."""
    shown = [t.get_text() for t in ax.get_xticklabels()]
    same = len(shown) == len(names) and all(
        s == n or (s.endswith("...") and n.startswith(s[:-3])) for s, n in zip(shown, names)
    )
    if same:
        ax.set_xticks(ax.get_xticks(), names, rotation=-25, ha="left", rotation_mode="anchor")


def parallel_coordinates_figure(results: ExperimentResults, board: pd.DataFrame) -> Any:
    """Optuna's parallel-coordinate plot of :func:`rebuild_study` (a matplotlib ``Figure``)."""
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    study = rebuild_study(results, board)
    if not any(t.params for t in study.trials):
        raise PlotSkipped("needs scored trials and at least one searched parameter")
    target = f"val {board.attrs.get('metric', 'score')}"
    with _optuna_figure(WIDE, {"ytick.labelsize": 8}):  # a dozen axes share 1200 px
        ax = plot_parallel_coordinate(study, target_name=target)
        _full_axis_names(ax, [target, *sorted({k for t in study.trials for k in t.params})])
        ax.set_title(
            f"Parameters vs score, {len(study.trials)} trials that did not fail (each axis scaled to its "
            "range; None = not active)",
            y=1.03,
        )
        _shorten_tick_labels(ax.figure, width=20)
    return ax.figure


def plot_parallel_coordinates(results: ExperimentResults, board: pd.DataFrame, path: Path) -> Path:
    """One polyline per scored trial across the searched parameters and the score, coloured by score
    (:func:`parallel_coordinates_figure`)."""
    return save_figure(parallel_coordinates_figure(results, board), path)


def param_importance_figure(results: ExperimentResults, board: pd.DataFrame, seed: int = 0) -> Any:
    """Optuna's importance plot of :func:`param_importances` (fANOVA; a matplotlib ``Figure``)."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_param_importances

    study = rebuild_study(results, board, seed)
    params = _importance_params(study)
    evaluator = FanovaImportanceEvaluator(seed=seed)
    stopped = int(_scored(board)["status"].isin(_EARLY_STOPS).sum())
    with _optuna_figure(SIZE):
        ax = plot_param_importances(
            study, evaluator=evaluator, params=params, target_name=_metric_label(board)
        )
        ax.set_xlabel("fANOVA importance (share of score variance, sums to 1)")
        ax.set_title(
            f"Parameter importance for {board.attrs.get('metric', 'score')} "
            f"({len(study.trials)} trials, {stopped} stopped early at low fidelity)",
            loc="left",
        )
    return ax.figure


def plot_param_importance(results: ExperimentResults, board: pd.DataFrame, path: Path) -> Path:
    """Horizontal bars of :func:`param_importances`, most important on top."""
    return save_figure(param_importance_figure(results, board), path)


def intermediate_values_figure(results: ExperimentResults, board: pd.DataFrame) -> Any:
    """Optuna's intermediate-values plot of :func:`rebuild_study`: each scored trial's CV mean per epoch
    (a matplotlib ``Figure``)."""
    from optuna.visualization.matplotlib import plot_intermediate_values

    study = rebuild_study(results, board)
    if not any(t.intermediate_values for t in study.trials):
        raise PlotSkipped("no scored trial reported a per-epoch value")
    with _optuna_figure(SIZE):
        ax = plot_intermediate_values(study)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"val {board.attrs.get('metric', 'score')} (CV mean)")
        ax.set_title(
            f"Intermediate values, {len(study.trials)} trials that did not fail (Optuna's view; "
            "learning_curves.png adds the scheduler's rungs)",
            loc="left",
        )
    return ax.figure


def plot_intermediate_values(results: ExperimentResults, board: pd.DataFrame, path: Path) -> Path:
    """One line per scored trial: its CV mean per epoch (:func:`intermediate_values_figure`)."""
    return save_figure(intermediate_values_figure(results, board), path)


# ----------------------------------------------------------------------------------- fold spread


def plot_fold_spread(results: ExperimentResults, board: pd.DataFrame, path: Path, top: int = TOP_K) -> Path:
    """The top trials' per-fold scores at their best epoch, with CV mean ± std."""
    plt = pyplot()
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
    return save_figure(fig, path)


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
        ("intermediate_values", lambda p: plot_intermediate_values(results, board, p)),
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
