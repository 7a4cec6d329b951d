"""Test-set evaluation: metrics with bootstrap intervals, figures, and the log of evaluations."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analysis.evaluate import (
    HeldOutSet,
    evaluate,
    heldout_digest,
    heldout_from_dataset,
    original_size_metrics,
    record_evaluation,
    write_figures,
)
from tests.trainables.data.conftest import make_folder, write_image, write_mask
from trainables.data.cache import load_dataset
from trainables.data.config import DataConfig
from trainables.data.resize import resize_pair, undo_resize
from trainables.metrics import lesion_mask, segmentation_metrics

NAMES = ("normal", "benign", "malignant")


def _test_set(n: int = 12, size: int = 32, seed: int = 0) -> HeldOutSet:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    masks = np.zeros((n, size, size), bool)
    for i in np.flatnonzero(labels > 0):
        y, x = rng.integers(6, size - 12, 2)
        masks[i, y : y + 8, x : x + 10] = True
    images = rng.integers(0, 255, (n, size, size), dtype=np.uint8)
    return HeldOutSet(
        images, masks, labels.astype(np.int64), [f"{NAMES[c]}/{i}.png" for i, c in enumerate(labels)], NAMES
    )


def test_perfect_predictions_score_one_with_a_tight_interval() -> None:
    test = _test_set()
    probs = np.eye(3)[test.labels] * 0.9 + 0.1 / 3
    report = evaluate(test, test.masks.astype(np.float32), probs, n_boot=50)
    m = report["metrics"]
    for name in ("dice", "iou", "nsd", "auc", "macro_f1", "acc", "balanced_acc", "recall_malignant"):
        assert m[name]["value"] == pytest.approx(1.0) and m[name]["ci95"] == pytest.approx([1.0, 1.0]), name
    assert m["hd95"]["value"] == pytest.approx(0.0) and m["normal_fp_rate"]["value"] == 0.0
    assert report["confusion"] == [[4, 0, 0], [0, 4, 0], [0, 0, 4]]
    assert report["n_per_class"] == [4, 4, 4] and len(report["per_image"]) == 12


def test_interval_brackets_the_estimate_and_is_seeded() -> None:
    test = _test_set(n=30)
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1, 1], size=30)
    seg = np.clip(test.masks + rng.normal(0, 0.4, test.masks.shape), 0, 1).astype(np.float32)
    a = evaluate(test, seg, probs, n_boot=200, seed=3)
    b = evaluate(test, seg, probs, n_boot=200, seed=3)
    assert a["metrics"] == b["metrics"]
    for name, m in a["metrics"].items():
        lo, hi = m["ci95"]
        if m["value"] is None:
            continue
        assert lo <= hi, name
        assert lo - 1e-9 <= m["value"] <= hi + 1e-9 or name.startswith(("precision_", "hd95")), name
    assert a["metrics"]["dice"]["ci95"][1] - a["metrics"]["dice"]["ci95"][0] > 0.01


def test_figures(tmp_path: Path) -> None:
    test = _test_set()
    rng = np.random.default_rng(2)
    probs = rng.dirichlet([1, 1, 1], size=len(test.labels))
    seg = rng.random(test.masks.shape).astype(np.float32)
    report = evaluate(test, seg, probs, n_boot=20)
    figures = write_figures(test, seg, probs, report, tmp_path)
    sizes = {"confusion_matrix": (650, 550), "roc": (650, 600), "gallery": (1280, 740)}
    for name, path in figures.items():
        with Image.open(path) as image:
            assert image.size == sizes[name] and path.stat().st_size > 10_000, name


def test_second_evaluation_of_the_same_test_set_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = heldout_digest("fp", ["b.png", "a.png"])
    assert digest == heldout_digest("fp", ["a.png", "b.png"]) != heldout_digest("fp2", ["a.png", "b.png"])
    assert record_evaluation(tmp_path, digest, {"kind": "refit", "out_dir": "x"}) == []
    assert "warning" not in capsys.readouterr().err
    earlier = record_evaluation(tmp_path, digest, {"kind": "ensemble_folds", "out_dir": "y"})
    assert len(earlier) == 1 and earlier[0]["kind"] == "refit"
    assert f"digest {digest}) has been evaluated 1 time(s) before" in capsys.readouterr().err
    record_evaluation(tmp_path, heldout_digest("other", ["a.png"]), {"kind": "refit"})
    assert "warning" not in capsys.readouterr().err
    assert len((tmp_path / "test_evaluations.jsonl").read_text(encoding="utf-8").splitlines()) == 3


def test_near_copies_do_not_narrow_the_intervals() -> None:
    base = _test_set(n=15)
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1, 1], size=15)
    seg = np.clip(base.masks + rng.normal(0, 0.4, base.masks.shape), 0, 1).astype(np.float32)
    # every image four times (near copies), shuffled: the audit puts each image's copies in one group
    order = rng.permutation(np.repeat(np.arange(15), 4))
    copies = HeldOutSet(
        base.images[order],
        base.masks[order],
        base.labels[order],
        [f"{i}.png" for i in range(60)],
        NAMES,
        groups=order * 7 + 3,
    )
    alone = evaluate(base, seg, probs, n_boot=100, seed=3)
    grouped = evaluate(copies, seg[order], probs[order], n_boot=100, seed=3)
    naive = evaluate(dataclasses.replace(copies, groups=None), seg[order], probs[order], n_boot=100, seed=3)
    for name in ("dice", "hd95", "nsd", "normal_fp_rate", "dice_benign", "auc", "macro_f1", "balanced_acc"):
        a, g = alone["metrics"][name], grouped["metrics"][name]
        assert g["value"] == pytest.approx(a["value"]) and g["ci95"] == pytest.approx(a["ci95"]), name
    assert grouped["bootstrap"]["n_groups"] == 15 and naive["bootstrap"]["n_groups"] == 60

    def width(report: dict) -> float:
        lo, hi = report["metrics"]["dice"]["ci95"]
        return hi - lo

    assert width(naive) < 0.7 * width(alone)  # what resampling images did: copies counted as evidence


def _letterboxed_set(shift: int) -> tuple[HeldOutSet, np.ndarray]:
    """Six 160 x 80 images at working size 40 (scale 1/4, letterboxed); lesion images share one
    rectangle; the prediction is the working-size truth moved ``shift`` working px to the right,
    except on the second malignant image where it is empty."""
    labels = np.array([0, 1, 2, 0, 1, 2])
    gt_full = np.zeros((80, 160), bool)
    gt_full[20:60, 40:104] = True
    originals, images, masks, infos = [], [], [], []
    for c in labels:
        full = gt_full if c > 0 else np.zeros_like(gt_full)
        image, mask, info = resize_pair(np.full((80, 160), 100, np.uint8), full, 40, "letterbox")
        originals.append(full)
        images.append(image)
        masks.append(mask > 0)
        infos.append(info)
    masks = np.stack(masks)
    pred = np.roll(masks, shift, axis=-1).astype(np.float32)
    pred[5] = 0.0
    test = HeldOutSet(
        np.stack(images),
        masks,
        labels,
        [f"{NAMES[c]}/{i}.png" for i, c in enumerate(labels)],
        NAMES,
        resize_infos=infos,
        original_masks=originals,
    )
    return test, pred


def test_segmentation_metrics_at_the_original_size() -> None:
    test, pred = _letterboxed_set(shift=2)
    assert test.resize_infos[0].scale_x == 0.25 and test.resize_infos[0].pad_top == 10
    probs = np.eye(3)[test.labels] * 0.8 + 0.2 / 3
    report = evaluate(test, pred, probs, tau=2.0, n_boot=20)
    shifted, empty = report["per_image"][1], report["per_image"][5]
    # 2 working px are 8 original px: HD95 scales, and the NSD tolerance of 2 px no longer covers it
    assert shifted["hd95"] == pytest.approx(2.0) and 7.0 <= shifted["hd95_orig"] <= 9.0
    assert shifted["nsd"] == pytest.approx(1.0) and shifted["nsd_orig"] < 0.6
    assert shifted["dice_orig"] == pytest.approx(shifted["dice"], abs=0.03)
    assert shifted["original_size"] == [160, 80]
    # an empty prediction scores the image diagonal, in the pixels of each resolution
    assert empty["hd95"] == pytest.approx(math.hypot(40, 40))
    assert empty["hd95_orig"] == pytest.approx(math.hypot(160, 80))
    m = {k: v["value"] for k, v in report["metrics"].items()}
    assert m["hd95_orig"] == pytest.approx(
        np.mean([r["hd95_orig"] for r in report["per_image"][1:3] + report["per_image"][4:]])
    )
    # per class Dice: the empty prediction on one malignant image halves that class's Dice
    assert m["dice_benign"] == pytest.approx(shifted["dice"]) and m["dice_malignant"] == pytest.approx(
        shifted["dice"] / 2
    )
    assert m["dice_benign_orig"] == pytest.approx(2 * m["dice_malignant_orig"]) and "dice_normal" not in m
    assert report["settings"]["tau_px_original"] == 2.0 and report["settings"]["working_size_px"] == 40
    # tau in original pixels: a tolerance of 10 original px covers the 8 px shift
    wide = evaluate(test, pred, probs, tau=2.0, tau_original=10.0, n_boot=20)
    assert wide["per_image"][1]["nsd_orig"] == pytest.approx(1.0)
    assert wide["metrics"]["nsd_orig"]["value"] == pytest.approx(m["nsd"])
    assert wide["metrics"]["hd95"] == report["metrics"]["hd95"]  # the working-size figures do not move


def test_original_masks_are_reread_at_full_size(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", (2, 3, 3), height=50, width=90)
    copy = np.asarray(Image.open(root / "benign" / "benign (1).png"))
    write_image(root / "benign" / "benign (9).png", np.clip(copy.astype(int) + 6, 0, 255).astype(np.uint8))
    write_mask(
        root / "benign" / "benign (9)_mask.png",
        np.asarray(Image.open(root / "benign" / "benign (1)_mask.png")),
    )
    dataset = load_dataset(DataConfig(root=str(root), image_size=32), progress=False)
    test = heldout_from_dataset(dataset, [1, 2, 5, 3])
    assert test.paths == [dataset.paths[i] for i in (1, 2, 5, 3)]
    assert (
        test.groups[test.paths.index("benign/benign (1).png")]
        == test.groups[test.paths.index("benign/benign (9).png")]
    )
    for i, path in enumerate(test.paths):
        full = test.original_masks[i]
        assert full.shape == (50, 90) and full.dtype == bool
        assert np.array_equal(full, np.asarray(Image.open(root / path.replace(".png", "_mask.png"))) > 0)
        assert np.array_equal(resize_pair(np.zeros((50, 90), np.uint8), full, 32)[1] > 0, test.masks[i])
        assert (test.resize_infos[i].orig_w, test.resize_infos[i].orig_h) == (90, 50)


def test_original_size_metrics_equal_the_metrics_on_the_whole_masks() -> None:
    """The masks predict writes, scored whole: the per-image window (union bounding box) changes nothing,
    also for masks at the image border."""
    rng = np.random.default_rng(5)
    h, w = 90, 130
    yy, xx = np.mgrid[:h, :w]
    originals, infos, preds = [], [], []
    for i in range(6):
        cy, cx = (0, 0) if i == 0 else rng.integers(10, 80, 2)
        gt = ((yy - cy) / 15) ** 2 + ((xx - cx) / 25) ** 2 <= 1 if i != 5 else np.zeros((h, w), bool)
        _, work, info = resize_pair(np.zeros((h, w), np.uint8), gt, 48)
        originals.append(gt)
        infos.append(info)
        preds.append(
            np.roll(work * 0.8 + rng.uniform(0, 0.3, work.shape), tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
        )  # compact; wraps at the border
    preds[1][:] = 0.2  # an empty prediction on a lesion image
    test = HeldOutSet(
        np.zeros((6, 48, 48), np.uint8),
        np.zeros((6, 48, 48), bool),
        np.zeros(6, np.int64),
        [""] * 6,
        NAMES,
        resize_infos=infos,
        original_masks=originals,
    )
    got = original_size_metrics(np.stack(preds), test, tau=3.0, min_area=10)
    for i in range(6):
        mask = lesion_mask(undo_resize(preds[i].astype(np.float32), infos[i]))  # as predict decides
        whole = segmentation_metrics(mask[None], originals[i][None], tau=3.0)
        assert got["area_px"][i] == mask.sum()
        for k in ("dice", "iou", "hd95", "nsd"):
            assert got[k][i] == pytest.approx(whole["per_image"][k][0], nan_ok=True), (i, k)
    assert np.isnan(got["dice"][5]) and got["hd95"][1] == pytest.approx(math.hypot(h, w))
