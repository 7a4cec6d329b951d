"""Benchmark: how the joint loss's two terms share the gradient of the shared encoder.

The joint network trains on ``seg_weight * seg + cls_weight * cls`` and both terms reach the encoder.
AdamW normalises each parameter's step, so on a shared parameter what counts is each term's share of its
gradient: where the classification term's gradient is many times the segmentation term's, the encoder
follows the classifier and the segmentation's signal is a small part of it. Found in session 21 (real
BUSI, ``spaces/busi_cpu_degrade.yaml``, medians of 3 fresh networks): without CBAM the classifier starts
with logits 2.8x larger (std 3.8 vs 1.4; ResNet-18's last-stage features are not damped by CBAM's two
sigmoid gates) and its gradient on the encoder is 20x the segmentation's, against 3x with CBAM; the run
without CBAM lost about 20 epochs of segmentation (docs/results.md section 2).

For a spec and variants of it (``--variant LABEL KEY=VALUE ...``), on one batch of development images (a
few of each class, never the hold-out test part), with the spec's own joint loss (class weights from the
development images' counts), in fp32 and train mode: for freshly initialised networks over ``--seeds``
and for trained fold models (``--bundles``, each at the epoch it was saved), the classifier's logit std,
each loss term and the gradient norms of the two weighted terms over the encoder and over every
parameter. Without ``--data`` the images are the built-in synthetic set at ``--size``.

    python -m benchmarks.grad_balance --variant cbam model.attention=cbam --variant none model.attention=none
    python -m benchmarks.grad_balance --spec spaces/busi_cpu_degrade.yaml --data ../shared/data/busi \\
        --variant cbam model.attention=cbam --variant none model.attention=none \\
        --bundles runs/train/nocbam62/fold0_best.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common

NAME = "grad_balance"
COMPARED = (
    "gradient norm of the joint loss's weighted classification term vs its weighted segmentation term on "
    "the shared encoder (and on every parameter), per variant of a spec, fresh networks over seeds and "
    "trained fold models"
)
DEFAULT_SPEC = common.ROOT / "spaces" / "busi_cpu_degrade.yaml"


def term_losses(loss_cfg: Any, class_weights: Any) -> tuple[Any, Any]:
    """The spec's joint loss split in its two weighted terms: ``seg_weight * seg`` (with its presence
    and deep-supervision parts) and ``cls_weight * cls`` (with latent-augmentation samples)."""
    from model_zoo.losses import build_loss

    seg_only = build_loss(dataclasses.replace(loss_cfg, cls_weight=0.0), class_weights)
    cls_only = build_loss(dataclasses.replace(loss_cfg, seg_weight=0.0), class_weights)
    return seg_only, cls_only


def grad_norm(loss: Any, params: Sequence[Any]) -> float:
    """L2 norm of ``d loss / d params`` (parameters the loss does not reach count as zero)."""
    import torch

    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return math.sqrt(sum(float(g.float().pow(2).sum()) for g in grads if g is not None))


def measure(model: Any, losses: tuple[Any, Any], x: Any, masks: Any, labels: Any) -> dict[str, float]:
    """One forward in train mode; the two terms' values and gradient norms (encoder, all), their ratio."""
    model.train()
    out = model(x, labels=labels)
    seg_term, seg_parts = losses[0](out, masks, labels)
    cls_term, cls_parts = losses[1](out, masks, labels)
    encoder = [p for n, p in model.named_parameters() if n.startswith("encoder.") and p.requires_grad]
    every = [p for p in model.parameters() if p.requires_grad]
    row = {
        "logit_std": float(out.cls_logits.detach().float().std()),
        "seg": seg_parts["seg"],
        "cls": cls_parts["cls"],
        "encoder_seg": grad_norm(seg_term, encoder),
        "encoder_cls": grad_norm(cls_term, encoder),
        "all_seg": grad_norm(seg_term, every),
        "all_cls": grad_norm(cls_term, every),
    }
    row["encoder_ratio"] = common.ratio(row["encoder_cls"], row["encoder_seg"])
    return row


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| variant | network | logit std | seg loss | cls loss | encoder: seg grad | cls grad | cls / seg "
        "| all: seg grad | cls grad |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['network']} | {r['logit_std']:.2f} | {r['seg']:.3f} | {r['cls']:.3f} "
            f"| {r['encoder_seg']:.3f} | {r['encoder_cls']:.3f} | {r['encoder_ratio']:.1f} "
            f"| {r['all_seg']:.3f} | {r['all_cls']:.3f} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--spec", type=Path, default=DEFAULT_SPEC, help="the spec whose model and loss are measured"
    )
    p.add_argument(
        "--data", type=Path, default=None, help="a BUSI-format folder (default: the synthetic set)"
    )
    p.add_argument("--set", nargs="+", default=[], help="KEY=VALUE overrides of the spec (every variant)")
    p.add_argument(
        "--variant",
        nargs="+",
        action="append",
        metavar=("LABEL", "KEY=VALUE"),
        help="a labelled variant: LABEL then its KEY=VALUE overrides (repeatable; default: the spec as is)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fresh networks per variant")
    p.add_argument("--bundles", type=Path, nargs="*", default=[], help="trained model bundles to measure too")
    p.add_argument("--per-class", type=int, default=6, help="development images of each class in the batch")
    p.add_argument("--size", type=int, default=128, help="image size of the synthetic set (without --data)")
    p.add_argument("--n-per-class", type=int, nargs=3, default=[12, 12, 12], help="synthetic set size")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    return p.parse_args(argv)


