"""Benchmark 1, trial overhead: one config trained inside a Ray Tune trial vs the bare loop in one process.

Same spec, data, split, epochs and torch threads on both sides. The trial is the product's trainable
(:func:`trainables.trainable.train_trial` under :func:`search.tuner.build_tuner`: with_parameters data,
per-epoch checkpoint and report), wrapped only to note two times in the worker: when the function is
entered and when the first optimizer step ends (a global optimizer post-step hook, removed after the
first call). Two trials run one after the other: the first starts a fresh actor (cold), the second reuses
it (``reuse_actors``, warm). The bare loop runs before and after the trials (interleaved, so machine load
affects both sides alike).

Printed: training samples/s as the loop measures it (training steps only) and per epoch wall time
(training, validation and, in the trial, checkpoint + report) on both sides, their ratios, and the time
from the trial's start to its first optimizer step split into actor start, data/dispatch and setup.
Targets (issue 8): the trial reaches >= 95% of the bare loop's samples/s; start to first step < 5 s.

    python -m benchmarks.trial_overhead [--epochs 3] [--cpus 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import common

NAME = "trial_overhead"
COMPARED = (
    "training samples/s and epoch wall time of one config inside a Ray Tune trial (product trainable) "
    "vs the bare CrossValLoop in one process; trial start -> first optimizer step"
)
LR = 2.0e-3


def overrides(args: argparse.Namespace) -> list[str]:
    """The quickstart search spec reduced to one fixed config, two sequential trials, FIFO."""
    n = args.n_per_class
    return [
        f"data.image_size={args.size}",
        f"data.synthetic.size={args.size}",
        f"data.synthetic.n_per_class=[{n[0]}, {n[1]}, {n[2]}]",
        f"data.folds={args.folds}",
        f"model.encoder={args.encoder}",
        "model.decoder=unet",
        f"train.epochs={args.epochs}",
        f"train.batch_size={args.batch}",
        "search.algorithm=optuna",  # Tune ignores max_concurrent with random/grid (see the report)
        "search.sampler=random",
        "search.num_samples=2",
        "search.max_concurrent=1",
        "search.scheduler.type=fifo",
        "search.points_to_evaluate=[]",
        f"search.space={{train.lr: {{choice: [{LR}]}}}}",
        f"resources.cpu={args.cpus}",
        "checkpoint.num_to_keep=1",
    ]


# --------------------------------------------------------------------------------------- timing hook


class FirstStep:
    """Notes the wall time (``time.time()``) when the first optimizer step of this process ends."""

    def __init__(self) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.at: float | None = None
        self._handle = register_optimizer_step_post_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        if self.at is None:
            self.at = time.time()
            self._handle.remove()


def timed_train_trial(config: dict[str, Any], *, marks_dir: str, **kwargs: Any) -> None:
    """:func:`trainables.trainable.train_trial` unchanged, plus ``<marks_dir>/<trial id>.json`` holding
    when it was entered, when its modules were imported (in the product this import happens while the
    actor is created) and when its first optimizer step ended."""
    entered = time.time()
    from ray import tune

    from trainables.trainable import train_trial

    imported = time.time()
    first = FirstStep()
    path = Path(marks_dir) / f"{tune.get_context().get_trial_id()}.json"
    try:
        train_trial(config, **kwargs)
    finally:
        marks = {"entered": entered, "imported": imported, "first_step": first.at, "pid": os.getpid()}
        path.write_text(json.dumps(marks))


# ------------------------------------------------------------------------------------------- sides


def run_bare(spec: Any, dataset: Any, split: Any, threads: int) -> dict[str, Any]:
    """The loop alone: build time, start -> first optimizer step, per-epoch samples/s and wall time."""
    import torch

    from trainables.loop import CrossValLoop

    torch.set_num_threads(threads)
    start = time.time()
    first = FirstStep()
    loop = CrossValLoop(spec, dataset, split, "cpu")
    built = time.time()
    epochs = []
    while not loop.done:
        t0 = time.perf_counter()
        row = loop.step()
        epochs.append({"wall_s": time.perf_counter() - t0, "samples_per_s": row["samples_per_s"]})
    return {
        "build_s": built - start,
        "first_step_s": (first.at or built) - start,
        "epochs": epochs,
        "score_best": row["val/score_best"],
    }


def run_trials(spec: Any, dataset: Any, splits: dict, storage: Path) -> list[dict[str, Any]]:
    """Two trials of the fixed config, one after the other; per trial its epochs and start times."""
    from ray import tune

    from search.space import space_from_spec
    from search.tuner import build_tuner, location
    from trainables.spec import spec_to_dict, trial_spec_dict

    marks = storage / "marks"
    marks.mkdir(parents=True, exist_ok=True)
    space = space_from_spec(spec)
    base = trial_spec_dict(spec_to_dict(spec), {})
    fn = tune.with_parameters(
        timed_train_trial,
        base_spec=base,
        resolve=space.resolve,
        dataset=dataset,
        splits=splits,
        marks_dir=str(marks),
    )
    trainable = tune.with_resources(fn, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    collector = common.Collector()
    loc = location(str(storage), "trial_overhead")
    with common.quiet(storage / "search.log"):
        tuner = build_tuner(spec, loc, trainable, space, callbacks=[collector])
        fit_at = time.time()
        results = tuner.fit()
    errors = [str(r.error) for r in results if r.error]
    if errors:
        raise RuntimeError(f"trial failed: {errors[0]}")
    trials = []
    previous_end = fit_at
    for tid, rows in sorted(collector.rows.items(), key=lambda kv: collector.started[kv[0]]):
        mark = json.loads((marks / f"{tid}.json").read_text())
        started = collector.started[tid]
        reported = [r["reported_at"] for r in rows]
        walls = [b - a for a, b in itertools.pairwise(reported)]
        trials.append(
            {
                "trial_id": tid,
                "pid": mark["pid"],
                "actor_ready_s": started - previous_end,  # fit() or previous trial's end -> actor ready
                "dispatch_s": mark["entered"] - started,  # train() call, data from the object store
                "import_s": mark["imported"] - mark["entered"],  # torch, monai, timm, smp, ray.tune
                "setup_s": mark["first_step"] - mark["imported"],  # spec, threads, K models, first batch
                "start_to_first_step_s": mark["first_step"] - previous_end,
                "epochs": [
                    {"samples_per_s": r["samples_per_s"], "time_this_epoch_s": r["time_this_epoch_s"]}
                    for r in rows
                ],
                "epoch_wall_s": walls,  # report to report: epoch + checkpoint + report
                "score_best": rows[-1]["val/score_best"],
            }
        )
        previous_end = reported[-1]
    return trials


# -------------------------------------------------------------------------------------------- main


def steady(epochs: Sequence[Mapping[str, float]], key: str) -> float:
    """Median of ``key`` over the epochs after the first (the first pays one-time costs)."""
    values = [e[key] for e in epochs[1:]] or [e[key] for e in epochs]
    return common.median(values)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--cpus", type=int, default=1, help="CPUs of the trial = torch threads on both sides")
    p.add_argument("--size", type=int, default=64, help="image size (synthetic set)")
    p.add_argument("--n-per-class", type=int, nargs=3, default=[40, 80, 60])
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--encoder", default="tu-mobilenetv3_small_050")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    common.bench_env()
    from trainables.data.splits import split_indices
    from trainables.spec import spec_to_dict, trial_spec

    machine = common.banner(NAME, COMPARED)
    spec = common.search_spec(overrides(args))
    dataset, splits = common.load_data(spec)
    bare_spec = trial_spec(spec_to_dict(spec), {"train.lr": LR})
    split = split_indices(splits, dataset, validate=False)
    print(
        f"config: {spec.model.encoder} + {spec.model.decoder}, {len(dataset)} synthetic images at "
        f"{args.size} px, {args.folds} folds, {args.epochs} epochs, batch {args.batch}, "
        f"{args.cpus} CPU(s)/threads"
    )

    bare = [run_bare(bare_spec, dataset, split, args.cpus)]
    with tempfile.TemporaryDirectory(prefix="bench-trial-") as tmp:
        common.start_ray(max(2, args.cpus))
        try:
            trials = run_trials(spec, dataset, splits, Path(tmp))
        finally:
            common.stop_ray()
    bare.append(run_bare(bare_spec, dataset, split, args.cpus))

    bare_epochs = [e for b in bare for e in b["epochs"][1:]]
    trial_epochs = [e for t in trials for e in t["epochs"][1:]]
    bare_sps = common.median([e["samples_per_s"] for e in bare_epochs])
    trial_sps = common.median([e["samples_per_s"] for e in trial_epochs])
    bare_wall = common.median([e["wall_s"] for e in bare_epochs])
    trial_wall = common.median([w for t in trials for w in t["epoch_wall_s"]])
    cold, warm = trials[0], trials[-1]
    print("\ntraining samples/s (loop's own measure, epochs 2.., median):")
    print(
        f"  bare loop:   {bare_sps:8.1f}   (runs before/after: "
        f"{[round(steady(b['epochs'], 'samples_per_s'), 1) for b in bare]})"
    )
    print(f"  Tune trial:  {trial_sps:8.1f}   (trial / bare = {common.ratio(trial_sps, bare_sps):.1%})")
    print("epoch wall time, s (bare: step(); trial: report to report, incl. checkpoint):")
    print(f"  bare loop:   {bare_wall:8.2f}")
    print(f"  Tune trial:  {trial_wall:8.2f}   (bare / trial = {common.ratio(bare_wall, trial_wall):.1%})")
    print("start -> first optimizer step, s:")
    print(
        f"  bare loop (build {common.median([b['build_s'] for b in bare]):.2f}):        "
        f"{common.median([b['first_step_s'] for b in bare]):6.2f}"
    )
    for label, t in (("cold trial (new actor)", cold), ("warm trial (reused actor)", warm)):
        print(
            f"  {label:26s} {t['start_to_first_step_s']:6.2f}  = actor ready {t['actor_ready_s']:.2f}"
            f" + dispatch/data {t['dispatch_s']:.2f} + imports {t['import_s']:.2f}"
            f" + spec/models/1st batch {t['setup_s']:.2f}"
        )
    ratio_text = (
        f"trial reaches {common.ratio(trial_sps, bare_sps):.1%} of the bare loop's samples/s "
        f"({trial_sps:.1f} vs {bare_sps:.1f}; epoch wall {common.ratio(bare_wall, trial_wall):.1%}); "
        f"start -> first step {cold['start_to_first_step_s']:.1f} s cold, "
        f"{warm['start_to_first_step_s']:.1f} s warm"
    )
    figures = {
        "config": vars(args),
        "bare": bare,
        "trials": trials,
        "bare_samples_per_s": bare_sps,
        "trial_samples_per_s": trial_sps,
        "samples_per_s_ratio": common.ratio(trial_sps, bare_sps),
        "bare_epoch_wall_s": bare_wall,
        "trial_epoch_wall_s": trial_wall,
        "epoch_wall_ratio": common.ratio(bare_wall, trial_wall),
        "cold_start_to_first_step_s": cold["start_to_first_step_s"],
        "warm_start_to_first_step_s": warm["start_to_first_step_s"],
    }
    return common.finish(NAME, COMPARED, figures, ratio_text, machine, args.out)


if __name__ == "__main__":
    sys.exit(common.main_guard(main))
