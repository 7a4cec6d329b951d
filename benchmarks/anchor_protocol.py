"""Benchmark: a ``launch.py train`` run's CV figures under the published anchor's protocol.

The anchor (Aumente-Maestro et al. 2025, ``busi_curated/README.md``) scores on a curated BUSI from which
every member of a duplicate group was removed; this project's CV scores every development image (with
duplicate groups kept inside one fold). To compare like with like, each fold's saved model
(``fold{k}_best.safetensors``, the fold at its own best epoch) predicts its own validation images, gated
as in validation (``train.lesion_gate``), and the per-image figures are summarised three times: on all of
them, on the images the curation kept, and on the duplicate-group members it removed. Same models, same
predictions: only the images counted change. Per subset: lesion Dice (per image on lesion images, the
mean over folds and its std), Dice per class, accuracy, macro-F1 and weighted F1 (the anchor's figure)
over the pooled out-of-fold predictions, and the Dice as the anchor's released code averages it
(``anchor_dice``): over every image, a normal image scoring 1 when nothing is drawn on it and 0 otherwise
(its ``metrics.dice_score``, averaged per fold by ``miscellany.save_segmentation_results``), so that its
headline 0.751 includes the normal images while its per-class figures (0.773, 0.711) do not.

    python -m benchmarks.anchor_protocol --run runs/train/busi_cpu_ds --data ../shared/data

``--data`` is the folder holding ``busi/`` and ``busi_curated/`` (or ``$BUS_REAL_DATA``). Writes
``benchmarks/results/anchor_protocol.json`` and ends with ``RESULT anchor_protocol: ...``; skips cleanly
without a run or the data. ``--images training`` scores each fold's model on its own training images
instead (unaugmented; ``anchor_protocol_training.json``): how well the models fit what they learned from,
the other side of the generalisation gap.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import banner, final, finish, main_guard
from benchmarks.dedup_busi import read_curation

NAME = "anchor_protocol"
COMPARED = "a train run's CV figures on all validation images vs the curation's kept ones (anchor protocol)"
SUBSETS = ("all", "kept", "removed")
IMAGES = ("validation", "training")


def out_of_fold_rows(
    run: Path, data_root: Path | None = None, images: str = "validation"
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per validation image of every fold (``images="training"``: per training image of every fold):
    ``fold``, ``path``, ``label``, ``pred`` (class index), ``dice`` (NaN on normal images) and ``drawn``
    (pixels of the gated lesion mask), from that fold's saved model; and the class names."""
    import torch

    from analysis.predict import predict_arrays
    from analysis.refit import choose, load_data
    from model_zoo import load_bundle
    from trainables.metrics import lesion_mask, segmentation_metrics
    from trainables.train import fold_bundle_path

    chosen = choose(run, data_root=None if data_root is None else str(data_root))
    dataset, split, _ = load_data(chosen)
    spec = chosen.spec
    names = list(dataset.class_names)
    labels = np.asarray(dataset.labels)
    rows: list[dict[str, Any]] = []
    if images not in IMAGES:
        raise ValueError(f"images={images!r}: one of {IMAGES}")
    for k, (train, val) in enumerate(split.folds):
        scored = train if images == "training" else val
        bundle = fold_bundle_path(run, k)
        if not bundle.is_file():
            raise FileNotFoundError(f"{bundle} is missing (a train run saves each fold's best model)")
        model, _ = load_bundle(bundle, torch.device("cpu"))
        seg, probs = predict_arrays(
            [model], dataset.images[scored], torch.device("cpu"), lesion_gate=spec.train.lesion_gate
        )
        gt = dataset.masks[scored] > 0
        pred = np.asarray(lesion_mask(seg))
        per_image = segmentation_metrics(pred, gt, min_area=spec.train.min_area)
        drawn = pred.sum(axis=(1, 2))
        dice = np.asarray(per_image["per_image"]["dice"], dtype=float)
        for i, j in enumerate(scored):
            rows.append(
                {
                    "fold": k,
                    "path": str(dataset.paths[j]),
                    "label": int(labels[j]),
                    "pred": int(probs[i].argmax()),
                    "dice": float(dice[i]),
                    "drawn": int(drawn[i]),
                }
            )
    return rows, names


