"""benchmarks/anchor_protocol.py: per-subset figures by hand, and end to end on a tiny train run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import anchor_protocol as ap

NAMES = ["benign", "malignant", "normal"]


def _row(fold: int, path: str, label: int, pred: int, dice: float, drawn: int) -> dict:
    return {"fold": fold, "path": path, "label": label, "pred": pred, "dice": dice, "drawn": drawn}


ROWS = [
    _row(0, "benign/a.png", 0, 0, 0.8, 120),
    _row(0, "malignant/b.png", 1, 0, 0.4, 80),
    _row(0, "normal/c.png", 2, 2, math.nan, 0),
    _row(1, "benign/d.png", 0, 0, 1.0, 50),
    _row(1, "normal/e.png", 2, 0, math.nan, 3),
    _row(1, "malignant/f.png", 1, 1, 0.0, 0),
]


def test_subset_figures_by_hand() -> None:
    f = ap.subset_figures(ROWS, NAMES)
    # Dice: per fold the mean over lesion images (0.6 and 0.5), then mean and sample std over folds.
    assert f["n"] == 6 and f["n_lesion"] == 4
    assert f["dice"] == pytest.approx(0.55) and f["dice_std"] == pytest.approx(np.std([0.6, 0.5], ddof=1))
    assert f["dice_benign"] == pytest.approx(0.9) and f["dice_malignant"] == pytest.approx(0.2)
    assert "dice_normal" not in f
    # The anchor's code: every image, a normal one 1 when nothing is drawn (c), 0 otherwise (e, 3 px):
    # fold 0 (0.8 + 0.4 + 1) / 3, fold 1 (1 + 0 + 0) / 3, then the mean over folds.
    assert f["anchor_dice"] == pytest.approx(((0.8 + 0.4 + 1.0) / 3 + 1.0 / 3) / 2)
    assert f["normal_empty"] == pytest.approx(0.5)
    assert f["acc"] == pytest.approx(4 / 6)
    # Per class F1: benign P 2/4 R 1 -> 2/3; malignant P 1 R 1/2 -> 2/3; normal P 1 R 1/2 -> 2/3.
    assert f["macro_f1"] == pytest.approx(2 / 3) and f["weighted_f1"] == pytest.approx(2 / 3)
    assert ap.subset_figures([], NAMES) == {"n": 0}


def test_by_subset_splits_on_the_curation() -> None:
    kept = {"benign/a.png", "normal/c.png", "malignant/f.png"}
    figures = ap.by_subset(ROWS, kept, NAMES)
    assert figures["all"] == ap.subset_figures(ROWS, NAMES)
    assert figures["kept"]["n"] == 3 and figures["removed"]["n"] == 3
    assert figures["kept"]["dice"] == pytest.approx(0.4)  # fold 0: 0.8, fold 1: 0.0
    assert figures["kept"]["dice_std"] == pytest.approx(np.std([0.8, 0.0], ddof=1))
    assert figures["kept"]["anchor_dice"] == pytest.approx(((0.8 + 1.0) / 2 + 0.0) / 2)
    table = ap.format_table(figures, NAMES)
    assert table.count("\n") == 4 and "| kept | 3 (2) |" in table


def test_skips_without_run_or_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ap.main(["--data", str(tmp_path)]) == 0
    assert "RESULT anchor_protocol: skipped" in capsys.readouterr().out
    assert ap.main(["--run", str(tmp_path), "--data", str(tmp_path)]) == 0
    assert "busi_curated/kept.csv" in capsys.readouterr().out


def test_out_of_fold_rows_of_a_tiny_run(tmp_path: Path) -> None:
    from tests.trainables.test_loop import tiny_spec
    from trainables.train import run_train

    run = tmp_path / "run"
    run_train(tiny_spec(epochs=1, lesion_gate="classifier"), run, device="cpu", progress=False)
    rows, names = ap.out_of_fold_rows(run)
    splits = json.loads((run / "splits.json").read_text(encoding="utf-8"))
    # Every fold's validation images once, in the split file's folds; Dice only on lesion images.
    assert sorted(r["path"] for r in rows) == sorted(p for fold in splits["folds"] for p in fold["val"])
    normal = names.index("normal")
    for r in rows:
        assert (r["label"] == normal) == math.isnan(r["dice"])
        assert math.isnan(r["dice"]) or 0.0 <= r["dice"] <= 1.0
        assert r["drawn"] >= 0 and (r["dice"] == 0.0 or r["drawn"] > 0 or math.isnan(r["dice"]))
        # The classifier gate: an image called normal has no lesion, so its Dice is 0.
        if r["pred"] == normal:
            assert r["drawn"] == 0 and (r["label"] == normal or r["dice"] == 0.0)
    # --images training: each fold's training images instead, each image in all folds but its own.
    fit, _ = ap.out_of_fold_rows(run, images="training")
    for k, fold in enumerate(splits["folds"]):
        assert sorted(r["path"] for r in fit if r["fold"] == k) == sorted(fold["train"])
    with pytest.raises(ValueError, match="validation"):
        ap.out_of_fold_rows(run, images="test")
    (run / "fold1_best.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"fold1_best.*missing"):
        ap.out_of_fold_rows(run)
