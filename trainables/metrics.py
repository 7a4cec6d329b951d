"""Validation metrics: per-image segmentation (MONAI), classification (scikit-learn), selection score.

Definitions (also in the README):

- Segmentation is scored per image, then averaged. Only lesion images (non-empty ground truth) enter
  Dice, IoU, HD95 and NSD; they are computed by MONAI at the working resolution (1 px = 1 unit), with
  surfaces as MONAI extracts them (mask XOR its 4-connected binary erosion) and exact Euclidean
  distances. HD95 is the larger of the two directed 95th percentiles (linear interpolation); NSD is the
  share of both surfaces within ``tau`` px of the other. An empty prediction on a lesion image scores
  Dice 0, IoU 0, NSD 0 and HD95 = the image diagonal ``sqrt(H**2 + W**2)`` (longer than any distance
  inside the image, finite so means stay defined).
- ``normal_fp_rate``: share of normal images (empty ground truth) whose prediction has at least
  ``max(min_area, 1)`` foreground pixels in total (all components together; an empty prediction is
  never a false positive). ``normal_specificity`` = 1 - ``normal_fp_rate``, the same figure turned
  higher-is-better so that a selection score can weigh it (Dice never sees normal images, so without it
  a model that draws a lesion on every healthy breast can still win).
- One decision rule for lesion pixels everywhere (validation, test, predict): the sigmoid of the
  logits, computed in float32, above :data:`LESION_THRESHOLD` (:func:`lesion_probs`,
  :func:`lesion_mask`). The probability is the common quantity because test-time averaging (TTA, fold
  ensembles) averages probabilities; float32 because a bf16 sigmoid (AMP) rounds logits up to about
  0.008 from 0 to exactly 0.5.
- ``train.lesion_gate: classifier`` (:func:`gate_lesion`) clears the lesion map of every image whose
  most probable class is ``normal``, after any averaging and before the threshold: validation, the
  test evaluation and predict apply the one rule, so a normal image the classifier recognises is never
  a false positive. The cost falls on lesion images called normal (Dice 0). Measured on the same weights
  (``spaces/busi_cpu_gated.yaml``, CV epoch 52, docs/results.md): normal specificity 0.624 -> 0.871,
  Dice 0.672 -> 0.653.
- Classification: one-vs-rest AUC per class on the softmax probabilities, averaged over the classes
  that have both positives and negatives in ``labels`` (equal to scikit-learn's ``multi_class="ovr",
  average="macro"`` when every class is present; NaN when fewer than two classes are present).
  ``macro_f1`` is scikit-learn's macro F1 over the classes present in labels or predictions;
  ``recall_<c>`` is NaN for a class absent from ``labels``; precision uses ``zero_division=0``.
- ``dice_<c>``: the mean Dice over the lesion images of class ``c`` (:func:`per_class_dice`).
- ``selection_score``: weighted mean of higher-is-better metrics; a NaN metric counts as 0.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

SEG_KEYS = ("dice", "iou", "hd95", "nsd")

#: Fixed metric names a selection score may weigh; ``recall_<class>``, ``precision_<class>`` and
#: ``dice_<class>`` too.
SCORE_METRICS = ("dice", "iou", "nsd", "normal_specificity", "auc", "macro_f1", "acc", "balanced_acc")

#: A pixel is lesion when its float32 lesion probability is above this (see :func:`lesion_mask`).
LESION_THRESHOLD = 0.5
#: Image-level rules that may clear a lesion map (``train.lesion_gate``, :func:`gate_lesion`).
LESION_GATES = ("none", "classifier")
#: The class whose images hold no lesion (:func:`gate_lesion`).
NORMAL_CLASS = "normal"
_PER_CLASS_PREFIXES = ("recall_", "precision_", "dice_")

#: Direction of every metric this module reports (per-class names via :func:`higher_is_better`).
HIGHER_IS_BETTER: dict[str, bool] = {
    "dice": True,
    "iou": True,
    "hd95": False,
    "nsd": True,
    "normal_fp_rate": False,
    "normal_specificity": True,
    "auc": True,
    "macro_f1": True,
    "acc": True,
    "balanced_acc": True,
    "score": True,
}


def segmentation_metrics(pred: np.ndarray, gt: np.ndarray, tau: float = 2.0, min_area: int = 10) -> dict:
    """Per-image Dice, IoU, HD95, NSD on lesion images and the false-positive rate on normal images.

    ``pred`` and ``gt`` are bool ``[N, H, W]`` (:func:`lesion_mask` first). Returns the means ``dice``,
    ``iou``, ``hd95``, ``nsd`` (NaN without lesion images), ``normal_fp_rate`` and ``normal_specificity``
    (NaN without normal images), ``n_lesion``, ``n_normal`` and ``per_image`` (lists of length N, NaN on
    normal images).
    """
    # MONAI and scikit-learn load lazily: the spec validator imports this module for check_select
    from monai.metrics import compute_dice, compute_iou

    _check_masks(pred, gt)
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"tau: expected a finite number >= 0 (pixels), got {tau!r}")
    if int(min_area) != min_area or min_area < 0:
        raise ValueError(f"min_area: expected an integer >= 0 (pixels), got {min_area!r}")
    n, h, w = gt.shape
    gt_area = gt.sum((1, 2))
    pred_area = pred.sum((1, 2))
    per = {k: np.full(n, np.nan) for k in SEG_KEYS}

    lesion = np.flatnonzero(gt_area > 0)
    if lesion.size:
        p = torch.from_numpy(pred[lesion, None]).float()
        g = torch.from_numpy(gt[lesion, None]).float()
        per["dice"][lesion] = compute_dice(p, g, include_background=True).view(-1).numpy()
        per["iou"][lesion] = compute_iou(p, g, include_background=True).view(-1).numpy()
        # MONAI gives inf / 0 without a predicted surface: score those by the documented rule instead.
        hit = pred_area[lesion] > 0
        per["hd95"][lesion[~hit]] = math.hypot(h, w)
        per["nsd"][lesion[~hit]] = 0.0
        for i in lesion[hit]:
            per["hd95"][i], per["nsd"][i] = _hd95_nsd(pred[i], gt[i], float(tau))

    normal = gt_area == 0
    fp = pred_area[normal] >= max(int(min_area), 1)
    out: dict[str, Any] = {k: _mean(per[k][lesion]) for k in SEG_KEYS}
    out["normal_fp_rate"] = float(fp.mean()) if fp.size else math.nan
    out["normal_specificity"] = 1.0 - out["normal_fp_rate"]
    out["n_lesion"] = int(lesion.size)
    out["n_normal"] = int(normal.sum())
    out["per_image"] = {k: [float(v) for v in per[k]] for k in SEG_KEYS}
    return out


def per_class_dice(
    dice: Sequence[float], labels: np.ndarray, class_names: Sequence[str], suffix: str = ""
) -> dict[str, np.ndarray]:
    """``dice_<class><suffix>``: per-image Dice kept on that class's images (NaN elsewhere), for every
    class with at least one lesion image (the published BUSI figures report benign and malignant apart)."""
    values = np.asarray(dice, dtype=np.float64)
    out = {}
    for c, name in enumerate(class_names):
        mine = np.where(np.asarray(labels) == c, values, np.nan)
        if np.isfinite(mine).any():
            out[f"dice_{name}{suffix}"] = mine
    return out


def _hd95_nsd(pred: np.ndarray, gt: np.ndarray, tau: float) -> tuple[float, float]:
    """HD95 and NSD of one image with non-empty prediction and ground truth, from one edge pass.

    The same definitions as MONAI's ``compute_hausdorff_distance(percentile=95)`` (the larger of the two
    one-way linear-interpolated 95th percentiles) and ``compute_surface_dice`` (the share of both
    surfaces within ``tau``), which would each extract the edges and distance maps again.
    """
    from monai.metrics.utils import get_edge_surface_distance

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        _, (d_pg, d_gp), _ = get_edge_surface_distance(
            torch.from_numpy(pred), torch.from_numpy(gt), symmetric=True
        )
    d_pg, d_gp = d_pg.double(), d_gp.double()
    hd95 = max(float(torch.quantile(d_pg, 0.95)), float(torch.quantile(d_gp, 0.95)))
    within = int((d_pg <= tau).sum()) + int((d_gp <= tau).sum())
    return hd95, within / (d_pg.numel() + d_gp.numel())


def classification_metrics(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """AUC, macro-F1, accuracy, balanced accuracy, per-class recall and precision, confusion matrix.

    ``probs`` are softmax probabilities ``[N, K]``, ``labels`` integer classes ``[N]`` in ``0..K-1``;
    the prediction is the arg-max. ``confusion`` is ``K x K`` (rows = true class) even for absent classes.
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
    )

    probs, labels = _check_classification(probs, labels, class_names)
    k = len(class_names)
    preds = probs.argmax(1)
    out: dict[str, Any] = {
        "auc": _macro_ovr_auc(probs, labels),
        "macro_f1": float(f1_score(labels, preds, average="macro", zero_division=0)),
        "acc": float(accuracy_score(labels, preds)),
    }
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="y_pred contains classes not in y_true", category=UserWarning
        )
        out["balanced_acc"] = float(balanced_accuracy_score(labels, preds))
    classes = list(range(k))
    recall = recall_score(labels, preds, labels=classes, average=None, zero_division=0)
    precision = precision_score(labels, preds, labels=classes, average=None, zero_division=0)
    present = np.bincount(labels, minlength=k) > 0
    for c, name in enumerate(class_names):
        out[f"recall_{name}"] = float(recall[c]) if present[c] else math.nan
    for c, name in enumerate(class_names):
        out[f"precision_{name}"] = float(precision[c])
    out["confusion"] = confusion_matrix(labels, preds, labels=classes).tolist()
    return out