def subset_figures(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, float]:
    """Dice (mean ± std over folds of the per-image mean on lesion images), Dice per class, accuracy,
    macro-F1 and weighted F1 of pooled ``rows`` (``fold``, ``label``, ``pred``, ``dice``, ``drawn``), and
    ``anchor_dice``: the mean over folds of the per-image mean over every image, a normal image scoring 1
    when no pixel is drawn on it and 0 otherwise (the anchor's released code), and ``normal_empty``, the
    share of normal images with no pixel drawn."""
    from sklearn.metrics import accuracy_score, f1_score

    if not rows:
        return {"n": 0}
    fold = np.array([r["fold"] for r in rows])
    label = np.array([r["label"] for r in rows])
    pred = np.array([r["pred"] for r in rows])
    dice = np.array([r["dice"] for r in rows], dtype=float)
    lesion = ~np.isnan(dice)
    per_fold = [float(dice[lesion & (fold == k)].mean()) for k in np.unique(fold[lesion])]
    empty = np.array([r["drawn"] == 0 for r in rows], dtype=float)
    every_image = np.where(lesion, dice, empty)
    anchor_per_fold = [float(every_image[fold == k].mean()) for k in np.unique(fold)]
    out: dict[str, float] = {
        "n": len(rows),
        "n_lesion": int(lesion.sum()),
        "dice": float(np.mean(per_fold)) if per_fold else float("nan"),
        "dice_std": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else float("nan"),
        "anchor_dice": float(np.mean(anchor_per_fold)),
        "normal_empty": float(empty[~lesion].mean()) if (~lesion).any() else float("nan"),
    }
    for c, name in enumerate(names):
        sel = lesion & (label == c)
        if sel.any():
            out[f"dice_{name}"] = float(dice[sel].mean())
    classes = list(range(len(names)))
    out["acc"] = float(accuracy_score(label, pred))
    out["macro_f1"] = float(f1_score(label, pred, labels=classes, average="macro", zero_division=0))
    out["weighted_f1"] = float(f1_score(label, pred, labels=classes, average="weighted", zero_division=0))
    return out


def by_subset(
    rows: Sequence[Mapping[str, Any]], kept: set[str], names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """:func:`subset_figures` on all rows, on those whose ``path`` (``class/image``) the curation kept,
    and on the rest (members of duplicate groups, which it removed)."""
    parts: dict[bool, list[Mapping[str, Any]]] = {True: [], False: []}
    for r in rows:
        parts[Path(r["path"]).as_posix() in kept].append(r)
    return {
        s: subset_figures(part, names)
        for s, part in zip(SUBSETS, (rows, parts[True], parts[False]), strict=True)
    }


def format_table(figures: Mapping[str, Mapping[str, float]], names: Sequence[str]) -> str:
    """A Markdown table, one row per subset."""
    lesion_names = [n for n in names if n != "normal"]
    head = [
        "images",
        "n (lesion)",
        "Dice",
        *(f"Dice {n}" for n in lesion_names),
        "Dice, every image (anchor's code)",
        "acc",
        "macro-F1",
        "wF1",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for subset, f in figures.items():
        if not f.get("n"):
            continue
        cells = [
            subset,
            f"{f['n']} ({f['n_lesion']})",
            f"{f['dice']:.3f} ± {f['dice_std']:.3f}",
            *(f"{f.get(f'dice_{n}', float('nan')):.3f}" for n in lesion_names),
            f"{f['anchor_dice']:.3f}",
            f"{f['acc']:.3f}",
            f"{f['macro_f1']:.3f}",
            f"{f['weighted_f1']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="a launch.py train run folder (with fold*_best.safetensors)")
    parser.add_argument("--data", type=Path, default=os.environ.get("BUS_REAL_DATA"))
    parser.add_argument("--busi", default="busi", help="the dataset folder under --data (default busi)")
    parser.add_argument(
        "--images", choices=IMAGES, default="validation", help="each fold's validation or training images"
    )
    args = parser.parse_args(argv)
    if args.run is None or args.data is None:
        final(NAME, "skipped (pass --run RUN_DIR and --data, or set BUS_REAL_DATA)")
        return 0
    curated = args.data / "busi_curated"
    if not (curated / "kept.csv").is_file() or not (args.data / args.busi).is_dir():
        final(NAME, f"skipped (no {args.busi}/ or busi_curated/kept.csv under {args.data})")
        return 0
    machine = banner(NAME, COMPARED)
    kept, _ = read_curation(curated)
    rows, names = out_of_fold_rows(args.run, args.data / args.busi, args.images)
    print(f"each fold's model on its {args.images} images")
    figures = by_subset(rows, kept, names)
    print(format_table(figures, names))
    a, k = figures["all"], figures["kept"]
    ratio = (
        f"Dice {a['dice']:.3f} on all {a['n_lesion']} lesion images, {k['dice']:.3f} on the "
        f"{k['n_lesion']} the curation kept ({k['dice'] - a['dice']:+.3f}); over every kept image as the "
        f"anchor's code averages it {k['anchor_dice']:.3f}; weighted F1 "
        f"{a['weighted_f1']:.3f} -> {k['weighted_f1']:.3f}"
    )
    flat = {f"{s}/{key}": v for s, f in figures.items() for key, v in f.items()}
    name = NAME if args.images == "validation" else f"{NAME}_training"
    return finish(name, COMPARED, flat | {"run": args.run.name, "images": args.images}, ratio, machine)


if __name__ == "__main__":
    raise SystemExit(main_guard(main))
