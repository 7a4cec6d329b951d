"""Benchmark 8, CPU speed: the project's training loop and inference paths against the fastest bare loop.

One config (default: UNet + ResNet-18 at 128 px, batch 16, AdamW, the project's default loss and training
settings; ``--set KEY=VALUE`` changes it for every side) on the synthetic set. The bare loops are
forward + loss + backward + optimizer step on batches already in memory, nothing else (no augmentation,
clipping, schedule or bookkeeping), on the very model, loss and optimizer objects the loop builds (one
:class:`~trainables.loop.CrossValLoop` per variant, so weights, class weights and parameter groups are
the loop's own). Variants combine a precision (``fp32``; ``bf16``: autocast, fp32 master weights),
``cl`` (``channels_last`` weights) and ``compile`` (``torch.compile``; its compile time shows in the
first round's seconds).

The product's loop runs with the project's defaults (``train.amp: auto``, ``train.channels_last: true``;
``--loop-set`` changes them, e.g. ``train.amp=off train.channels_last=false``, the loop's former CPU
settings; with ``auto`` on a CPU with bf16 hardware the loop times both precisions first, as it does
before its first epoch, and the choice is printed and recorded) on one train-only fold of exactly the
bare loops' images. Its images/s come from the time
between its own per-batch callbacks (everything the loop does per batch); its ``samples_per_s`` is printed
beside. Inference likewise: a bare eval forward per variant vs the loop's validation
(:meth:`CrossValLoop.predict`) and :func:`analysis.predict.predict_arrays` (``predict``, ``evaluate`` and
the test evaluation of ``refit``).

Everything runs interleaved round by round (a warm-up round first, not counted); each figure is the
median step, so load from other processes hits every side alike and a burst hits few steps. Target
(issue 13): the loop at >= 0.95x the fastest bare loop.

``--check-spec SPEC [--check-set KEY=VALUE ...]``: also train that spec (all folds) with ``train.amp``
off and auto for each of ``--check-seeds`` and print the CV figures: whether the faster precision reaches
the same validation metrics, with the seed-to-seed spread as the yardstick.

    python -m benchmarks.cpu_speed [--encoder resnet18] [--size 128] [--rounds 3] [--threads 2 1]
    python -m benchmarks.cpu_speed --size 64 --batch 8 --steps 8 \
        --set "model.decoder_options={decoder_channels: [64, 32, 16, 16, 8]}"   # the quickstart's size
    ONEDNN_MAX_CPU_ISA=AVX512_CORE python -m benchmarks.cpu_speed --variants fp32+cl bf16+cl  # no bf16 unit
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import common

NAME = "cpu_speed"
COMPARED = (
    "training images/s of the project's CrossValLoop (train.amp auto, channels_last) vs the fastest bare "
    "loop (fp32 / bf16 autocast x channels_last x compile) on one config; inference likewise"
)
DEFAULT_VARIANTS = ("fp32", "fp32+cl", "bf16", "bf16+cl")
VARIANT_HELP = "precision fp32|bf16, then optional +cl (channels_last) and +compile, e.g. bf16+cl+compile"


@dataclass(frozen=True)
class Variant:
    """One bare-loop setting, parsed from a name like ``bf16+cl+compile``."""

    name: str
    amp: str
    channels_last: bool
    compile: bool


def parse_variant(name: str) -> Variant:
    """``fp32|bf16`` [``+cl``] [``+compile``] -> :class:`Variant`; ValueError naming the bad part."""
    precision, *flags = name.split("+")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"variant {name!r}: precision must be fp32 or bf16 ({VARIANT_HELP})")
    unknown = set(flags) - {"cl", "compile"}
    if unknown or len(set(flags)) != len(flags):
        raise ValueError(f"variant {name!r}: unknown or repeated part(s) {sorted(unknown)} ({VARIANT_HELP})")
    return Variant(name, "off" if precision == "fp32" else "bf16", "cl" in flags, "compile" in flags)


def spec_dict(args: argparse.Namespace, epochs: int, **train: Any) -> dict[str, Any]:
    """The benchmarked config: the project's defaults but for the model, size, batch and epochs, then
    ``--set`` (every side)."""
    from trainables.spec import apply_overrides

    n = args.n_per_class
    d = {
        "name": NAME,
        "data": {
            "image_size": args.size,
            "folds": 2,
            "synthetic": {"n_per_class": list(n), "size": args.size},
        },
        "model": {"encoder": args.encoder, "encoder_weights": None, "decoder": args.decoder},
        "train": {"batch_size": args.batch, "epochs": epochs, **train},
    }
    return apply_overrides(d, args.set)


# ------------------------------------------------------------------------------------------- sides


class Bare:
    """A bare loop: the loop's own fold objects for one variant, trained and run without the loop."""

    def __init__(self, variant: Variant, args: argparse.Namespace, dataset: Any, split: Any) -> None:
        import torch

        from trainables.device import autocast
        from trainables.loop import CrossValLoop
        from trainables.spec import spec_from_dict

        train = {"amp": variant.amp, "channels_last": False, "compile": variant.compile}
        loop = CrossValLoop(spec_from_dict(spec_dict(args, 1, **train)), dataset, split, "cpu")
        self.fold = loop.folds[0]
        self.layout = torch.channels_last if variant.channels_last else torch.contiguous_format
        self.fold.model.to(memory_format=self.layout)  # the bare side sets its layout itself
        self.autocast = lambda: autocast(loop.device, loop.amp)

    def train(self, batches: Sequence[tuple[Any, Any, Any]]) -> list[float]:
        """Forward + loss + backward + optimizer step per batch; seconds per image of each step."""
        fold = self.fold
        fold.model.train()
        per_image = []
        for x, m, y in batches:
            start = time.perf_counter()
            with self.autocast():
                out = fold.forward(x.contiguous(memory_format=self.layout), labels=y)
            loss, _ = fold.loss_fn(out, m, y)
            loss.backward()
            fold.optimizer.step()
            fold.optimizer.zero_grad(set_to_none=True)
            per_image.append((time.perf_counter() - start) / len(y))
        return per_image

    def infer(self, batches: Sequence[Any]) -> list[float]:
        """Eval forward per batch (images only); seconds per image of each batch."""
        import torch

        fold = self.fold
        fold.model.eval()
        per_image = []
        with torch.inference_mode(), self.autocast():
            for x in batches:
                start = time.perf_counter()
                fold.forward(x.contiguous(memory_format=self.layout))
                per_image.append((time.perf_counter() - start) / len(x))
        return per_image


