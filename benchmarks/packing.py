"""Benchmark 5, packing: trials per hour with 1, 2 and 4 concurrent trials on the same resources.

The same work each time: ``--trials`` trials of one fixed config (a one-value space, FIFO) of
``--epochs`` epochs each. Only the per-trial request changes: on the CPU, the machine's cores divided
by 1, 2 and 4 (torch threads follow: ``max(1, int(cpu))``); with CUDA, also GPU fractions 1, 0.5 and
0.25 of one GPU (a CPU share each). Printed per level: wall time, trials per hour, the concurrency
reached (sum of trial durations / wall time) and the median training samples/s of one trial.

    python -m benchmarks.packing [--trials 8] [--epochs 2] [--levels 1 2 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common

NAME = "packing"
COMPARED = "trials/hour of the same work (fixed config) with 1, 2, 4 concurrent trials on the same resources"
LR = 2.0e-3


def overrides(args: argparse.Namespace, cpu: float, gpu: float) -> list[str]:
    n = args.n_per_class
    return [
        f"data.synthetic.n_per_class=[{n[0]}, {n[1]}, {n[2]}]",
        f"model.encoder={args.encoder}",
        "model.decoder=unet",
        f"train.epochs={args.epochs}",
        "search.algorithm=optuna",
        "search.sampler=random",
        f"search.num_samples={args.trials}",
        "search.scheduler.type=fifo",
        "search.points_to_evaluate=[]",
        f"search.space={{train.lr: {{choice: [{LR}]}}}}",
        f"resources.cpu={cpu:g}",
        f"resources.gpu={gpu:g}",
        "checkpoint.num_to_keep=1",
    ]


def level_figures(collector: Any, wall_s: float) -> dict[str, Any]:
    """Trials/hour, reached concurrency and the median per-trial training samples/s."""
    busy = 0.0
    for tid, rows in collector.rows.items():
        if rows:
            busy += rows[-1]["received_at"] - collector.started[tid]
    sps = [r["samples_per_s"] for rows in collector.rows.values() for r in rows]
    return {
        "trials": len(collector.rows),
        "wall_s": round(wall_s, 2),
        "trials_per_hour": 3600.0 * len(collector.rows) / wall_s,
        "concurrency_reached": busy / wall_s,
        "trial_samples_per_s": common.median(sps),
        "actors": len({r.get("pid") for rows in collector.rows.values() for r in rows}),
        "load_average": common.load_average(),
    }


def run_levels(args: argparse.Namespace, storage: Path, device: str) -> dict[int, dict[str, Any]]:
    cores = args.cpus or os.cpu_count() or 1
    out = {}
    for level in args.levels:
        cpu, gpu = cores / level, (1.0 / level if device == "gpu" else 0.0)
        spec = common.search_spec(overrides(args, cpu, gpu))
        _res, collector, wall = common.run_quiet_search(spec, storage, f"{device}_{level}")
        out[level] = {"cpu_per_trial": cpu, "gpu_per_trial": gpu, **level_figures(collector, wall)}
    return out


def report(device: str, levels: dict[int, dict[str, Any]]) -> str:
    base = levels[min(levels)]
    print(
        f"\n{device}: {'concurrent':>10}  {'CPU/trial':>9}  {'GPU/trial':>9}  {'wall s':>7}  "
        f"{'trials/h':>8}  {'reached':>7}  {'actors':>6}  {'samples/s/trial':>15}  {'load':>5}"
    )
    for level, r in levels.items():
        print(
            f"{'':{len(device) + 1}} {level:>10}  {r['cpu_per_trial']:>9.2f}  {r['gpu_per_trial']:>9.2f}  "
            f"{r['wall_s']:>7.1f}  {r['trials_per_hour']:>8.0f}  {r['concurrency_reached']:>7.2f}  "
            f"{r['actors']:>6}  {r['trial_samples_per_s']:>15.1f}  {r['load_average']:>5}"
        )
    return ", ".join(
        f"{level}: {common.ratio(r['trials_per_hour'], base['trials_per_hour']):.2f}x"
        for level, r in levels.items()
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4], help="concurrent trials")
    p.add_argument("--cpus", type=int, default=None, help="CPUs shared by the trials (default: all)")
    p.add_argument("--n-per-class", type=int, nargs=3, default=[12, 24, 16])
    p.add_argument("--encoder", default="tu-mobilenetv3_small_050")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    common.bench_env()
    machine = common.banner(NAME, COMPARED)
    devices = ["cpu"] + (["gpu"] if machine["gpus"] else [])
    if not machine["gpus"]:
        print("GPU fractions: skipped (no CUDA device on this machine)")
    common.load_data(common.search_spec(overrides(args, 1.0, 0.0)))
    print(f"work: {args.trials} trials x {args.epochs} epochs of {args.encoder} + unet (quickstart data)")
    results: dict[str, dict[int, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pack-") as tmp:
        common.start_ray(args.cpus)
        try:
            for device in devices:
                results[device] = run_levels(args, Path(tmp), device)
        finally:
            common.stop_ray()
    texts = [f"{d} {report(d, levels)}" for d, levels in results.items()]
    ratio_text = "trials/hour relative to 1 concurrent trial: " + "; ".join(texts)
    figures = {
        "config": vars(args),
        "levels": {d: {str(k): v for k, v in r.items()} for d, r in results.items()},
    }
    return common.finish(NAME, COMPARED, figures, ratio_text, machine, args.out)


if __name__ == "__main__":
    sys.exit(common.main_guard(main))
