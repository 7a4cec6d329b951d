"""Benchmark 6, inference: ``predict`` latency and folder throughput of the final model on the CPU.

The final model of the thesis (EfficientNet-B6 + UNet++, dual-domain bottleneck, CBAM; random weights,
``encoder_weights: null``: speed does not depend on the values) is written as a bundle at 256 px
(letterbox) and used through :class:`analysis.predict.Predictor` on BUSI-sized synthetic PNGs.

Compared, per image (read, resize, forward, map back, threshold):

- the original's way: the model is reloaded for every call (bundle read + network rebuilt + predict);
- loaded once, eager: one :class:`Predictor`, then one call per image;
- loaded once, ``torch.compile``: the same predictor with its network compiled (inductor); the compile
  time is printed separately (paid on the first call) with the number of images that pays it back.

The three run interleaved image by image (one warm-up call first), so load from other processes on a
shared machine hits them alike.

And ``predict_folder`` (masks and overlays written) in images/s with the predictor loaded once.

    python -m benchmarks.inference [--images 4] [--no-compile]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import common

NAME = "inference"
COMPARED = (
    "predict of the final B6 + UNet++ model at 256 px on CPU: reloaded per call (original) vs loaded once "
    "(eager) vs loaded once + torch.compile; predict_folder images/s"
)
FINAL_MODEL = {
    "encoder": "efficientnet-b6",
    "encoder_weights": None,
    "decoder": "unetplusplus",
    "bottleneck": "dual_domain",
    "attention": "cbam",
}


def write_bundle(folder: Path, size: int, model_cfg: dict[str, Any]) -> tuple[Path, float]:
    """The model as a refit-style bundle (class names + preprocessing); its path and build seconds."""
    from model_zoo import build_model, save_bundle
    from model_zoo.config import ModelConfig
    from trainables.schema import from_dict

    with common.stopwatch() as t:
        model = build_model(from_dict(ModelConfig, model_cfg))
    meta = {
        "class_names": ["normal", "benign", "malignant"],
        "preprocessing": {"image_size": size, "resize": "letterbox"},
    }
    return save_bundle(folder / "final.safetensors", model, meta), t["s"]


def latencies(fn: Callable[[Path], Any], files: Sequence[Path]) -> list[float]:
    out = []
    for f in files:
        with common.stopwatch() as t:
            fn(f)
        out.append(t["s"])
    return out


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=4, help="images timed per variant (after one warm-up)")
    p.add_argument("--reloads", type=int, default=2, help="calls of the reload-per-call variant")
    p.add_argument("--png-size", type=int, default=512, help="side of the synthetic PNGs (BUSI ~500 px)")
    p.add_argument("--size", type=int, default=256, help="working size of the bundle")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--model", default=None, help="JSON of the model section instead of the final model")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import json

    import torch

    from analysis.predict import Predictor, predict_folder
    from trainables.data.synthetic import make_synthetic

    args = parse(argv)
    common.bench_env()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_cfg = json.loads(args.model) if args.model else FINAL_MODEL
    machine = common.banner(NAME, COMPARED)
    figures: dict[str, Any] = {"config": {**vars(args), "model": model_cfg}}
    n_files = max(args.images, args.reloads) + 1
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp_name:
        tmp = Path(tmp_name)
        per_class = (n_files + 2) // 3
        root = make_synthetic(tmp / "images", (per_class, per_class, per_class), size=args.png_size, seed=0)
        files = sorted(p for p in root.rglob("*.png") if "_mask" not in p.name)[:n_files]
        bundle, build_s = write_bundle(tmp, args.size, model_cfg)
        print(
            f"model: {model_cfg['encoder']} + {model_cfg['decoder']} "
            f"({model_cfg.get('bottleneck', 'identity')}, "
            f"{model_cfg.get('attention', 'none')}), bundle {bundle.stat().st_size / 2**20:.0f} MiB, "
            f"{args.size} px, {torch.get_num_threads()} threads; {args.png_size} px PNGs"
        )

        with common.stopwatch() as t:
            predictor = Predictor(bundle)
        load_s = t["s"]
        eager_model = predictor.model
        predictor.predict_file(files[-1])  # warm-up
        compiled_model, compile_s = None, math.nan
        if not args.no_compile:
            compiled_model = torch.compile(eager_model)
            predictor.model = compiled_model
            with common.stopwatch() as t:
                predictor.predict_file(files[-1])  # compiles
            compile_s = t["s"]

        # Interleaved per image, so a change in machine load hits every variant alike.
        reload: list[float] = []
        eager: list[float] = []
        compiled: list[float] = []
        for i, f in enumerate(files[: max(args.images, args.reloads)]):
            if i < args.reloads:  # the original: bundle read, network rebuilt, then predict
                reload += latencies(lambda f: Predictor(bundle).predict_file(f), [f])
            if i < args.images:
                predictor.model = eager_model
                eager += latencies(predictor.predict_file, [f])
                if compiled_model is not None:
                    predictor.model = compiled_model
                    compiled += latencies(predictor.predict_file, [f])
        predictor.model = eager_model

        folder = tmp / "folder"
        folder.mkdir()
        for f in files[: args.images]:
            (folder / f.name).write_bytes(f.read_bytes())
        with common.stopwatch() as t:
            result = predict_folder(predictor, folder, tmp / "pred", progress=False)
        folder_ips = len(result.predictions) / t["s"]

    r_med, e_med, c_med = common.median(reload), common.median(eager), common.median(compiled)
    payback = compile_s / (e_med - c_med) if c_med < e_med else math.inf
    print(f"\nbundle load (read + rebuild): {load_s:.2f} s; model build alone {build_s:.2f} s")
    print("per-image latency, s (median):")
    print(f"  reloaded per call (original): {r_med:7.2f}   ({len(reload)} calls)")
    print(
        f"  loaded once, eager:           {e_med:7.2f}   ({len(eager)} images; "
        f"{common.ratio(r_med, e_med):.2f}x faster)"
    )
    if compiled:
        print(
            f"  loaded once, torch.compile:   {c_med:7.2f}   ({common.ratio(e_med, c_med):.2f}x vs eager; "
            f"compile + first call {compile_s:.1f} s, paid back after {payback:.0f} images)"
        )
    else:
        print("  loaded once, torch.compile:   skipped (--no-compile)")
    print(
        f"predict_folder (masks + overlays written): {folder_ips:.3f} images/s ({1 / folder_ips:.2f} s/image)"
    )
    figures.update(
        reload_latency_s=reload,
        eager_latency_s=eager,
        compiled_latency_s=compiled,
        bundle_load_s=load_s,
        build_s=build_s,
        compile_first_call_s=compile_s,
        compile_payback_images=payback,
        folder_images_per_s=folder_ips,
        loaded_once_speedup=common.ratio(r_med, e_med),
        compile_speedup=common.ratio(e_med, c_med),
    )
    ratio_text = (
        f"loaded once {common.ratio(r_med, e_med):.2f}x faster per image than reloaded per call "
        f"({e_med:.2f} vs {r_med:.2f} s); torch.compile "
        + (
            f"{common.ratio(e_med, c_med):.2f}x vs eager ({c_med:.2f} s, compile {compile_s:.0f} s)"
            if compiled
            else "skipped"
        )
        + f"; folder {folder_ips:.2f} images/s"
    )
    return common.finish(NAME, COMPARED, figures, ratio_text, machine, args.out)


if __name__ == "__main__":
    sys.exit(common.main_guard(main))
