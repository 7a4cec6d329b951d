"""What the search prints: Ray's live trial table with our columns, and a leaderboard at the end."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from search.config import SearchSpec
from search.space import Space

METRIC_COLUMNS = {
    "training_iteration": "epoch",
    "val/score": "score",
    "val/score_best": "best",
    "val/dice": "dice",
    "val/macro_f1": "macro-F1",
}


def short_name(key: str) -> str:
    """``model.latent_aug.mode`` -> ``latent_aug.mode``; ``train.lr`` -> ``lr``."""
    return key.split(".", 1)[1] if key.count(".") >= 1 else key


def parameter_columns(space: Space) -> dict[str, str]:
    """The unconditional searched keys (Optuna leaves inactive conditional keys out of a config, and
    Ray's 'current best trial' line fails on a missing column)."""
    return {p.key: short_name(p.key) for p in space.params if not p.when}


def build_reporter(spec: SearchSpec, space: Space, total: int) -> Any:
    """A CLIReporter with the trial, its architecture/hyperparameters, epoch, score, dice and macro-F1."""
    from ray.tune import CLIReporter

    metrics = dict(METRIC_COLUMNS)
    for name in spec.search.metrics:
        metrics.setdefault(name, name)
    return CLIReporter(
        metric_columns=metrics,
        parameter_columns=parameter_columns(space),
        total_samples=total,
        max_report_frequency=30,
        max_progress_rows=30,
        max_column_length=24,
    )


def leaderboard_rows(results: Sequence[Any], spec: SearchSpec, space: Space) -> list[dict[str, Any]]:
    """One row per trial (best first): status, epochs run, early stop, metric, dice, macro-F1, params."""
    metric, mode = spec.search.metrics[0], spec.search.modes[0]
    rows = []
    for r in results:
        m: Mapping[str, Any] = r.metrics or {}
        config = r.config or {}
        epochs = int(m.get("training_iteration", 0) or 0)
        planned = int(config.get("train.epochs") or spec.train.epochs)
        rows.append(
            {
                "trial": m.get("trial_id", "?"),
                "status": "ERROR" if r.error else ("stopped" if epochs < planned else "done"),
                "epochs": epochs,
                metric: m.get(metric, math.nan),
                "dice": m.get("val/dice", math.nan),
                "macro_f1": m.get("val/macro_f1", math.nan),
                **{short_name(k): v for k, v in space.resolve(config).items()},
            }
        )
    sign = -1.0 if mode == "max" else 1.0

    def key(row: Mapping[str, Any]) -> float:
        value = row[metric]
        return math.inf if value is None or (isinstance(value, float) and math.isnan(value)) else sign * value

    return sorted(rows, key=key)


def format_leaderboard(rows: Sequence[Mapping[str, Any]], limit: int = 20) -> str:
    """A plain aligned text table of :func:`leaderboard_rows`."""
    if not rows:
        return "no trials"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows[:limit]]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)
