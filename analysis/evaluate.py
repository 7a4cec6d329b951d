"""One evaluation of a model on labelled images: every metric with a 95% bootstrap confidence interval,
the confusion matrix, ROC curves, a gallery of the best and worst cases, a markdown report, and a log.
``refit`` runs it on the held-out test set, ``evaluate`` on any labelled folder (external validation).

Metrics are the validation metrics of the loop (:mod:`trainables.metrics`, same definitions).
Segmentation is scored at two resolutions. ``dice``, ``iou``, ``hd95``, ``nsd``, ``normal_fp_rate`` and
``dice_<class>`` (the Dice of one class's lesion images) are at the working size the model sees, in
working pixels: the figures the search optimised. ``dice_orig``, ``iou_orig``, ``hd95_orig``, ``nsd_orig``
and ``dice_<class>_orig`` are at each image's original size: the working-size lesion probabilities are
mapped back with :func:`trainables.data.resize.undo_resize` and thresholded there (the mask ``predict``
writes) and compared with the ground truth re-read at full size, so HD95 is in original pixels and the
NSD tolerance ``tau_px_original`` is too; these compare across models of different working sizes.

The interval is a cluster bootstrap: the duplicate groups of the audit (near copies, consecutive frames
of one lesion) are drawn with replacement (``n_boot`` times, seeded), every member of a drawn group
enters the resample, and each metric is recomputed on it; the bounds are the 2.5th and 97.5th
percentiles (resamples where a metric is undefined, e.g. AUC without both classes, are left out for that
metric). Resampling images instead would count a near copy as independent evidence and narrow the
intervals. Without groups every image is its own group (the plain bootstrap).

The test set is not for choosing anything. Each evaluation is appended to ``test_evaluations.jsonl``
in the experiment folder, keyed by a digest of the data fingerprint and the test image paths; a second
evaluation of the same test set prints a warning naming the earlier ones.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data.audit import default_workers
from trainables.data.errors import DataError, listing
from trainables.data.imageio import centre_crop_mask, read_mask_file
from trainables.data.resize import ResizeInfo, undo_resize
from trainables.data.scan import scan_folder
from trainables.metrics import classification_metrics, lesion_mask, per_class_dice, segmentation_metrics

LOG_FILE = "test_evaluations.jsonl"
SEG_METRICS = ("dice", "iou", "hd95", "nsd")
ORIG = "_orig"  # suffix of the metrics at the original image size
GALLERY_N = 4


class OriginalMasks(Sequence[np.ndarray]):
    """Ground-truth masks of dataset images at their original ``(w, h)`` sizes, re-read from the data
    folder on access (the cache keeps only working-size masks): the OR of an image's mask files, a
    larger mask centre-cropped as the cache did (:func:`centre_crop_mask`). Only masks are decoded: the
    cache has already checked the images against the data fingerprint."""

    def __init__(
        self, root: str | Path, paths: Sequence[str], classes: Sequence[str], sizes: Sequence[Sequence[int]]
    ) -> None:
        scan = scan_folder(root, classes, "empty", strict=False)
        records = {r.path: r for r in scan.records}
        missing = [p for p in paths if p not in records]
        if missing:
            raise DataError(f"{root}: {len(missing)} image(s) of the dataset are gone: {listing(missing, 5)}")
        self.root = Path(scan.root)
        self._masks = [records[p].mask_paths for p in paths]
        self._sizes = [(int(w), int(h)) for w, h in sizes]

    def __len__(self) -> int:
        return len(self._masks)

    def __getitem__(self, index: int) -> np.ndarray:
        width, height = self._sizes[index]
        mask = np.zeros((height, width), dtype=bool)
        for rel in self._masks[index]:
            part = read_mask_file(self.root / rel)
            fitted = part if part.shape == mask.shape else centre_crop_mask(part, width, height)
            if fitted is None:
                raise DataError(
                    f"{self.root / rel}: {part.shape[1]}x{part.shape[0]} mask does not fit its "
                    f"{width}x{height} image",
                    path=self.root / rel,
                )
            mask |= fitted
        return mask

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))


@dataclass
class HeldOutSet:
    """Working-size arrays of the evaluated images, what is needed to show them, their duplicate groups
    (for the cluster bootstrap; None: every image alone) and, for the original-size metrics, how each
    image was resized and its full-size ground truth (None: those metrics are left out)."""

    images: np.ndarray  # uint8 [N,S,S]
    masks: np.ndarray  # bool [N,S,S]
    labels: np.ndarray  # int64 [N]
    paths: list[str]
    class_names: tuple[str, ...]
    groups: np.ndarray | None = None  # int [N]
    resize_infos: Sequence[ResizeInfo] | None = None
    original_masks: Sequence[np.ndarray] | None = None  # bool [H_i, W_i] each


def heldout_from_dataset(dataset: Any, indices: Sequence[int] | np.ndarray) -> HeldOutSet:
    """Rows ``indices`` of a cached :class:`~trainables.data.cache.BUSDataset` as a :class:`HeldOutSet`,
    with its duplicate groups and lazily re-read original-size masks."""
    idx = np.asarray(indices, dtype=np.int64)
    paths = [dataset.paths[i] for i in idx.tolist()]
    root = (dataset.audit or {}).get("root") or dataset.root
    return HeldOutSet(
        images=np.asarray(dataset.images[idx]),
        masks=np.asarray(dataset.masks[idx]) > 0,
        labels=np.asarray(dataset.labels[idx], dtype=np.int64),
        paths=paths,
        class_names=tuple(dataset.class_names),
        groups=np.asarray(dataset.groups[idx], dtype=np.int64),
        resize_infos=[dataset.resize_info(i) for i in idx.tolist()],
        original_masks=OriginalMasks(root, paths, dataset.class_names, dataset.orig_sizes[idx])
        if root
        else None,
    )


def heldout_digest(fingerprint: str, paths: Sequence[str]) -> str:
    """Identity of a test set: the data fingerprint and its sorted image paths."""
    payload = json.dumps({"fingerprint": fingerprint, "test": sorted(paths)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------------------- metrics


def _scalars(d: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def point_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    tau: float,
    min_area: int,
) -> tuple[dict[str, float], dict[str, Any], list[list[int]]]:
    """Scalar metrics, the per-image segmentation values, and the confusion matrix."""
    seg = segmentation_metrics(pred, gt, tau=tau, min_area=min_area)
    cls = classification_metrics(probs, labels, class_names)
    metrics = {**_scalars(seg), **_scalars(cls)}
    for k in ("n_lesion", "n_normal"):
        metrics.pop(k, None)
    return metrics, seg["per_image"], cls["confusion"]


def original_size_metrics(
    seg_prob: np.ndarray, test: HeldOutSet, tau: float, min_area: int, progress: bool = False
) -> dict[str, np.ndarray]:
    """Per-image Dice, IoU, HD95 and NSD at each image's original size (NaN on images without lesion)
    and ``area_px``, the predicted lesion area there.

    Each working-size probability map ``seg_prob[i]`` is mapped back with :func:`undo_resize` and
    decided by :func:`lesion_mask`, exactly the mask ``predict`` writes for the image, then scored against
    ``test.original_masks[i]``; ``tau`` is in original pixels. Images are read in a thread pool.
    """
    from tqdm import tqdm

    if test.resize_infos is None or test.original_masks is None:
        raise ValueError("original-size metrics need the resize info and original masks of every image")
    infos, originals = test.resize_infos, test.original_masks
    if not len(infos) == len(originals) == len(seg_prob):
        raise ValueError(f"{len(seg_prob)} predictions, {len(infos)} resize infos, {len(originals)} masks")
    importlib.import_module("monai.metrics.utils")  # once, before the worker threads use it

    def one(i: int) -> list[float]:
        info, gt = infos[i], np.asarray(originals[i], dtype=bool)
        if gt.shape != (info.orig_h, info.orig_w):
            raise DataError(
                f"{test.paths[i]}: ground truth is {gt.shape[1]}x{gt.shape[0]} but the image was "
                f"{info.orig_w}x{info.orig_h} when resized"
            )
        pred = lesion_mask(undo_resize(np.asarray(seg_prob[i], dtype=np.float32), info))
        window_pred, window_gt = _crop_to_union(pred, gt)
        seg = segmentation_metrics(window_pred[None], window_gt[None], tau=tau, min_area=min_area)
        return [seg["per_image"][k][0] for k in SEG_METRICS] + [float(pred.sum())]

    names = [*SEG_METRICS, "area_px"]
    rows = np.full((len(seg_prob), len(names)), np.nan)
    with ThreadPoolExecutor(max_workers=default_workers()) as pool:
        results = pool.map(one, range(len(seg_prob)))
        bar = tqdm(
            results,
            total=len(seg_prob),
            desc="original-size metrics",
            unit="img",
            disable=not progress,
            file=sys.stderr,
            leave=False,
        )
        for i, values in enumerate(bar):
            rows[i] = values
    return {k: rows[:, j] for j, k in enumerate(names)}


def _crop_to_union(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union plus one background pixel (fast on large
    images). The metrics do not change: overlaps, surfaces and distances are the same in the window.
    When either mask is empty the masks stay whole (an empty prediction scores the image diagonal)."""
    if not pred.any() or not gt.any():
        return pred, gt
    union = pred | gt
    rows, cols = np.flatnonzero(union.any(1)), np.flatnonzero(union.any(0))
    window = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    return pred[window], gt[window]


