"""Benchmark 3, early stopping pays: ASHA vs FIFO (no stopping) on the quickstart space, seed by seed.

Both searches of a pair use the same spec, seed, searcher (Optuna TPE, seeded) and number of samples;
only ``search.scheduler.type`` differs. Per seed and scheduler: total trial-epochs (the sum of every
trial's epochs), wall time and the best CV score found (``val/score_best``). The two searches of a seed
run back to back, the seeds one after the other, on one local Ray.

Target (issue 8): ASHA spends >= 2.5x fewer trial-epochs with its best score within 0.02 of FIFO's.
With ASHA's rungs at ``grace * eta^k`` below ``train.epochs``, the default here (8 epochs, grace 1,
eta 3: rungs at 1 and 3) keeps a third of the trials past epoch 1 and a ninth past epoch 3.

    python -m benchmarks.early_stopping [--seeds 0 1 2] [--samples 24] [--epochs 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common

NAME = "early_stopping"
COMPARED = (
    "ASHA vs FIFO on the quickstart space (same seed, searcher and num_samples): trial-epochs, wall time, "
    "best CV score"
)


def overrides(args: argparse.Namespace, scheduler: str, seed: int) -> list[str]:
    return [
        f"search.scheduler.type={scheduler}",
        f"search.scheduler.grace_period={args.grace}",
        f"search.scheduler.reduction_factor={args.eta}",
        f"search.num_samples={args.samples}",
        f"search.seed={seed}",
        f"train.epochs={args.epochs}",
        f"train.seed={seed}",
        f"resources.cpu={args.cpus}",
        "checkpoint.num_to_keep=1",
        *args.extra,
    ]


def fidelity(collector: Any, grace: int) -> dict[str, Any]:
    """How well a FIFO trial's score at the grace epoch predicts its final best: Spearman rank
    correlation over trials, and the rank (1 = best) at the grace epoch of the trial that ended best."""
    from scipy.stats import spearmanr

    early, final = [], []
    for rows in collector.rows.values():
        if len(rows) >= grace:
            early.append(float(rows[grace - 1]["val/score"]))
            final.append(float(rows[-1]["val/score_best"]))
    if len(early) < 3:
        return {"spearman_grace_vs_final": float("nan"), "winner_rank_at_grace": None}
    winner = max(range(len(final)), key=final.__getitem__)
    rank = 1 + sum(e > early[winner] for e in early)
    return {"spearman_grace_vs_final": float(spearmanr(early, final).statistic), "winner_rank_at_grace": rank}


def run_pair(args: argparse.Namespace, seed: int, storage: Path) -> dict[str, dict[str, Any]]:
    """ASHA then FIFO for one seed; their search figures."""
    out = {}
    for scheduler in ("asha", "fifo"):
        spec = common.search_spec(overrides(args, scheduler, seed))
        _results, collector, wall = common.run_quiet_search(spec, storage, f"{scheduler}_seed{seed}")
        out[scheduler] = {**common.search_figures(collector, wall), "load_average": common.load_average()}
        if scheduler == "fifo":
            out[scheduler].update(fidelity(collector, args.grace))
    return out


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=24, help="trials per search")
    p.add_argument("--epochs", type=int, default=8, help="train.epochs = ASHA's max_t")
    p.add_argument("--grace", type=int, default=1)
    p.add_argument("--eta", type=float, default=3.0, help="ASHA reduction factor")
    p.add_argument("--cpus", type=float, default=1.0, help="CPUs per trial")
    p.add_argument("--extra", nargs="*", default=[], help="more --set overrides for both searches")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    common.bench_env()
    machine = common.banner(NAME, COMPARED)
    spec = common.search_spec(overrides(args, "asha", args.seeds[0]))
    common.load_data(spec)  # build the synthetic set before any timing
    print(
        f"space: benchmarks/quickstart_space.yaml ({len(spec.search.space)} parameters), "
        f"{args.samples} trials, {args.epochs} epochs, ASHA grace {args.grace} eta {args.eta:g}, "
        f"{args.cpus:g} CPU per trial, seeds {args.seeds}"
    )
    per_seed: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-es-") as tmp:
        common.start_ray()
        try:
            for seed in args.seeds:
                per_seed[seed] = pair = run_pair(args, seed, Path(tmp))
                a, f = pair["asha"], pair["fifo"]
                pair["epoch_ratio"] = common.ratio(f["trial_epochs"], a["trial_epochs"])
                pair["wall_ratio"] = common.ratio(f["wall_s"], a["wall_s"])
                pair["score_gap"] = f["best_score"] - a["best_score"]
        finally:
            common.stop_ray()

    print(
        f"\n{'seed':>4}  {'scheduler':9}  {'trial-epochs':>12}  {'wall s':>7}  "
        f"{'best score':>10}  {'load':>5}"
    )
    for seed, pair in per_seed.items():
        for name in ("asha", "fifo"):
            r = pair[name]
            print(
                f"{seed:>4}  {name:9}  {r['trial_epochs']:>12}  {r['wall_s']:>7.1f}  {r['best_score']:>10.4f}"
                f"  {r['load_average']:>5}"
            )
        print(
            f"{'':>4}  {'FIFO/ASHA':9}  {pair['epoch_ratio']:>11.2f}x  {pair['wall_ratio']:>6.2f}x  "
            f"{'gap ' + format(pair['score_gap'], '+.4f'):>10}"
        )
        fifo = pair["fifo"]
        print(
            f"{'':>4}  FIFO trials: rank correlation of the epoch-{args.grace} score with the final best "
            f"{fifo['spearman_grace_vs_final']:+.2f}; the final winner ranked "
            f"{fifo['winner_rank_at_grace']} of {fifo['trials']} at epoch {args.grace}"
        )
    epoch_ratios = [p["epoch_ratio"] for p in per_seed.values()]
    gaps = [p["score_gap"] for p in per_seed.values()]
    wall_ratios = [p["wall_ratio"] for p in per_seed.values()]
    met = all(r >= 2.5 for r in epoch_ratios) and all(g <= 0.02 for g in gaps)
    ratio_text = (
        f"ASHA uses {min(epoch_ratios):.2f}-{max(epoch_ratios):.2f}x fewer trial-epochs than FIFO "
        f"({min(wall_ratios):.2f}-{max(wall_ratios):.2f}x less wall time); FIFO's best score is "
        f"{min(gaps):+.3f} to {max(gaps):+.3f} above ASHA's over seeds {args.seeds} "
        f"(target >= 2.5x within 0.02: {'met' if met else 'not met'})"
    )
    figures = {"config": vars(args), "per_seed": per_seed, "target_met": met}
    return common.finish(NAME, COMPARED, figures, ratio_text, machine, args.out)


if __name__ == "__main__":
    sys.exit(common.main_guard(main))