def loop_epoch(loop: Any, batch: int) -> tuple[list[float], float]:
    """One ``loop.step()``: seconds per image of each training step (between the loop's own per-batch
    callbacks) and the loop's ``samples_per_s``."""
    marks = [time.perf_counter()]
    row = loop.step(lambda *_: marks.append(time.perf_counter()))
    return [(b - a) / batch for a, b in itertools.pairwise(marks)], row["samples_per_s"]


def optimizer_step_ms(model: Any, cfg: Any, repeats: int = 9) -> dict[str, float]:
    """Median ms of one AdamW step on ``model`` (random gradients): torch's CPU default (a loop over the
    parameters), foreach, and the loop's own (:func:`~trainables.loop.build_optimizer`: fused)."""
    import torch

    from trainables.loop import build_optimizer

    product = build_optimizer(model, cfg)
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in product.param_groups]
    optimizers = {
        "default": torch.optim.AdamW(groups, lr=cfg.lr),
        "foreach": torch.optim.AdamW(groups, lr=cfg.lr, foreach=True),
        "loop (fused)": product,
    }
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    times: dict[str, list[float]] = {k: [] for k in optimizers}
    for _ in range(repeats):
        for name, opt in optimizers.items():
            with common.stopwatch() as t:
                opt.step()
            times[name].append(1000 * t["s"])
    model.zero_grad(set_to_none=True)
    return {k: round(common.median(v), 2) for k, v in times.items()}


def make_batches(dataset: Any, idx: Any, batch: int) -> list[tuple[Any, Any, Any]]:
    """Float batches of ``idx`` in memory, as the loop's :func:`~trainables.loop.load_batch` makes them."""
    import torch

    from trainables.loop import load_batch

    cpu = torch.device("cpu")
    return [
        load_batch(dataset.images, dataset.masks, dataset.labels, idx[s : s + batch], cpu)
        for s in range(0, len(idx), batch)
    ]


