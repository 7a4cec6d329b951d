"""Benchmark 4, Optuna (TPE) vs random search at an equal budget on the same space.

Both searches use the quickstart space, scheduler (ASHA), number of samples, seed and
``points_to_evaluate``; only ``search.algorithm`` differs. Every reported epoch costs one trial-epoch;
ordering the reports by arrival gives, per search, the best CV score (``val/score_best``) reached after
each trial-epoch spent. Printed: a table of best score at fractions of the smaller budget; written: the
curves as ``benchmarks/results/optuna_vs_random.png`` next to the JSON.

    python -m benchmarks.optuna_vs_random [--seeds 0] [--samples 12]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import common

NAME = "optuna_vs_random"
COMPARED = "Optuna TPE vs random search, same space/ASHA/samples/seed: best CV score vs trial-epochs spent"
ALGORITHMS = ("optuna", "random")
FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def overrides(args: argparse.Namespace, algorithm: str, seed: int) -> list[str]:
    return [
        f"search.algorithm={algorithm}",
        f"search.num_samples={args.samples}",
        f"search.seed={seed}",
        f"train.epochs={args.epochs}",
        f"train.seed={seed}",
        f"search.max_concurrent={args.concurrent}",
        "checkpoint.num_to_keep=1",
    ]


def curve(collector: Any, metric: str = "val/score_best") -> list[tuple[int, float]]:
    """``(trial-epochs spent, best score so far)`` after each report, in arrival order."""
    rows = sorted((r for rows in collector.rows.values() for r in rows), key=lambda r: r["received_at"])
    best, out = -math.inf, []
    for i, row in enumerate(rows, start=1):
        value = float(row.get(metric, math.nan))
        if value == value:
            best = max(best, value)
        out.append((i, best))
    return out


def best_at(points: Sequence[tuple[int, float]], budget: int) -> float:
    """Best score reached within ``budget`` trial-epochs (NaN before the first report)."""
    vals = [b for e, b in points if e <= budget]
    return vals[-1] if vals else math.nan


def plot(curves: Mapping[str, Mapping[str, list[tuple[int, float]]]], path: Path) -> Path:
    """One line per (algorithm, seed): best score vs trial-epochs."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    colors = {"optuna": "#1f77b4", "random": "#ff7f0e"}
    for seed, per_alg in curves.items():
        for alg, pts in per_alg.items():
            xs, ys = zip(*pts) if pts else ((), ())
            ax.step(xs, ys, where="post", color=colors[alg], alpha=0.85, label=f"{alg} (seed {seed})")
    ax.set_xlabel("trial-epochs spent")
    ax.set_ylabel("best CV score (val/score_best)")
    ax.set_title("Optuna TPE vs random search, same space and ASHA")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--samples", type=int, default=12, help="trials per search")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--concurrent", type=int, default=2, help="search.max_concurrent")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    common.bench_env()
    machine = common.banner(NAME, COMPARED)
    common.load_data(common.search_spec(overrides(args, "optuna", args.seeds[0])))
    print(
        f"space: benchmarks/quickstart_space.yaml with ASHA, {args.samples} trials of up to "
        f"{args.epochs} epochs, seeds {args.seeds}"
    )
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    searches: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ovr-") as tmp:
        common.start_ray()
        try:
            for seed in args.seeds:
                curves[str(seed)], searches[str(seed)] = {}, {}
                for alg in ALGORITHMS:
                    spec = common.search_spec(overrides(args, alg, seed))
                    _res, collector, wall = common.run_quiet_search(spec, Path(tmp), f"{alg}_seed{seed}")
                    curves[str(seed)][alg] = curve(collector)
                    searches[str(seed)][alg] = {
                        **common.search_figures(collector, wall),
                        "load_average": common.load_average(),
                    }
        finally:
            common.stop_ray()

    table = []
    print(f"\n{'seed':>4}  {'trial-epochs':>12}  {'optuna':>8}  {'random':>8}  {'optuna-random':>13}")
    for seed, per_alg in curves.items():
        budget = min(len(per_alg[a]) for a in ALGORITHMS)
        for frac in FRACTIONS:
            spent = max(1, round(frac * budget))
            o, r = best_at(per_alg["optuna"], spent), best_at(per_alg["random"], spent)
            table.append({"seed": int(seed), "trial_epochs": spent, "optuna": o, "random": r})
            print(f"{seed:>4}  {spent:>12}  {o:>8.4f}  {r:>8.4f}  {o - r:>+13.4f}")
    finals = [
        (row["optuna"], row["random"])
        for row in table
        if row["trial_epochs"] == max(t["trial_epochs"] for t in table if t["seed"] == row["seed"])
    ]
    png = plot(curves, Path(args.out or common.RESULTS_DIR) / f"{NAME}.png")
    print(f"curve: {png}")
    diffs = [o - r for o, r in finals]
    ratio_text = (
        f"at equal trial-epochs Optuna's best score minus random's: "
        f"{', '.join(f'{d:+.4f}' for d in diffs)} (seeds {args.seeds}); "
        "optuna/random best-score ratio "
        f"{common.ratio(sum(o for o, _ in finals), sum(r for _, r in finals)):.3f}"
    )
    figures = {"config": vars(args), "searches": searches, "table": table, "curves": curves, "png": png.name}
    return common.finish(NAME, COMPARED, figures, ratio_text, machine, args.out)


if __name__ == "__main__":
    sys.exit(common.main_guard(main))