def selection_score(metrics: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Weighted mean ``sum(w * m) / sum(w)`` of higher-is-better metrics; a NaN metric counts as 0.

    Counting NaN (e.g. AUC of a fold missing a class) as 0 keeps the score finite and never rewards an
    undefined metric. Lower-is-better metrics (hd95, normal_fp_rate) and unknown names are errors.
    """
    check_select(weights)
    missing = [name for name in weights if name not in metrics]
    if missing:
        raise ValueError(f"selection_score: metrics {missing} not computed; available: {sorted(metrics)}")
    total = sum(float(w) for w in weights.values())
    acc = 0.0
    for name, w in weights.items():
        value = float(metrics[name])
        acc += float(w) * (0.0 if math.isnan(value) else value)
    return acc / total


def check_select(weights: Mapping[str, float]) -> None:
    """Raise ``ValueError`` unless ``weights`` maps allowed metric names to weights >= 0 with a positive sum.

    Usable as the ``check`` of ``train.select``; class names are not known here, so any
    ``recall_<name>`` / ``precision_<name>`` / ``dice_<name>`` passes and is resolved when the score
    is computed.
    """
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"expected a non-empty mapping of metric name to weight, got {weights!r}")
    for name, w in weights.items():
        if not is_score_metric(name):
            why = " (lower is better, cannot be averaged into a score)" if name in HIGHER_IS_BETTER else ""
            if name == "normal_fp_rate":
                why += "; weigh normal_specificity (= 1 - normal_fp_rate) instead"
            raise ValueError(
                f"{name!r} is not a selection metric{why}; choose from {', '.join(SCORE_METRICS)}, "
                "recall_<class>, precision_<class>, dice_<class>"
            )
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{name}: expected a finite weight >= 0, got {w!r}")
    if sum(weights.values()) <= 0:
        raise ValueError(f"the weights must not all be 0, got {dict(weights)}")


def is_score_metric(name: str) -> bool:
    """Whether ``name`` may be weighed in a selection score (bounded in [0, 1], higher is better)."""
    return name in SCORE_METRICS or any(
        name.startswith(p) and len(name) > len(p) for p in _PER_CLASS_PREFIXES
    )


def higher_is_better(name: str) -> bool:
    """Direction of a reported metric; accepts flat keys such as ``fold0/val/dice`` or
    ``val/recall_benign``."""
    base = name.rsplit("/", 1)[-1]
    if base in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[base]
    if re.match(r"^(recall|precision|dice)_.+", base):
        return True
    raise KeyError(
        f"no direction known for metric {name!r}; known: {sorted(HIGHER_IS_BETTER)}, "
        "recall_*, precision_*, dice_*"
    )


def mean_std(values: Sequence[float], ddof: int = 1) -> tuple[float, float]:
    """NaN-ignoring mean and standard deviation (sample std by default, 0 for one value, NaN for none)."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return math.nan, math.nan
    std = float(arr.std(ddof=ddof)) if arr.size > ddof else 0.0
    return float(arr.mean()), std


def probs_from_logits(logits: np.ndarray | torch.Tensor) -> np.ndarray:
    """Softmax over the last axis of classification logits, as float64 NumPy ``[N, K]``."""
    x = (
        logits.detach().cpu().double().numpy()
        if isinstance(logits, torch.Tensor)
        else np.asarray(logits, np.float64)
    )
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def lesion_probs(seg_logits: torch.Tensor) -> torch.Tensor:
    """Lesion probabilities: the sigmoid of segmentation logits of any dtype, computed in float32.

    Casting first matters under AMP: the sigmoid of bf16 logits rounds every logit within about 0.008
    of 0 to exactly 0.5, which the threshold then reads as background.
    """
    return torch.sigmoid(seg_logits.float())


def lesion_mask(seg_prob: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """The lesion decision: float32 lesion probabilities above :data:`LESION_THRESHOLD`.

    The one rule of validation (:func:`masks_from_logits`), the test evaluation and predict, which pass
    probabilities (averaged over TTA views or fold models) from :func:`lesion_probs`.
    """
    return seg_prob > LESION_THRESHOLD


def check_lesion_gate(gate: str, class_names: Sequence[str]) -> int | None:
    """The index of the normal class that ``gate`` reads (None for ``"none"``); ValueError when the gate
    is unknown or the classes have no ``normal`` (before any compute)."""
    if gate not in LESION_GATES:
        raise ValueError(f"lesion_gate: expected one of {', '.join(LESION_GATES)}, got {gate!r}")
    if gate == "none":
        return None
    if NORMAL_CLASS not in class_names:
        raise ValueError(
            f"train.lesion_gate {gate!r} clears the lesion map of images classified {NORMAL_CLASS!r}, but "
            f"the classes are {', '.join(class_names)}; use lesion_gate: none"
        )
    return list(class_names).index(NORMAL_CLASS)


def gate_lesion(seg: np.ndarray, cls_probs: np.ndarray, gate: str, class_names: Sequence[str]) -> np.ndarray:
    """``seg`` (lesion probabilities or masks ``[N, H, W]``) with the maps of the images whose most
    probable class (``cls_probs`` ``[N, K]``) is ``normal`` cleared when ``gate`` is ``"classifier"``;
    ``seg`` itself (not a copy) when ``gate`` is ``"none"``."""
    normal = check_lesion_gate(gate, class_names)
    if normal is None:
        return seg
    probs = np.asarray(cls_probs)
    if probs.ndim != 2 or len(probs) != len(seg) or probs.shape[1] != len(class_names):
        raise ValueError(
            f"gate_lesion: {list(probs.shape)} class probabilities for {len(seg)} maps and "
            f"{len(class_names)} classes"
        )
    keep = probs.argmax(axis=1) != normal
    return np.where(keep.reshape(-1, *([1] * (np.ndim(seg) - 1))), seg, np.zeros_like(seg))


def masks_from_logits(seg_logits: np.ndarray | torch.Tensor) -> np.ndarray:
    """Binary masks ``bool [N, H, W]`` from segmentation logits ``[N, 1, H, W]`` or ``[N, H, W]``, by the
    rule of :func:`lesion_mask` (a logit within about 1e-7 of 0 is background: its float32 sigmoid is 0.5).
    """
    x = seg_logits if isinstance(seg_logits, torch.Tensor) else torch.from_numpy(np.asarray(seg_logits))
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"seg_logits: expected shape [N, 1, H, W] or [N, H, W], got {list(x.shape)}")
    return lesion_mask(lesion_probs(x.detach())).cpu().numpy()


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _check_masks(pred: np.ndarray, gt: np.ndarray) -> None:
    for name, arr in (("pred", pred), ("gt", gt)):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.bool_ or arr.ndim != 3:
            got = f"{type(arr).__name__} {getattr(arr, 'dtype', '')} {list(getattr(arr, 'shape', []))}"
            raise ValueError(f"{name}: expected a NumPy bool array [N, H, W] (threshold first), got {got}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt differ in shape: {list(pred.shape)} vs {list(gt.shape)}")
    if 0 in gt.shape[1:]:
        raise ValueError(f"masks must have H, W > 0, got {list(gt.shape)}")


def _check_classification(
    probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    k = len(class_names)
    if k < 2 or len(set(class_names)) != k:
        raise ValueError(f"class_names: expected at least 2 distinct names, got {list(class_names)}")
    if probs.ndim != 2 or probs.shape[1] != k:
        raise ValueError(
            f"probs: expected shape [N, {k}] for classes {list(class_names)}, got {list(probs.shape)}"
        )
    if labels.shape != (probs.shape[0],) or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError(
            f"labels: expected integers of shape [{probs.shape[0]}], got {labels.dtype} {list(labels.shape)}"
        )
    if probs.shape[0] == 0:
        raise ValueError("probs: no samples to score")
    if not np.isfinite(probs).all():
        raise ValueError("probs: contains NaN or inf")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(
            f"labels: expected values in 0..{k - 1} ({list(class_names)}), got {sorted(set(labels.tolist()))}"
        )
    return probs, labels.astype(np.int64)


def _macro_ovr_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    """Mean one-vs-rest AUC over the classes with both positives and negatives (NaN if there are none)."""
    aucs = []
    for c in range(probs.shape[1]):
        positive = labels == c
        if positive.any() and not positive.all():
            aucs.append(roc_auc_score(positive, probs[:, c]))
    return float(np.mean(aucs)) if aucs else math.nan
