"""One evaluation on the held-out test set: every metric with a 95% bootstrap confidence interval,
the confusion matrix, ROC curves, a gallery of the best and worst cases, and a log of evaluations.

Metrics are the validation metrics of the loop (:mod:`trainables.metrics`, same definitions, working
resolution). The interval resamples test images with replacement (``n_boot`` times, seeded) and
recomputes each metric on the resample; the bounds are the 2.5th and 97.5th percentiles (resamples where
a metric is undefined, e.g. AUC without both classes, are left out for that metric).

The test set is not for choosing anything. Each evaluation is appended to ``test_evaluations.jsonl``
in the experiment folder, keyed by a digest of the data fingerprint and the test image paths; a second
evaluation of the same test set prints a warning naming the earlier ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainables.metrics import classification_metrics, segmentation_metrics

LOG_FILE = "test_evaluations.jsonl"
SEG_METRICS = ("dice", "iou", "hd95", "nsd")
GALLERY_N = 4


@dataclass
class HeldOutSet:
    """Working-size test arrays and what is needed to show them."""

    images: np.ndarray  # uint8 [N,S,S]
    masks: np.ndarray  # bool [N,S,S]
    labels: np.ndarray  # int64 [N]
    paths: list[str]
    class_names: tuple[str, ...]


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


def bootstrap_ci(
    per_image: Mapping[str, Sequence[float]],
    fp: np.ndarray,
    normal: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of every metric over ``n_boot`` resamples of the test images.

    Segmentation means are recomputed from the per-image values (NaN on normal images is skipped, as in
    the point estimate), ``normal_fp_rate`` from the per-image false-positive flags ``fp`` of the
    ``normal`` images, classification metrics by :func:`classification_metrics` on the resample.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    per = {k: np.asarray(v, dtype=np.float64) for k, v in per_image.items()}
    samples: dict[str, list[float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            for k, v in per.items():
                vals = v[idx]
                vals = vals[~np.isnan(vals)]
                samples.setdefault(k, []).append(float(vals.mean()) if vals.size else math.nan)
            sel = normal[idx]
            samples.setdefault("normal_fp_rate", []).append(
                float(fp[idx][sel].mean()) if sel.any() else math.nan
            )
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


def evaluate(
    test: HeldOutSet,
    seg_prob: np.ndarray,
    probs: np.ndarray,
    tau: float = 2.0,
    min_area: int = 10,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The test report: ``metrics`` (value + ``ci95``), ``confusion``, ``per_image``, ``bootstrap``."""
    pred = seg_prob > 0.5
    gt = test.masks.astype(bool)
    metrics, per_image, confusion = point_metrics(
        pred, gt, probs, test.labels, test.class_names, tau, min_area
    )
    normal = gt.sum((1, 2)) == 0
    area = pred.sum((1, 2))
    fp = area >= max(int(min_area), 1)
    ci = bootstrap_ci(per_image, fp, normal, probs, test.labels, test.class_names, n_boot, seed)
    rows = []
    for i, path in enumerate(test.paths):
        rows.append({
            "path": path,
            "label": test.class_names[int(test.labels[i])],
            "predicted": test.class_names[int(np.argmax(probs[i]))],
            "probs": [float(p) for p in probs[i]],
            "lesion_area_px": int(area[i]),
            **{k: float(per_image[k][i]) for k in SEG_METRICS},
            "normal_false_positive": bool(fp[i]) if normal[i] else None,
        })  # fmt: skip
    report = {
        "n_images": len(test.paths),
        "class_names": list(test.class_names),
        "n_per_class": np.bincount(test.labels, minlength=len(test.class_names)).tolist(),
        "metrics": {
            k: {"value": v, "ci95": list(ci.get(k, (math.nan, math.nan)))} for k, v in metrics.items()
        },
        "confusion": confusion,
        "bootstrap": {
            "n": n_boot,
            "seed": seed,
            "level": 0.95,
            "method": "percentile; test images resampled with replacement",
        },
        "settings": {"tau_px": tau, "min_area_px": min_area, "resolution": "working size"},
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
        ax.imshow(overlay(test.images[i], seg_prob[i], seg_prob[i] > 0.5, test.masks[i].astype(bool)))
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
            f"warning: this test set (digest {digest}) has been evaluated {len(earlier)} time(s) before: {when}. "
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
    with log.open("a", encoding="utf-8") as f:
        f.write(json.dumps(_nan_to_none(record), sort_keys=True) + "\n")
    return earlier


def _show(x: float | None, name: str) -> str:
    return "-" if x is None else (f"{x:.1f}" if name == "hd95" else f"{x:.3f}")


def format_report(report: Mapping[str, Any]) -> str:
    """A short terminal summary: each metric with its 95% interval (precision per class left out)."""
    counts = ", ".join(f"{n} {c}" for c, n in zip(report["class_names"], report["n_per_class"]))
    lines = [f"test set: {report['n_images']} images ({counts}); metric, value, 95% CI"]
    for name, m in report["metrics"].items():
        if name.startswith("precision_"):
            continue
        lo, hi = m["ci95"]
        lines.append(f"  {name:<18} {_show(m['value'], name):>7}  [{_show(lo, name)}, {_show(hi, name)}]")
    return "\n".join(lines)