def train_only_split(split: Any, n: int) -> Any:
    """One fold training on ``n`` development images drawn at random (every class present), no validation
    (like a refit)."""
    import numpy as np

    from trainables.data.splits import SplitIndices

    dev = np.asarray(split.dev)
    if len(dev) < n:
        raise SystemExit(f"the synthetic set has {len(dev)} development images; --steps x --batch needs {n}")
    train = np.sort(np.random.default_rng(0).permutation(dev)[:n])
    return SplitIndices(test=split.test, dev=dev, folds=[(train, train[:0])])


def vs_fp32(rate: float, fp32: float) -> str:
    """``1.23x fp32``, or blank without an fp32 variant."""
    return f"{rate / fp32:5.2f}x fp32" if math.isfinite(fp32) and fp32 > 0 else " " * 10


def images_per_s(per_image_s: Sequence[float]) -> float:
    """Images/s from per-step seconds per image: the median step, robust to another process's bursts."""
    return common.ratio(1.0, common.median(per_image_s))


# ----------------------------------------------------------------------------------------- metrics


def check_metrics(path: str, overrides: Sequence[str], seeds: Sequence[int]) -> dict[str, Any]:
    """Train ``path`` with ``overrides`` (all folds) with ``train.amp`` off and auto per seed; the CV
    figures at the best common epoch and the wall time of each run."""
    from trainables.data.splits import split_indices
    from trainables.loop import CrossValLoop
    from trainables.spec import load_spec

    keys = ("score", "dice", "iou", "macro_f1", "auc")
    runs: dict[str, list[dict[str, Any]]] = {}
    base = load_spec(path, overrides)
    dataset, splits = common.load_data(base)
    split = split_indices(splits, dataset, validate=False)
    for seed in seeds:
        for amp in ("off", "auto"):
            spec = load_spec(path, [*overrides, f"train.amp={amp}", f"train.seed={seed}"])
            loop = CrossValLoop(spec, dataset, split, "cpu")
            with common.stopwatch() as t:
                while not loop.done:
                    loop.step()
            summary = loop.summary()
            row = {k: summary["cv"][k]["mean"] for k in keys if k in summary["cv"]}
            row.update(seed=seed, amp=loop.amp.name, best_epoch=summary["best_epoch"], wall_s=t["s"])
            runs.setdefault(amp, []).append(row)
            print(
                f"  amp {amp:4s} ({loop.amp.name}) seed {seed}: "
                + ", ".join(f"{k} {row[k]:.3f}" for k in keys if k in row)
                + f", best epoch {row['best_epoch']}, {t['s']:.0f} s, load {common.load_average()}",
                flush=True,
            )
    diffs = {
        k: [a[k] - b[k] for a, b in zip(runs["auto"], runs["off"], strict=True)]
        for k in keys
        if k in runs["off"][0]
    }
    seed_spread = {
        k: max(r[k] for r in runs["off"]) - min(r[k] for r in runs["off"]) for k in diffs if len(seeds) > 1
    }
    return {
        "spec": path,
        "overrides": list(overrides),
        "runs": runs,
        "auto_minus_off": diffs,
        "fp32_seed_spread": seed_spread,
    }