def cluster_sampler(groups: np.ndarray) -> tuple[Callable[[np.random.Generator], np.ndarray], int]:
    """A draw of one cluster-bootstrap resample (indices into ``groups``: as many group ids as there are
    groups, with replacement, each bringing all its members) and the number of groups."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse)
    k = len(counts)
    if (counts == 1).all():  # every image alone: the plain bootstrap
        return (lambda rng: order[rng.integers(0, k, k)]), k
    members = np.split(order, np.cumsum(counts)[:-1])
    return (lambda rng: np.concatenate([members[g] for g in rng.integers(0, k, k)])), k


def bootstrap_ci(
    per_image: Mapping[str, Sequence[float]],
    fp: np.ndarray,
    normal: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of every metric over ``n_boot`` cluster-bootstrap resamples.

    ``groups`` are the images' duplicate-group ids (None: each image alone). Means of ``per_image``
    series are recomputed from the values (NaN, e.g. segmentation on normal images, is skipped as in the
    point estimate), ``normal_fp_rate`` and ``normal_specificity`` from the per-image false-positive
    flags ``fp`` of the ``normal`` images, classification metrics by :func:`classification_metrics` on the
    resample.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    draw, _ = cluster_sampler(np.arange(n) if groups is None else groups)
    per = {k: np.asarray(v, dtype=np.float64) for k, v in per_image.items()}
    samples: dict[str, list[float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_boot):
            idx = draw(rng)
            for k, v in per.items():
                vals = v[idx]
                vals = vals[~np.isnan(vals)]
                samples.setdefault(k, []).append(float(vals.mean()) if vals.size else math.nan)
            sel = normal[idx]
            fp_rate = float(fp[idx][sel].mean()) if sel.any() else math.nan
            samples.setdefault("normal_fp_rate", []).append(fp_rate)
            samples.setdefault("normal_specificity", []).append(1.0 - fp_rate)
            cls = _scalars(classification_metrics(probs[idx], labels[idx], class_names))
            for k, v in cls.items():
                samples.setdefault(k, []).append(v)
    out = {}
    for k, values in samples.items():
        arr = np.asarray(values)
        arr = arr[~np.isnan(arr)]
        out[k] = (
            (float(np.percentile(arr, 2.5)), float(np.percentile(arr, 97.5)))
            if arr.size
            else (math.nan, math.nan)
        )
    return out


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_nan_to_none(v) for v in x]
    return x


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def evaluate(
    test: HeldOutSet,
    seg_prob: np.ndarray,
    probs: np.ndarray,
    tau: float = 2.0,
    min_area: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
    tau_original: float | None = None,
    progress: bool = False,
    lesion_gate: str = "none",
) -> dict[str, Any]:
    """The test report: ``metrics`` (value + ``ci95``), ``confusion``, ``per_image``, ``bootstrap``,
    ``settings``. ``tau`` is in working pixels, ``tau_original`` (default: ``tau``) in original pixels;
    the ``*_orig`` metrics are computed when ``test`` carries original masks. ``lesion_gate`` is the
    rule ``seg_prob`` was already gated by (:func:`analysis.predict.predict_arrays`), for the record."""
    pred = lesion_mask(seg_prob)
    gt = test.masks.astype(bool)
    metrics, per_image, confusion = point_metrics(
        pred, gt, probs, test.labels, test.class_names, tau, min_area
    )
    tau_o = float(tau if tau_original is None else tau_original)
    series = {k: np.asarray(v, dtype=np.float64) for k, v in per_image.items()}
    series |= per_class_dice(series["dice"], test.labels, test.class_names)
    if test.original_masks is not None:
        orig = original_size_metrics(seg_prob, test, tau_o, min_area, progress)
        series |= {k + ORIG: orig[k] for k in SEG_METRICS}
        series |= per_class_dice(orig["dice"], test.labels, test.class_names, ORIG)
    seg_names = [*SEG_METRICS, "normal_fp_rate", "normal_specificity"]
    ordered = {k: metrics[k] for k in seg_names if k in metrics}
    ordered |= {k: _nanmean(v) for k, v in series.items() if k not in seg_names}
    ordered |= {k: v for k, v in metrics.items() if k not in ordered}
    normal = gt.sum((1, 2)) == 0
    area = pred.sum((1, 2))
    fp = area >= max(int(min_area), 1)
    groups = None if test.groups is None else np.asarray(test.groups)
    ci = bootstrap_ci(series, fp, normal, probs, test.labels, test.class_names, n_boot, seed, groups)
    _, n_groups = cluster_sampler(np.arange(len(test.paths)) if groups is None else groups)
    rows = []
    for i, path in enumerate(test.paths):
        row = {
            "path": path,
            "label": test.class_names[int(test.labels[i])],
            "predicted": test.class_names[int(np.argmax(probs[i]))],
            "probs": [float(p) for p in probs[i]],
            "lesion_area_px": int(area[i]),
            **{k: float(series[k][i]) for k in SEG_METRICS},
            "normal_false_positive": bool(fp[i]) if normal[i] else None,
        }
        if test.original_masks is not None:
            row |= {k + ORIG: float(series[k + ORIG][i]) for k in SEG_METRICS}
            row["lesion_area_px_orig"] = int(orig["area_px"][i])
            row["original_size"] = [test.resize_infos[i].orig_w, test.resize_infos[i].orig_h]
        if groups is not None:
            row["group"] = int(groups[i])
        rows.append(row)
    size = int(test.images.shape[-1])
    report = {
        "n_images": len(test.paths),
        "class_names": list(test.class_names),
        "n_per_class": np.bincount(test.labels, minlength=len(test.class_names)).tolist(),
        "metrics": {
            k: {"value": v, "ci95": list(ci.get(k, (math.nan, math.nan)))} for k, v in ordered.items()
        },
        "confusion": confusion,
        "bootstrap": {
            "n": n_boot,
            "seed": seed,
            "level": 0.95,
            "n_groups": n_groups,
            "method": "percentile; cluster bootstrap: duplicate groups drawn with replacement, "
            "all members of a drawn group kept",
        },
        "settings": {
            "tau_px": tau,
            "tau_px_original": tau_o,
            "min_area_px": min_area,
            "lesion_gate": lesion_gate,
            "working_size_px": size,
            "resolution": f"dice, iou, hd95, nsd, normal_fp_rate, dice_<class>: working size {size} px; "
            "*_orig: each image's original size (probabilities mapped back with undo_resize, then "
            "thresholded)",
        },
        "per_image": rows,
    }
    return _nan_to_none(report)


# ---------------------------------------------------------------------------------------- figures


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: Path) -> Path:
    """Counts and row percentages (share of each true class)."""
    plt = _pyplot()
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Test confusion matrix ({int(cm.sum())} images)")
    fig.colorbar(im, ax=ax, label="share of the true class")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_roc(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """One-vs-rest ROC curve per class with its AUC (classes absent from the test set are listed as such)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 6), layout="constrained")
    for c, name in enumerate(class_names):
        positive = labels == c
        if positive.all() or not positive.any():
            ax.plot([], [], label=f"{name}: undefined (no positives or no negatives)")
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, c])
        ax.plot(fpr, tpr, lw=2, label=f"{name} vs rest: AUC {roc_auc_score(positive, probs[:, c]):.3f}")
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"Test ROC curves ({len(labels)} images)")
    ax.legend(loc="lower right", fontsize=9)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def case_quality(report_rows: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> np.ndarray:
    """Per test image: mean of the segmentation quality (Dice on lesion images; on normal images 1 for
    no false positive, else 0) and the probability given to the true class."""
    out = []
    for row in report_rows:
        seg = row["dice"] if row["dice"] is not None else (0.0 if row["normal_false_positive"] else 1.0)
        p_true = row["probs"][list(class_names).index(row["label"])]
        out.append(0.5 * (seg + p_true))
    return np.asarray(out)


def plot_gallery(
    test: HeldOutSet, seg_prob: np.ndarray, report: Mapping[str, Any], path: Path, n: int = GALLERY_N
) -> Path:
    """The ``n`` best and ``n`` worst test cases by :func:`case_quality`: image, ground truth (green) and
    predicted (red) contours, and the class probabilities."""
    from analysis.predict import overlay

    plt = _pyplot()
    rows = report["per_image"]
    quality = case_quality(rows, test.class_names)
    order = np.argsort(-quality, kind="stable")
    n = min(n, max(1, len(order) // 2)) if len(order) > 1 else 1
    picks = [("best", i) for i in order[:n]] + [("worst", i) for i in order[::-1][:n]]
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 7.4), layout="constrained", squeeze=False)
    for ax, (kind, i) in zip(axes.flat, picks):
        ax.imshow(overlay(test.images[i], seg_prob[i], lesion_mask(seg_prob[i]), test.masks[i].astype(bool)))
        ax.set_axis_off()
        r = rows[i]
        probs = " ".join(f"{name[:3]} {p:.2f}" for name, p in zip(test.class_names, r["probs"]))
        dice = f"Dice {r['dice']:.2f}" if r["dice"] is not None else "no lesion"
        ax.set_title(
            f"{kind}: {Path(r['path']).name}\ntrue {r['label']}, pred {r['predicted']}, {dice}\n{probs}",
            fontsize=8,
            color="#2ca02c" if kind == "best" else "#d62728",
        )
    for ax in list(axes.flat)[len(picks) :]:
        ax.set_axis_off()
    fig.suptitle(
        "Best (top row) and worst (bottom row) test cases: green = ground truth, red = prediction",
        fontsize=10,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_figures(
    test: HeldOutSet, seg_prob: np.ndarray, probs: np.ndarray, report: Mapping[str, Any], out_dir: Path
) -> dict[str, Path]:
    """``confusion_matrix.png``, ``roc.png``, ``gallery.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        "confusion_matrix": plot_confusion(
            report["confusion"], test.class_names, out_dir / "confusion_matrix.png"
        ),
        "roc": plot_roc(probs, test.labels, test.class_names, out_dir / "roc.png"),
        "gallery": plot_gallery(test, seg_prob, report, out_dir / "gallery.png"),
    }


# ---------------------------------------------------------------------------------------------- log


def record_evaluation(log_dir: Path, digest: str, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Append ``entry`` to ``log_dir/test_evaluations.jsonl``; return the earlier evaluations of the
    same test set (and warn on stderr when there are any)."""
    log = log_dir / LOG_FILE
    earlier = []
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("test_digest") == digest:
                earlier.append(item)
    if earlier:
        when = ", ".join(f"{e.get('time')} ({e.get('kind')}, {e.get('out_dir')})" for e in earlier[-3:])
        print(
            f"warning: this test set (digest {digest}) has been evaluated {len(earlier)} time(s) "
            f"before: {when}. "
            "The test set is for one final measurement; choosing anything by it biases the estimate.",
            file=sys.stderr,
        )
    log_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "test_digest": digest,
        **entry,
        "previous_evaluations": len(earlier),
    }
    append_jsonl(log, record)
    return earlier


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line (NaN as null) to ``path``: one ``write``, so concurrent
    writers do not interleave within a line."""
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(_nan_to_none(dict(record)), sort_keys=True) + "\n")


def _show(x: float | None, name: str) -> str:
    return "-" if x is None else (f"{x:.1f}" if name.startswith("hd95") else f"{x:.3f}")


#: The figures ``evaluate`` prints (those present in the report).
HEADLINE = (
    "dice",
    "dice_orig",
    "hd95_orig",
    "nsd_orig",
    "normal_fp_rate",
    "auc",
    "macro_f1",
    "balanced_acc",
    "recall_malignant",
)


def _resolution_note(report: Mapping[str, Any]) -> str:
    s = report.get("settings") or {}
    note = f"segmentation at the working size {s.get('working_size_px', '?')} px (tau {s.get('tau_px')} px)"
    if any(name.endswith(ORIG) for name in report["metrics"]):
        note += f"; *_orig at the original image size (original px, tau {s.get('tau_px_original')} px)"
    if s.get("lesion_gate", "none") != "none":
        note += f"; lesion maps gated by the {s['lesion_gate']} (no lesion on images classified normal)"
    return note


def format_report(report: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """A short terminal summary: each metric (or only ``names``) with its 95% interval; precision per
    class is left out of the full list."""
    counts = ", ".join(f"{n} {c}" for c, n in zip(report["class_names"], report["n_per_class"]))
    groups = (report.get("bootstrap") or {}).get("n_groups")
    in_groups = f" in {groups} duplicate groups" if groups not in (None, report["n_images"]) else ""
    lines = [
        f"{report['n_images']} images ({counts}){in_groups}; metric, value, 95% CI",
        f"  ({_resolution_note(report)})",
    ]
    metrics = report["metrics"]
    chosen = [n for n in names if n in metrics] if names is not None else list(metrics)
    for name in chosen:
        if names is None and name.startswith("precision_"):
            continue
        m = metrics[name]
        lo, hi = m["ci95"]
        lines.append(f"  {name:<22} {_show(m['value'], name):>7}  [{_show(lo, name)}, {_show(hi, name)}]")
    return "\n".join(lines)


def _metric_table(report: Mapping[str, Any], names: Sequence[str]) -> list[str]:
    lines = ["| metric | value | 95% CI |", "|---|---|---|"]
    for name in names:
        m = report["metrics"][name]
        lo, hi = m["ci95"]
        lines.append(f"| {name} | {_show(m['value'], name)} | [{_show(lo, name)}, {_show(hi, name)}] |")
    return lines


def format_markdown(report: Mapping[str, Any], title: str) -> str:
    """The report as markdown: counts, warnings, metric tables per resolution, confusion matrix, figures
    (linked by file name: the markdown lies beside them)."""
    names = list(report["metrics"])
    seg_working = [
        n
        for n in names
        if n in (*SEG_METRICS, "normal_fp_rate", "normal_specificity")
        or (n.startswith("dice_") and not n.endswith(ORIG))
    ]
    seg_orig = [n for n in names if n.endswith(ORIG)]
    cls = [n for n in names if n not in seg_working and n not in seg_orig]
    s, b = report.get("settings") or {}, report.get("bootstrap") or {}
    counts = ", ".join(f"{n} {c}" for c, n in zip(report["class_names"], report["n_per_class"]))
    lines = [
        f"# {title}",
        "",
        f"{report['n_images']} images ({counts}) in {b.get('n_groups', '?')} duplicate groups. 95% "
        f"confidence intervals: cluster bootstrap over the duplicate groups ({b.get('n')} resamples, "
        f"seed {b.get('seed')}).",
        "",
    ]
    if report.get("warnings"):
        lines += ["## Warnings", "", *(f"- {w}" for w in report["warnings"]), ""]
    lines += ["## Classification", "", *_metric_table(report, cls), ""]
    if seg_orig:
        lines += [
            f"## Segmentation at the original image size (distances in original px, NSD tau "
            f"{s.get('tau_px_original')} px)",
            "",
            *_metric_table(report, seg_orig),
            "",
        ]
    lines += [
        f"## Segmentation at the working size ({s.get('working_size_px')} px; distances in working px, "
        f"NSD tau {s.get('tau_px')} px)",
        "",
        *_metric_table(report, seg_working),
        "",
    ]
    head = " | ".join(report["class_names"])
    lines += [
        "## Confusion matrix (rows: true class, columns: predicted)",
        "",
        f"| true \\ predicted | {head} |",
        "|---" * (len(report["class_names"]) + 1) + "|",
    ]
    for name, row in zip(report["class_names"], report["confusion"]):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "## Figures", ""]
    lines += [f"![{k}]({k}.png)" for k in ("confusion_matrix", "roc", "gallery")]
    return "\n".join(lines) + "\n"


def write_markdown(report: Mapping[str, Any], path: str | Path, title: str) -> Path:
    """:func:`format_markdown` of ``report`` written to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_markdown(report, title), encoding="utf-8")
    return path