def load_spec_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The spec file with ``--set``, its data pointed at ``--data`` or at the synthetic set."""
    from trainables.spec import load_spec, set_data_root, spec_to_dict

    d = spec_to_dict(load_spec(args.spec, args.set))
    if args.data is not None:
        set_data_root(d, args.data)
    else:
        d["data"] = {**d.get("data", {}), "root": None, "image_size": args.size}
        d["data"]["synthetic"] = {"n_per_class": list(args.n_per_class), "size": args.size}
    return d


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import numpy as np
    import torch

    from analysis.augment_preview import preview_rows
    from model_zoo.build import build_model
    from model_zoo.bundle import load_bundle
    from model_zoo.losses import class_weights_from_counts
    from trainables.data.splits import split_indices
    from trainables.loop import load_batch
    from trainables.spec import apply_overrides, spec_from_dict

    machine = common.banner(NAME, COMPARED)
    base = load_spec_dict(args)
    variants = [(v[0], v[1:]) for v in args.variant] if args.variant else [("spec", [])]
    specs = {label: spec_from_dict(apply_overrides(base, sets)) for label, sets in variants}
    first = next(iter(specs.values()))
    dataset, splits = common.load_data(first)
    dev = split_indices(splits, dataset).dev
    rows_idx = preview_rows(dataset.labels, dev, args.per_class, seed=0)
    x, masks, labels = load_batch(
        dataset.images, dataset.masks, dataset.labels, rows_idx, torch.device("cpu")
    )
    counts = np.bincount(dataset.labels[dev], minlength=len(dataset.class_names))
    shown = np.bincount(labels.numpy(), minlength=len(counts))
    print(
        f"{len(rows_idx)} development images ("
        + ", ".join(f"{n} {c}" for c, n in zip(dataset.class_names, shown, strict=True))
        + f") at {dataset.image_size} px; fp32, train mode"
    )

    def losses_of(spec: Any) -> tuple[Any, Any]:
        weights = class_weights_from_counts(counts) if spec.train.loss.cls == "weighted_ce" else None
        return term_losses(spec.train.loss, weights)

    def measured(label: str, network: str, model: Any, losses: tuple[Any, Any]) -> dict[str, Any]:
        model.set_class_counts(torch.as_tensor(counts))
        return {"variant": label, "network": network} | measure(model, losses, x, masks, labels)

    rows: list[dict[str, Any]] = []
    for label, spec in specs.items():
        losses = losses_of(spec)
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = build_model(spec.model, class_names=dataset.class_names)
            rows.append(measured(label, f"fresh, seed {seed}", model, losses))
    for path in args.bundles:  # its own network; the loss of the spec as given (before any variant)
        model, meta = load_bundle(path)
        network = f"{path.parent.name}/{path.name}, epoch {meta.get('epoch', '?')}"
        rows.append(measured("trained", network, model, losses_of(spec_from_dict(base))))
    print(format_rows(rows))
    summary = []
    for label in specs:
        own = [r for r in rows if r["variant"] == label]
        fresh, logit = [r["encoder_ratio"] for r in own], [r["logit_std"] for r in own]
        if fresh:
            summary.append(
                f"{label}: cls/seg gradient on the encoder {common.median(fresh):.1f}x, logit std "
                f"{common.median(logit):.2f} (fresh, median of {len(fresh)} seeds)"
            )
    ratio = "; ".join(summary) or "bundles only"
    figures = {"spec": str(args.spec), "data": str(args.data or "synthetic"), "rows": rows}
    return common.finish(NAME, COMPARED, figures, ratio, machine, args.out)


if __name__ == "__main__":
    sys.exit(common.main_guard(main))
