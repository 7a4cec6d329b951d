"""The audit, splits and make-synthetic verbs, run through launch.py's parser in-process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import launch
from tests.trainables.data.conftest import write_mask
from trainables.data.cache import load_dataset
from trainables.data.config import DataConfig
from trainables.data.splits import validate_splits


def test_audit_usable_prints_report_and_writes_json(busi_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "reports" / "a.json"
    assert launch.main(["audit", str(busi_dir), "--json", str(out)]) == 0
    printed = capsys.readouterr()
    assert "images: 8 (normal 2, benign 3, malignant 3)" in printed.out and printed.err == ""
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["images"] == 8 and report["root"] == str(busi_dir)


def test_audit_not_usable_exits_2_with_reason(busi_dir: Path, capsys) -> None:
    (busi_dir / "normal" / "normal (1)_mask.png").unlink()
    assert launch.main(["audit", str(busi_dir)]) == 2
    err = capsys.readouterr().err
    assert "not usable" in err and "normal/normal (1).png" in err
    assert launch.main(["audit", str(busi_dir), "--missing-mask", "empty"]) == 0
    assert launch.main(["audit", str(busi_dir / "normal")]) == 2
    assert "missing class folder" in capsys.readouterr().err


def test_audit_custom_classes(busi_dir: Path, capsys) -> None:
    assert launch.main(["audit", str(busi_dir), "--classes", "benign", "malignant"]) == 0
    assert "ignored files: 1" in capsys.readouterr().out


def test_splits_file_matches_the_cached_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.trainables.data.conftest import make_folder

    monkeypatch.setenv("BUS_CACHE_DIR", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "d", (6, 9, 7))
    os.link(root / "benign" / "benign (1).png", root / "benign" / "copy.png")
    write_mask(root / "benign" / "copy_mask.png", np.zeros((48, 56), bool))
    out = tmp_path / "splits.json"
    assert launch.main(["splits", str(root), "--out", str(out), "--folds", "2", "--seed", "3"]) == 0
    splits = json.loads(out.read_text(encoding="utf-8"))
    assert splits["seed"] == 3 and len(splits["folds"]) == 2
    dataset = load_dataset(DataConfig(root=str(root), image_size=32), progress=False)
    assert splits["fingerprint"] == dataset.fingerprint
    validate_splits(splits, dataset)  # same groups: the copy sits with its source
    parts = [splits["test"]] + [f["val"] for f in splits["folds"]]
    assert [("benign/copy.png" in p) for p in parts] == [("benign/benign (1).png" in p) for p in parts]
    half = tmp_path / "half.json"
    args = ["splits", str(root), "--out", str(half), "--folds", "2", "--seed", "3", "--train-fraction", "0.5"]
    assert launch.main(args) == 0
    thinned = json.loads(half.read_text(encoding="utf-8"))
    assert thinned["train_fraction"] == 0.5 and thinned["test"] == splits["test"]
    for fold, whole in zip(thinned["folds"], splits["folds"]):
        assert fold["val"] == whole["val"] and set(fold["train"]) < set(whole["train"])
    validate_splits(thinned, dataset)


def test_splits_leave_out_conflicting_labels_like_the_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.trainables.data.conftest import make_folder

    monkeypatch.setenv("BUS_CACHE_DIR", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "d", (6, 9, 7))
    os.link(root / "benign" / "benign (1).png", root / "malignant" / "copy.png")  # filed under two classes
    write_mask(root / "malignant" / "copy_mask.png", np.zeros((48, 56), bool))
    out = tmp_path / "splits.json"
    assert launch.main(["splits", str(root), "--out", str(out), "--folds", "2"]) == 0
    assert "left out 2 image(s)" in capsys.readouterr().out
    splits = json.loads(out.read_text(encoding="utf-8"))
    named = set(splits["test"]).union(*(set(f["val"]) for f in splits["folds"]))
    assert "malignant/copy.png" not in named and "benign/benign (1).png" not in named
    validate_splits(splits, load_dataset(DataConfig(root=str(root), image_size=32), progress=False))
    keep = tmp_path / "keep.json"
    assert launch.main(["splits", str(root), "--out", str(keep), "--conflicting-labels", "keep"]) == 0
    kept = json.loads(keep.read_text(encoding="utf-8"))
    assert "malignant/copy.png" in set(kept["test"]).union(*(set(f["val"]) for f in kept["folds"]))


def test_splits_refuses_unusable_data(busi_dir: Path, tmp_path: Path, capsys) -> None:
    args = ["splits", str(busi_dir), "--out", str(tmp_path / "s.json"), "--train-fraction", "1.5"]
    assert launch.main(args) == 2
    assert "--train-fraction 1.5: expected a number in (0, 1]" in capsys.readouterr().err
    (busi_dir / "benign" / "benign (1).png").write_bytes(b"")
    assert launch.main(["splits", str(busi_dir), "--out", str(tmp_path / "s.json")]) == 2
    assert "0 bytes" in capsys.readouterr().err and not (tmp_path / "s.json").exists()


def test_make_synthetic_defaults_and_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainables.data.synthetic as synthetic

    calls: list[dict] = []
    monkeypatch.setattr(synthetic, "make_synthetic", lambda out, **kw: calls.append(kw) or Path(out))
    assert launch.main(["make-synthetic", "--out", str(tmp_path / "a")]) == 0
    assert "n_per_class" not in calls[0] and "size" not in calls[0] and calls[0]["seed"] == 0
    monkeypatch.undo()
    out = tmp_path / "syn"
    assert (
        launch.main(["make-synthetic", "--out", str(out), "--n-per-class", "2", "3", "2", "--size", "48"])
        == 0
    )
    assert launch.main(["audit", str(out)]) == 0
    assert len(list((out / "benign").glob("benign (?).png"))) == 3
    assert launch.main(["make-synthetic", "--out", str(out), "--size", "8"]) == 2
