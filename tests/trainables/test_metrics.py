"""Metrics against independent computations: SciPy surfaces and distance transforms, NumPy overlaps,
scikit-learn (or hand-counted) classification scores, on random and hand-made cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from sklearn.metrics import confusion_matrix, f1_score, recall_score, roc_auc_score

from trainables.metrics import (
    HIGHER_IS_BETTER,
    SCORE_METRICS,
    check_lesion_gate,
    check_select,
    classification_metrics,
    gate_lesion,
    higher_is_better,
    lesion_mask,
    lesion_probs,
    masks_from_logits,
    mean_std,
    per_class_dice,
    probs_from_logits,
    segmentation_metrics,
    selection_score,
)

CLASSES = ("normal", "benign", "malignant")


# ---------- independent references ----------


def ref_overlap(p: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    inter = np.logical_and(p, g).sum()
    return 2 * inter / (p.sum() + g.sum()), inter / np.logical_or(p, g).sum()


def ref_surface(p: np.ndarray, g: np.ndarray, tau: float) -> tuple[float, float]:
    """HD95 and NSD from the surfaces (mask XOR 4-connected erosion) and exact distance transforms."""
    if not p.any():
        return math.hypot(*g.shape), 0.0
    ep, eg = p ^ ndi.binary_erosion(p), g ^ ndi.binary_erosion(g)
    d_pg = ndi.distance_transform_edt(~eg)[ep]
    d_gp = ndi.distance_transform_edt(~ep)[eg]
    hd95 = max(np.percentile(d_pg, 95), np.percentile(d_gp, 95))
    nsd = ((d_pg <= tau).sum() + (d_gp <= tau).sum()) / (d_pg.size + d_gp.size)
    return float(hd95), float(nsd)


def ref_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC: P(score of a positive > score of a negative), ties count one half."""
    pos, neg = scores[positive][:, None], scores[~positive][None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def random_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Smoothed-noise blobs: several components, holes, some touching the border, some empty."""
    out = np.zeros((n, h, w), bool)
    for i in range(n):
        kind = i % 4
        if kind == 3:
            continue  # empty
        field = ndi.gaussian_filter(rng.standard_normal((h, w)), sigma=rng.uniform(1.5, 4))
        out[i] = field > np.quantile(field, rng.uniform(0.6, 0.97))
        if kind == 2:
            out[i] |= rng.random((h, w)) > 0.995  # isolated pixels
    return out


def square(h: int, w: int, top: int, left: int, size: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[top : top + size, left : left + size] = True
    return m


# ---------- segmentation ----------


@pytest.mark.parametrize(("h", "w", "tau"), [(32, 32, 2.0), (24, 40, 1.0), (48, 36, 3.5)])
def test_segmentation_matches_scipy_reference_on_random_masks(h: int, w: int, tau: float) -> None:
    rng = np.random.default_rng(h * w)
    gt = random_masks(rng, 16, h, w)
    pred = random_masks(rng, 16, h, w)
    pred[1] = np.roll(gt[1], 2, axis=1)  # near miss
    pred[5] = gt[5]  # perfect
    out = segmentation_metrics(pred, gt, tau=tau, min_area=5)

    lesion = [i for i in range(16) if gt[i].any()]
    normal = [i for i in range(16) if not gt[i].any()]
    assert 0 < len(lesion) < 16
    assert out["n_lesion"] == len(lesion) and out["n_normal"] == len(normal)
    for key in ("dice", "iou", "hd95", "nsd"):
        assert len(out["per_image"][key]) == 16
    for i in range(16):
        per = {k: out["per_image"][k][i] for k in ("dice", "iou", "hd95", "nsd")}
        if i in normal:
            assert all(math.isnan(v) for v in per.values())
            continue
        dice, iou = ref_overlap(pred[i], gt[i])
        hd95, nsd = ref_surface(pred[i], gt[i], tau)
        assert per["dice"] == pytest.approx(dice, abs=1e-6)
        assert per["iou"] == pytest.approx(iou, abs=1e-6)
        assert per["hd95"] == pytest.approx(hd95, rel=1e-5, abs=1e-5)
        assert per["nsd"] == pytest.approx(nsd, abs=1e-6)
    for key in ("dice", "iou", "hd95", "nsd"):
        assert out[key] == pytest.approx(np.mean([out["per_image"][key][i] for i in lesion]), rel=1e-12)
    fp = [pred[i].sum() >= 5 for i in normal]
    assert out["normal_fp_rate"] == pytest.approx(np.mean(fp))


def test_perfect_prediction() -> None:
    gt = np.stack([square(20, 20, 3, 4, 8), square(20, 20, 0, 0, 20)])
    out = segmentation_metrics(gt.copy(), gt)
    assert out["dice"] == 1 and out["iou"] == 1 and out["nsd"] == 1
    assert out["hd95"] == 0
    assert math.isnan(out["normal_fp_rate"]) and out["n_normal"] == 0


def test_shifted_square_known_distances() -> None:
    # 10x10 square shifted 3 px: per direction 14 surface distances 0, 4 of 1, 4 of 2, 14 of 3 (of 36).
    gt = square(32, 32, 10, 10, 10)[None]
    pred = square(32, 32, 10, 13, 10)[None]
    out = segmentation_metrics(pred, gt, tau=2.0)
    assert out["hd95"] == pytest.approx(3.0, abs=1e-6)
    assert out["nsd"] == pytest.approx(22 / 36, abs=1e-6)
    assert out["dice"] == pytest.approx(140 / 200)
    assert out["iou"] == pytest.approx(70 / 130)
    assert segmentation_metrics(pred, gt, tau=3.0)["nsd"] == pytest.approx(1.0)


def test_empty_prediction_on_lesion_image_is_penalised_not_dropped() -> None:
    gt = np.stack([square(20, 30, 5, 5, 6), square(20, 30, 2, 2, 4)])
    pred = np.stack([np.zeros((20, 30), bool), square(20, 30, 2, 2, 4)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MONAI's empty-mask warnings must not leak
        out = segmentation_metrics(pred, gt)
    per = out["per_image"]
    assert per["dice"][0] == 0 and per["iou"][0] == 0 and per["nsd"][0] == 0
    assert per["hd95"][0] == pytest.approx(math.hypot(20, 30))
    assert math.isfinite(out["hd95"]) and out["hd95"] == pytest.approx(math.hypot(20, 30) / 2)
    assert out["dice"] == pytest.approx(0.5) and out["n_lesion"] == 2


def test_normal_images_false_positive_threshold() -> None:
    h = w = 16
    empty = np.zeros((h, w), bool)
    nine = square(h, w, 0, 0, 3)  # 9 px, below min_area=10
    ten = nine.copy()
    ten[10, 10] = True  # 10 px in two components: total area counts
    big = square(h, w, 4, 4, 5)
    pred = np.stack([empty, nine, ten, big])
    gt = np.zeros_like(pred)
    out = segmentation_metrics(pred, gt, min_area=10)
    assert out["normal_fp_rate"] == pytest.approx(2 / 4)
    assert out["normal_specificity"] == pytest.approx(1 - 2 / 4)
    assert out["n_normal"] == 4 and out["n_lesion"] == 0
    for key in ("dice", "iou", "hd95", "nsd"):
        assert math.isnan(out[key])
        assert len(out["per_image"][key]) == 4 and all(math.isnan(v) for v in out["per_image"][key])
    assert segmentation_metrics(pred, gt, min_area=9)["normal_fp_rate"] == pytest.approx(3 / 4)
    # min_area 0: any predicted pixel counts, an empty prediction never does.
    assert segmentation_metrics(pred, gt, min_area=0)["normal_fp_rate"] == pytest.approx(3 / 4)


def test_normal_images_do_not_enter_dice() -> None:
    les = square(16, 16, 2, 2, 6)
    gt = np.stack([les, np.zeros_like(les)])
    pred = np.stack([les, square(16, 16, 0, 0, 16)])  # a full false positive on the normal image
    out = segmentation_metrics(pred, gt)
    assert out["dice"] == 1 and out["normal_fp_rate"] == 1 and out["normal_specificity"] == 0
    assert math.isnan(out["per_image"]["dice"][1])


def test_normal_specificity_is_a_selectable_score_metric() -> None:
    """Dice never sees normal images; weighing normal_specificity lets a score punish a model that draws
    a lesion on every healthy breast."""
    les = square(16, 16, 2, 2, 6)
    gt = np.stack([les, np.zeros_like(les)])
    clean = segmentation_metrics(np.stack([les, np.zeros_like(les)]), gt)
    spotty = segmentation_metrics(np.stack([les, square(16, 16, 0, 0, 16)]), gt)
    weights = {"dice": 0.8, "normal_specificity": 0.2}
    check_select(weights)
    assert selection_score(clean, weights) == pytest.approx(1.0)
    assert selection_score(spotty, weights) == pytest.approx(0.8)
    assert higher_is_better("val/normal_specificity")


def test_empty_batch() -> None:
    out = segmentation_metrics(np.zeros((0, 8, 8), bool), np.zeros((0, 8, 8), bool))
    assert out["n_lesion"] == 0 and out["n_normal"] == 0
    assert math.isnan(out["dice"]) and math.isnan(out["normal_fp_rate"])
    assert math.isnan(out["normal_specificity"])
    assert out["per_image"]["dice"] == []


@pytest.mark.parametrize(
    ("pred", "gt", "match"),
    [
        (np.zeros((2, 8, 8)), np.zeros((2, 8, 8), bool), "pred: expected a NumPy bool"),
        (np.zeros((8, 8), bool), np.zeros((8, 8), bool), r"\[N, H, W\]"),
        (np.zeros((2, 8, 8), bool), np.zeros((2, 8, 9), bool), "differ in shape"),
        (torch.zeros(2, 8, 8, dtype=torch.bool), np.zeros((2, 8, 8), bool), "NumPy bool"),
    ],
)
def test_segmentation_rejects_bad_input(pred: np.ndarray, gt: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        segmentation_metrics(pred, gt)


def test_segmentation_rejects_bad_parameters() -> None:
    m = np.zeros((1, 4, 4), bool)
    with pytest.raises(ValueError, match="tau"):
        segmentation_metrics(m, m, tau=-1)
    with pytest.raises(ValueError, match="min_area"):
        segmentation_metrics(m, m, min_area=2.5)


def test_masks_from_logits() -> None:
    # float32 sigmoid > 0.5: a logit of 1e-8 has sigmoid 0.5 (background), 1e-6 does not
    logits = torch.tensor([[[[-1.0, 0.0], [1e-8, 1e-6]]]])
    assert masks_from_logits(logits).tolist() == [[[False, False], [False, True]]]
    assert masks_from_logits(logits.numpy()[:, 0]).tolist() == masks_from_logits(logits).tolist()
    # bf16 logits (AMP) are decided in float32: a bf16 sigmoid would round 4e-3 to 0.5
    small = torch.tensor([[[4e-3, -4e-3]]], dtype=torch.bfloat16)
    assert masks_from_logits(small).tolist() == [[[True, False]]]
    assert lesion_mask(lesion_probs(small)).tolist() == [[[True, False]]]
    with pytest.raises(ValueError, match="seg_logits"):
        masks_from_logits(np.zeros((2, 3, 4, 4)))


# ---------- classification ----------


def random_probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.dirichlet(np.ones(k), size=n)


def test_classification_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(3), 20)
    probs = random_probs(rng, 60, 3)
    probs[np.arange(60), labels] += rng.uniform(0, 0.6, 60)  # informative but imperfect
    probs /= probs.sum(1, keepdims=True)
    preds = probs.argmax(1)
    out = classification_metrics(probs, labels, CLASSES)
    assert out["auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert out["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro"))
    assert out["acc"] == pytest.approx(np.mean(preds == labels))
    recalls = recall_score(labels, preds, average=None)
    assert out["balanced_acc"] == pytest.approx(recalls.mean())
    for c, name in enumerate(CLASSES):
        assert out[f"recall_{name}"] == pytest.approx(recalls[c])
        assert out[f"precision_{name}"] == pytest.approx(np.mean(labels[preds == c] == c))
    assert out["confusion"] == confusion_matrix(labels, preds).tolist()
    assert 0.5 < out["auc"] < 1


def test_classification_hand_counted() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 2, 2])
    probs = np.full((6, 3), 0.1)
    probs[np.arange(6), preds] = 0.8
    out = classification_metrics(probs, labels, CLASSES)
    assert out["confusion"] == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert out["acc"] == pytest.approx(4 / 6)
    assert out["recall_normal"] == pytest.approx(1 / 2)
    assert out["recall_benign"] == pytest.approx(2 / 3)
    assert out["recall_malignant"] == pytest.approx(1.0)
    assert out["balanced_acc"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    f1 = [2 * 1 / (2 * 1 + 1), 2 * 2 / (2 * 2 + 1 + 1), 2 * 1 / (2 * 1 + 1)]  # 2TP / (2TP + FP + FN)
    assert out["macro_f1"] == pytest.approx(np.mean(f1))
    assert out["precision_benign"] == pytest.approx(2 / 3)
    expected_auc = np.mean([ref_auc(probs[:, c], labels == c) for c in range(3)])
    assert out["auc"] == pytest.approx(expected_auc)


def test_class_absent_from_labels() -> None:
    rng = np.random.default_rng(1)
    labels = np.array([0, 1, 0, 1, 1, 0, 0, 1])  # no malignant
    probs = random_probs(rng, 8, 3)
    probs[0] = [0.1, 0.1, 0.8]  # one malignant prediction
    out = classification_metrics(probs, labels, CLASSES)
    expected_auc = np.mean([ref_auc(probs[:, c], labels == c) for c in (0, 1)])
    assert out["auc"] == pytest.approx(expected_auc)
    assert math.isnan(out["recall_malignant"])
    assert out["precision_malignant"] == 0
    assert np.array(out["confusion"]).shape == (3, 3) and out["confusion"][2] == [0, 0, 0]
    preds = probs.argmax(1)
    assert out["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro", zero_division=0))
    assert out["balanced_acc"] == pytest.approx(recall_score(labels, preds, labels=[0, 1], average="macro"))


def test_single_class_present_gives_nan_auc_and_full_confusion() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    out = classification_metrics(probs, np.array([0, 0, 0]), CLASSES)
    assert math.isnan(out["auc"])
    assert out["acc"] == pytest.approx(2 / 3)
    assert out["confusion"] == [[2, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_binary_auc_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 30)
    probs = random_probs(rng, 30, 2)
    out = classification_metrics(probs, labels, ("benign", "malignant"))
    assert out["auc"] == pytest.approx(roc_auc_score(labels, probs[:, 1]))
    assert np.array(out["confusion"]).shape == (2, 2)


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (np.full((3, 2), 0.5), np.array([0, 1, 0]), r"probs: expected shape \[N, 3\]"),
        (np.full((3, 3), 1 / 3), np.array([0, 1]), "labels: expected integers"),
        (np.full((3, 3), 1 / 3), np.array([0, 1, 3]), r"labels: expected values in 0..2"),
        (np.full((3, 3), 1 / 3), np.array([0.0, 1.0, 2.0]), "labels: expected integers"),
        (np.full((3, 3), np.nan), np.array([0, 1, 2]), "NaN"),
        (np.zeros((0, 3)), np.zeros(0, int), "no samples"),
    ],
)
def test_classification_rejects_bad_input(probs: np.ndarray, labels: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        classification_metrics(probs, labels, CLASSES)


def test_probs_from_logits() -> None:
    logits = torch.tensor([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    probs = probs_from_logits(logits)
    assert probs.dtype == np.float64 and np.allclose(probs.sum(1), 1)
    assert np.allclose(probs, torch.softmax(logits.double(), 1).numpy())
    assert np.allclose(probs_from_logits(logits.numpy()), probs)


# ---------- selection score and helpers ----------


def test_selection_score_weighted_mean() -> None:
    metrics = {"dice": 0.8, "macro_f1": 0.6, "recall_malignant": 0.5, "hd95": 12.0}
    assert selection_score(metrics, {"dice": 0.5, "macro_f1": 0.5}) == pytest.approx(0.7)
    assert selection_score(metrics, {"dice": 1, "macro_f1": 3}) == pytest.approx((0.8 + 1.8) / 4)
    assert selection_score(metrics, {"macro_f1": 1.0}) == pytest.approx(0.6)
    assert selection_score(metrics, {"recall_malignant": 2, "dice": 0}) == pytest.approx(0.5)


def test_selection_score_nan_counts_as_zero() -> None:
    assert selection_score({"dice": math.nan, "auc": 0.9}, {"dice": 1, "auc": 1}) == pytest.approx(0.45)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ({"hd95": 1.0}, "lower is better"),
        ({"normal_fp_rate": 1.0}, "lower is better"),
        ({"dcie": 1.0}, "choose from dice, iou"),
        ({"recall_": 1.0}, "not a selection metric"),
        ({"dice": -1.0}, "weight >= 0"),
        ({"dice": math.inf}, "weight >= 0"),
        ({"dice": True}, "weight >= 0"),
        ({"dice": 0.0}, "not all be 0"),
        ({}, "non-empty"),
    ],
)
def test_selection_score_rejects(weights: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        selection_score({"dice": 0.5, "hd95": 3.0, "normal_fp_rate": 0.1}, weights)
    with pytest.raises(ValueError, match=match):
        check_select(weights)


def test_selection_score_missing_metric_lists_available() -> None:
    with pytest.raises(ValueError, match=r"recall_malignant.*available: \['dice'\]"):
        selection_score({"dice": 0.5}, {"recall_malignant": 1})


def test_per_class_dice_keeps_each_class_apart() -> None:
    dice = [math.nan, 0.8, 0.6, 0.2]  # the normal image has no Dice
    labels = np.array([0, 1, 1, 2])
    out = per_class_dice(dice, labels, CLASSES)
    assert set(out) == {"dice_benign", "dice_malignant"}  # no lesion image of class normal: no key
    assert np.nanmean(out["dice_benign"]) == pytest.approx(0.7)
    assert np.nanmean(out["dice_malignant"]) == pytest.approx(0.2)
    assert set(per_class_dice(dice, labels, CLASSES, suffix="_orig")) == {
        "dice_benign_orig",
        "dice_malignant_orig",
    }
    check_select({"dice_malignant": 1.0})  # selectable, like recall_<class>
    assert higher_is_better("fold0/val/dice_benign")


def test_metric_directions() -> None:
    assert set(SCORE_METRICS) <= {k for k, v in HIGHER_IS_BETTER.items() if v}
    assert not higher_is_better("fold1/val/hd95") and not higher_is_better("val/normal_fp_rate")
    assert higher_is_better("val/recall_malignant") and higher_is_better("dice")
    with pytest.raises(KeyError, match="no direction known"):
        higher_is_better("val/loss_seg")


def test_mean_std() -> None:
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([1.0, 3.0], ddof=0) == pytest.approx((2.0, 1.0))
    assert mean_std([1.0, math.nan, 3.0]) == pytest.approx((2.0, math.sqrt(2)))
    assert mean_std([4.0]) == (4.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([math.nan]))


def test_classifier_gate_clears_the_maps_of_images_classified_normal() -> None:
    names = ("normal", "benign", "malignant")
    seg = np.full((3, 4, 4), 0.9, dtype=np.float32)
    probs = np.array([[0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.34, 0.33, 0.33]])
    gated = gate_lesion(seg, probs, "classifier", names)
    assert gated.dtype == seg.dtype and gated.shape == seg.shape
    assert gated.sum((1, 2)).tolist() == [0.0, pytest.approx(0.9 * 16), 0.0]
    assert gate_lesion(seg > 0.5, probs, "classifier", names).sum((1, 2)).tolist() == [0, 16, 0]
    assert gate_lesion(seg, probs, "none", names) is seg
    assert seg.min() == pytest.approx(0.9)  # the input is never changed


def test_lesion_gate_refuses_unknown_gates_classes_without_normal_and_bad_shapes() -> None:
    assert check_lesion_gate("none", ("a", "b")) is None
    assert check_lesion_gate("classifier", ("benign", "normal")) == 1
    with pytest.raises(ValueError, match="lesion_gate: expected one of none, classifier"):
        check_lesion_gate("mask", ("normal",))
    with pytest.raises(ValueError, match="classes are benign, malignant; use lesion_gate: none"):
        check_lesion_gate("classifier", ("benign", "malignant"))
    with pytest.raises(ValueError, match="class probabilities for 3 maps"):
        gate_lesion(np.zeros((3, 2, 2)), np.zeros((2, 2)), "classifier", ("normal", "benign"))
