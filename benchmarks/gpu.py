"""Benchmark 7, GPU (CUDA only; skips cleanly without it): the final model's training speed and memory.

A trial is the product's K-fold lockstep loop (:class:`trainables.loop.CrossValLoop`, AMP ``auto`` = bf16
where supported) of the final model (EfficientNet-B6 + UNet++, dual-domain bottleneck, CBAM, random
weights) on a synthetic set at 256 px, in its own process, as a Ray trial would be. For each GPU
fraction f (1, 0.5, 0.25), 1/f such trials share GPU 0: each runs one warm-up epoch, waits for the
others, then runs the timed epochs. Printed per fraction: training images/s per trial (the loop's own
measure) and per GPU (their sum, and total training images over the wall time of the timed part), and
each trial's peak memory; from the single-trial run, how many trials fit on 24, 40 and 80 GB cards
(device memory used by one trial process, CUDA context included, with 1 GiB left free per card).

Sized to finish in under 8 minutes on one H100.

    python -m benchmarks.gpu [--fractions 1 0.5 0.25] [--epochs 2] [--amp off]
    python -m benchmarks.gpu --cpu-smoke      # the same code path on the CPU with a tiny model (tests)
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import common

NAME = "gpu"
COMPARED = (
    "final B6 + UNet++ model, 256 px, AMP: training images/s per trial and per GPU at GPU fractions "
    "1, 0.5, 0.25 (1, 2, 4 trials on one GPU); peak memory per trial -> trials per 24/40/80 GB card"
)
FINAL_MODEL = {
    "encoder": "efficientnet-b6",
    "encoder_weights": None,
    "decoder": "unetplusplus",
    "bottleneck": "dual_domain",
    "attention": "cbam",
    "latent_aug": {"mode": "noise+mixup", "sigma": 0.05, "alpha": 0.4},
}
TINY_MODEL = {"encoder": "tu-test_efficientnet", "encoder_weights": None, "decoder": "unet"}
CARDS_GB = (24, 40, 80)
HEADROOM_GIB = 1.0
GIB = 2**30


def spec_dict(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n_per_class
    return {
        "name": "bench-gpu",
        "data": {
            "root": None,
            "image_size": args.size,
            "resize": "letterbox",
            "folds": args.folds,
            "test_fraction": 0.2,
            "synthetic": {"n_per_class": list(n), "size": args.size, "seed": 0},
        },
        "model": TINY_MODEL if args.cpu_smoke else FINAL_MODEL,
        "train": {
            "epochs": args.epochs + 1,
            "batch_size": args.batch,
            "amp": args.amp,
            "warmup_epochs": 0,
            "cudnn_benchmark": args.cudnn_benchmark,
        },
    }


def trial_worker(
    rank: int, spec: dict[str, Any], device: str, threads: int, barrier: Any, queue: Any
) -> None:
    """One trial: build the loop, one warm-up epoch, wait for the others, timed epochs; put figures."""
    try:
        import torch

        from trainables.data.cache import load_dataset
        from trainables.data.splits import resolve_splits, split_indices
        from trainables.loop import CrossValLoop
        from trainables.spec import spec_from_dict

        t0 = time.perf_counter()
        torch.set_num_threads(threads)
        s = spec_from_dict(spec)
        dataset = load_dataset(s.data, progress=False)
        split = split_indices(resolve_splits(s.data, dataset), dataset, validate=False)
        loop = CrossValLoop(s, dataset, split, device)
        t_built = time.perf_counter()
        loop.step()  # warm-up: cuDNN autotuning, allocator growth, lazy imports
        t_warm = time.perf_counter()
        barrier.wait(timeout=900)
        start = time.perf_counter()
        rows = [loop.step() for _ in range(s.train.epochs - 1)]
        wall = time.perf_counter() - start
        out: dict[str, Any] = {
            "rank": rank,
            "samples_per_s": common.median([r["samples_per_s"] for r in rows]),
            "train_samples": sum(len(f.train_idx) for f in loop.folds) * len(rows),
            "wall_s": wall,
            "amp": loop.amp.name,
            "build_s": t_built - t0,
            "warmup_epoch_s": t_warm - t_built,
            "epoch_s": common.median([r["time_this_epoch_s"] for r in rows]),
        }
        if loop.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(loop.device)
            out.update(
                peak_allocated_gib=torch.cuda.max_memory_allocated(loop.device) / GIB,
                peak_reserved_gib=torch.cuda.max_memory_reserved(loop.device) / GIB,
                device_used_gib=(total - free) / GIB,
                device_total_gib=total / GIB,
            )
        queue.put(out)
    except Exception as exc:  # the parent reports it; a hung barrier would hide it
        queue.put({"rank": rank, "error": f"{type(exc).__name__}: {exc}"})
        barrier.abort()


def run_fraction(args: argparse.Namespace, fraction: float, device: str, threads: int) -> dict[str, Any]:
    n = max(1, round(1 / fraction))
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=trial_worker, args=(i, spec_dict(args), device, threads, barrier, queue))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=args.timeout) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"fraction {fraction}: a trial failed: {errors[0]}")
    per_trial = [r["samples_per_s"] for r in results]
    wall = max(r["wall_s"] for r in results)
    return {
        "fraction": fraction,
        "trials": n,
        "per_trial_images_per_s": per_trial,
        "per_gpu_images_per_s": sum(per_trial),
        "per_gpu_images_per_s_wall": sum(r["train_samples"] for r in results) / wall,
        "peak_allocated_gib": [r.get("peak_allocated_gib", math.nan) for r in results],
        "peak_reserved_gib": [r.get("peak_reserved_gib", math.nan) for r in results],
        "device_used_gib": max(r.get("device_used_gib", math.nan) for r in results),
        "device_total_gib": results[0].get("device_total_gib", math.nan),
        "amp": results[0]["amp"],
        "build_s": max(r["build_s"] for r in results),
        "warmup_epoch_s": max(r["warmup_epoch_s"] for r in results),
        "epoch_s": max(r["epoch_s"] for r in results),
        "load_average": common.load_average(),
    }


def fits(per_trial_gib: float) -> dict[str, int]:
    """Trials of ``per_trial_gib`` that fit on each card size, 1 GiB left free."""
    if per_trial_gib != per_trial_gib or per_trial_gib <= 0:
        return {f"{c}GB": 0 for c in CARDS_GB}
    return {f"{c}GB": int((c * 1e9 / GIB - HEADROOM_GIB) // per_trial_gib) for c in CARDS_GB}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per trial (after one warm-up)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--n-per-class", type=int, nargs=3, default=[32, 48, 32])
    p.add_argument(
        "--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=True, help="train.cudnn_benchmark"
    )
    p.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"], help="train.amp")
    p.add_argument("--timeout", type=float, default=420, help="seconds to wait for one fraction's trials")
    p.add_argument("--cpu-smoke", action="store_true", help="run the code path on the CPU, tiny model")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    common.bench_env()
    import os

    import torch

    machine = common.banner(NAME, COMPARED)
    if args.cpu_smoke:
        args.size, args.n_per_class, args.folds, args.batch = 32, [4, 6, 4], 2, 4
        device, cores = "cpu", os.cpu_count() or 1
    elif torch.cuda.is_available():
        device, cores = "cuda", os.cpu_count() or 1
    else:
        common.final(NAME, "skipped: no CUDA device on this machine (nothing measured, nothing recorded)")
        return 0

    from trainables.data.cache import load_dataset
    from trainables.spec import spec_from_dict

    load_dataset(spec_from_dict(spec_dict(args)).data, progress=False)  # build the cache once
    rows = []
    for fraction in args.fractions:
        threads = max(1, int(cores * fraction))
        row = run_fraction(args, fraction, device, threads)
        rows.append(row)
        print(
            f"fraction {fraction:g} ({row['trials']} trial(s), {threads} threads each, AMP {row['amp']}): "
            f"{', '.join(f'{v:.1f}' for v in row['per_trial_images_per_s'])} images/s per trial; "
            f"per GPU {row['per_gpu_images_per_s']:.1f} (sum), "
            f"{row['per_gpu_images_per_s_wall']:.1f} (wall); "
            f"peak reserved {', '.join(f'{v:.2f}' for v in row['peak_reserved_gib'])} GiB; "
            f"slowest trial: data + model {row['build_s']:.1f} s, "
            f"warm-up epoch {row['warmup_epoch_s']:.1f} s, "
            f"timed epoch {row['epoch_s']:.1f} s",
            flush=True,
        )
    single = next((r for r in rows if r["trials"] == 1), rows[0])
    # device memory one trial holds: its share of what the GPU had in use, or its allocator's peak if larger
    per_trial_gib = max(single["device_used_gib"] / single["trials"], max(single["peak_reserved_gib"]))
    fit = fits(per_trial_gib)
    print(f"one trial uses {per_trial_gib:.2f} GiB of device memory -> trials per card: {fit}")
    base = rows[0]["per_gpu_images_per_s"]
    ratio_text = (
        "per-GPU images/s vs one trial per GPU: "
        + ", ".join(
            f"fraction {r['fraction']:g}: {common.ratio(r['per_gpu_images_per_s'], base):.2f}x" for r in rows
        )
        + f"; {per_trial_gib:.1f} GiB per trial -> "
        f"{fit['24GB']}/{fit['40GB']}/{fit['80GB']} trials on 24/40/80 GB"
    )
    figures = {
        "config": vars(args),
        "device": device,
        "fractions": rows,
        "per_trial_gib": per_trial_gib,
        "fits": fit,
    }
    name = NAME if args.amp == "auto" else f"{NAME}_amp_{args.amp}"
    name += "" if args.cudnn_benchmark else "_no_cudnn_benchmark"
    name = f"{NAME}_cpu_smoke" if args.cpu_smoke else name
    # recorded under the variant's name (amp, cpu smoke), reported as this benchmark's RESULT line
    print(f"recorded: {common.record(name, COMPARED, figures, ratio_text, machine, args.out)}")
    common.final(NAME, ratio_text)
    return 0


if __name__ == "__main__":
    sys.exit(common.main_guard(main))
