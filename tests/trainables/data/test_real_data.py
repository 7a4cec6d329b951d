"""The issue's acceptance checks on the real samples (skipped without BUS_REAL_DATA)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from trainables.data.cache import load_dataset
from trainables.data.config import DataConfig
from trainables.data.splits import make_splits, split_indices, validate_splits

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.real_data


def _audit(root: Path, out: Path) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run(
        [sys.executable, "launch.py", "audit", str(root), "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, json.loads(out.read_text(encoding="utf-8"))


def test_seed_sample_audit_reports_the_orphan_mask(seed_sample: Path, tmp_path: Path) -> None:
    proc, report = _audit(seed_sample, tmp_path / "a.json")
    assert proc.returncode == 0, proc.stderr
    assert report["orphan_masks"] == ["normal/PACE_01882_000_BUSI_mask.png"]
    assert report["classes"] == {"normal": 4, "benign": 18, "malignant": 42} and report["images"] == 64
    assert report["unreadable"] == [] and report["missing_masks"] == []
    assert "orphan masks (no image; not used): 1" in proc.stdout


def test_busi_subset_audit_reports_the_multi_mask_images(busi_subset: Path, tmp_path: Path) -> None:
    proc, report = _audit(busi_subset, tmp_path / "a.json")
    assert proc.returncode == 0, proc.stderr
    assert report["multi_mask_images"] == ["benign/benign (25).png", "benign/benign (4).png"]
    assert report["classes"] == {"normal": 35, "benign": 35, "malignant": 35}
    # BUSI's own quirk: this second mask is drawn on the 555x465 frame the 416x416 image was cut from
    assert report["size_mismatch"] == [
        {"image": "benign/benign (4).png", "mask": "benign/benign (4)_mask_1.png"}
    ]
    # one lesion's frames malignant (3)..(9) form one group (hash copies + same-lesion frames), and so do
    # (27)/(28), which the hash alone left apart
    assert [f"malignant/malignant ({k}).png" for k in range(3, 10)] in report["duplicate_groups"]
    assert ["malignant/malignant (27).png", "malignant/malignant (28).png"] in report["duplicate_groups"]
    assert report["cross_class_duplicates"] == [] and report["conflicting_labels"] == []


def test_busi_subset_cache_and_splits(
    busi_subset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUS_CACHE_DIR", str(tmp_path / "cache"))
    cfg = DataConfig(root=str(busi_subset), image_size=64)
    start = time.perf_counter()
    ds = load_dataset(cfg, progress=False)
    built = time.perf_counter() - start
    start = time.perf_counter()
    again = load_dataset(cfg, progress=False)
    reused = time.perf_counter() - start
    assert again.cache_path == ds.cache_path and reused < built
    assert len(ds) == 105 and ds.class_counts().tolist() == [35, 35, 35]
    assert ds.masks[ds.labels == 0].sum() == 0  # BUSI normal masks are all zero
    assert all(ds.masks[i].sum() > 0 for i in np.flatnonzero(ds.labels > 0))
    four = ds.paths.index("benign/benign (4).png")
    assert ndimage.label(ds.masks[four])[1] == 2  # both lesions, the centre-cropped second one included
    splits = make_splits(ds, folds=3, test_fraction=0.2, seed=42)
    validate_splits(splits, ds)
    idx = split_indices(splits, ds)
    assert len(idx.test) == 21 and sorted(np.concatenate([idx.test, idx.dev]).tolist()) == list(range(105))
    family = [ds.paths.index(f"malignant/malignant ({i}).png") for i in (7, 8, 9)]
    assert len({ds.groups[i] for i in family}) == 1
    part = {p: k for k, lst in enumerate([splits["test"]] + [f["val"] for f in splits["folds"]]) for p in lst}
    assert len({part[ds.paths[i]] for i in family}) == 1