# -------------------------------------------------------------------------------------------- main


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--decoder", default="unet")
    p.add_argument("--size", type=int, default=128, help="image size (synthetic set)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=4, help="training batches per side and round")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    p.add_argument("--n-per-class", type=int, nargs=3, default=[27, 87, 42])
    p.add_argument("--threads", type=int, nargs="+", default=None, help="torch threads (default: torch's)")
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), help=VARIANT_HELP)
    p.add_argument("--set", nargs="+", default=[], help="KEY=VALUE overrides of the config (every side)")
    p.add_argument(
        "--loop-set",
        nargs="+",
        default=[],
        help="KEY=VALUE overrides of the product loop, e.g. train.amp=off",
    )
    p.add_argument("--infer-repeats", type=int, default=3, help="inference passes per side and round")
    p.add_argument("--no-inference", action="store_true", help="time training only")
    p.add_argument("--check-spec", default=None, help="also compare amp off vs auto on this spec's CV")
    p.add_argument("--check-set", nargs="+", default=[], help="KEY=VALUE overrides of --check-spec")
    p.add_argument("--check-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    common.bench_env()
    import torch

    from analysis.predict import predict_arrays
    from trainables.cpu_precision import needs_probe
    from trainables.data.splits import split_indices
    from trainables.device import amp_settings, cpu_bf16_native
    from trainables.loop import CrossValLoop
    from trainables.spec import apply_overrides, spec_from_dict

    variants = [parse_variant(v) for v in args.variants]
    threads = args.threads or [torch.get_num_threads()]
    machine = common.banner(NAME, COMPARED)
    cpu = torch.device("cpu")
    print(
        f"bf16 in hardware: {cpu_bf16_native()} (torch CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}); train.amp auto -> "
        + (
            "the faster of bf16 and fp32, timed"
            if needs_probe(cpu, "auto")
            else amp_settings(cpu, "auto").name
        )
    )
    n = args.steps * args.batch
    spec = spec_from_dict(
        apply_overrides(spec_dict(args, (args.rounds + 1) * len(threads) + 1), args.loop_set)
    )
    dataset, splits = common.load_data(spec)
    split = train_only_split(split_indices(splits, dataset, validate=False), n)
    idx = split.folds[0][0]
    train_batches = make_batches(dataset, idx, args.batch)
    infer_batches = [x for x, _, _ in make_batches(dataset, idx, 2 * args.batch)]  # the validation's batch
    print(
        f"config: {args.encoder} + {args.decoder} at {args.size} px, batch {args.batch}, {args.steps} steps "
        f"({n} images) per side and round, {args.rounds} rounds + 1 warm-up, threads {threads}"
    )

    bare = {v.name: Bare(v, args, dataset, split) for v in variants}
    loop = CrossValLoop(spec, dataset, split, "cpu")
    predictor = copy.deepcopy(loop.folds[0].model)  # predict puts its model in channels_last: not the loop's
    torch.set_num_threads(threads[0])
    probe = loop.choose_amp()  # train.amp auto on bf16 hardware: timed here, as step() would, not counted
    if probe is not None and loop.val_amp_choice is not None:
        print(f"train.amp auto, timed by the loop: training {probe.describe()}")
        print(f"  validation {loop.val_amp_choice.describe()}")
    layout = "+cl" if loop.channels_last else ""
    product = f"loop ({loop.amp.name}{layout})"
    validation, predict = f"validation loop ({loop.val_amp.name}{layout})", "predict_arrays"
    opt_ms = optimizer_step_ms(loop.folds[0].model, spec.train)
    print(f"AdamW step, ms: {opt_ms}")
    train: dict[int, dict[str, list[float]]] = {t: {} for t in threads}
    infer: dict[int, dict[str, list[float]]] = {t: {} for t in threads}
    loop_own: dict[int, list[float]] = {t: [] for t in threads}
    first_s: dict[str, float] = {}

    for rnd in range(args.rounds + 1):  # round 0 warms up (and compiles): not counted
        for t in threads:
            torch.set_num_threads(t)
            tr, inf = {}, {}
            for name, side in bare.items():
                with common.stopwatch() as sw:
                    tr[name] = side.train(train_batches)
                first_s.setdefault(name, sw["s"])
            tr[product], own = loop_epoch(loop, args.batch)
            for _ in range(0 if args.no_inference else args.infer_repeats):
                for name, side in bare.items():
                    inf.setdefault(name, []).extend(side.infer(infer_batches))
                with common.stopwatch() as sw:
                    loop.predict(loop.folds[0], idx)
                inf.setdefault(validation, []).append(sw["s"] / n)
                with common.stopwatch() as sw:
                    predict_arrays([predictor], dataset.images[idx], cpu, batch_size=2 * args.batch)
                inf.setdefault(predict, []).append(sw["s"] / n)
            if rnd == 0:
                continue
            loop_own[t].append(own)
            for table, new in ((train[t], tr), (infer[t], inf)):
                for k, v in new.items():
                    table.setdefault(k, []).extend(v)
            now = {k: round(images_per_s(v), 1) for k, v in tr.items()}
            print(
                f"round {rnd}, {t} thread(s): training images/s {now}  load {common.load_average()}",
                flush=True,
            )

    figures: dict[str, Any] = {
        "config": vars(args),
        "bf16_native": cpu_bf16_native(),
        "amp_auto": loop.amp.name if loop.cfg.amp == "auto" else None,
        "amp_probe": None if probe is None else probe.as_dict(),
        "val_amp_probe": None if loop.val_amp_choice is None else loop.val_amp_choice.as_dict(),
        "product": product,
        "adamw_step_ms": opt_ms,
        "first_round_s": first_s,
        "per_image_s": {"train": train, "infer": infer},
    }
    summary = []
    for t in threads:
        fig = figures[f"threads_{t}"] = {}
        rates = {k: images_per_s(v) for k, v in train[t].items()}
        bare_rates = {k: v for k, v in rates.items() if k in bare}
        best = max(bare_rates, key=bare_rates.__getitem__)
        fp32 = bare_rates.get("fp32", math.nan)
        own = common.median(loop_own[t])
        print(
            f"\ntraining images/s, {t} thread(s) (median step over {args.rounds} rounds; [first round, s]):"
        )
        for k, v in rates.items():
            extra = f"  [{first_s[k]:.1f} s]" if k in first_s else f"  (its own samples_per_s: {own:.1f})"
            print(f"  {k:26s} {v:7.1f}  {vs_fp32(v, fp32)}{extra}")
        ratio = common.ratio(rates[product], bare_rates[best])
        print(f"  {product} / fastest bare ({best}) = {ratio:.2f}")
        fig.update(train=rates, loop_samples_per_s=own, fastest_bare=best, loop_over_fastest_bare=ratio)
        text = (
            f"{t} thread(s): {product} {rates[product]:.1f} images/s = {ratio:.2f}x the fastest bare loop "
            f"({best} {bare_rates[best]:.1f}{f'; bare fp32 {fp32:.1f}' if math.isfinite(fp32) else ''})"
        )
        if not args.no_inference:
            rates_i = {k: images_per_s(v) for k, v in infer[t].items()}
            bare_i = {k: v for k, v in rates_i.items() if k in bare}
            best_i = max(bare_i, key=bare_i.__getitem__)
            print(f"inference images/s, {t} thread(s):")
            for k, v in rates_i.items():
                print(f"  {k:26s} {v:7.1f}  {vs_fp32(v, bare_i.get('fp32', math.nan))}")
            val = common.ratio(rates_i[validation], bare_i[best_i])
            pred = common.ratio(rates_i[predict], bare_i[best_i])
            print(
                f"  validation / fastest bare ({best_i}) = {val:.2f}; "
                f"predict_arrays / fastest bare = {pred:.2f}"
            )
            fig.update(infer=rates_i, fastest_bare_infer=best_i, validation_ratio=val, predict_ratio=pred)
            text += f"; validation {val:.2f}x, predict_arrays {pred:.2f}x the fastest bare forward ({best_i})"
        summary.append(text)

    if args.check_spec:
        print(f"\nmetrics check: {args.check_spec}, train.amp off vs auto, seeds {args.check_seeds}")
        figures["metrics_check"] = check = check_metrics(args.check_spec, args.check_set, args.check_seeds)
        spread = ", ".join(f"{k} {v:.3f}" for k, v in check["fp32_seed_spread"].items())
        diffs = ", ".join(f"{k} {[round(d, 3) for d in v]}" for k, v in check["auto_minus_off"].items())
        print(f"  auto - off per seed: {diffs}\n  fp32 seed-to-seed spread: {spread or 'n/a (one seed)'}")

    ratio_text = "; ".join(summary) + f"; load {machine['load_average']} -> {common.load_average()}"
    return common.finish(NAME, COMPARED, figures, ratio_text, machine, args.out)


if __name__ == "__main__":
    sys.exit(common.main_guard(main))
