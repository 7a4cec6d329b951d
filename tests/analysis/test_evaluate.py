"""Test-set evaluation: metrics with bootstrap intervals, figures, and the log of evaluations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analysis.evaluate import HeldOutSet, evaluate, heldout_digest, record_evaluation, write_figures

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
