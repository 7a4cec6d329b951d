"""The dataset cache: contents, reuse, invalidation, atomicity, location, synthetic default."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import trainables.data.cache as cache
from tests.trainables.data.conftest import write_mask
from trainables.data.cache import BUSDataset, cache_dir, clear_cache, load_dataset
from trainables.data.config import DataConfig, SyntheticConfig
from trainables.data.errors import DataError


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("BUS_CACHE_DIR", str(path))
    return path


def _cfg(root: Path, **kw: object) -> DataConfig:
    return DataConfig(root=str(root), **({"image_size": 32} | kw))


def test_arrays_and_fields(busi_dir: Path) -> None:
    shutil.copy(busi_dir / "benign" / "benign (1).png", busi_dir / "benign" / "benign (9).png")
    shutil.copy(busi_dir / "benign" / "benign (1)_mask.png", busi_dir / "benign" / "benign (9)_mask.png")
    ds = load_dataset(_cfg(busi_dir), progress=False)
    assert isinstance(ds, BUSDataset) and len(ds) == 9
    assert ds.images.shape == ds.masks.shape == (9, 32, 32)
    assert ds.images.dtype == ds.masks.dtype == np.uint8 and set(np.unique(ds.masks)) == {0, 1}
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert ds.paths[2:4] == ["benign/benign (1).png", "benign/benign (2).png"]
    assert ds.class_names == ("normal", "benign", "malignant")
    assert ds.orig_sizes.dtype == np.int32 and ds.orig_sizes.tolist()[0] == [56, 48]
    assert ds.groups.dtype == np.int64
    copy = ds.paths.index("benign/benign (9).png")
    assert ds.groups[copy] == ds.groups[2] and len(set(ds.groups.tolist())) == 8
    assert ds.root == str(busi_dir) and len(ds.fingerprint) == 64
    assert ds.audit["duplicate_groups"] == [["benign/benign (1).png", "benign/benign (9).png"]]
    assert ds.masks[:2].sum() == 0 and ds.masks[2].sum() > 0  # normal images: empty masks
    # letterbox: 56x48 -> 32x27, black bands top and bottom
    assert ds.resize_info(0).new_h == 27 and ds.images[:, 0].max() == 0
    assert isinstance(ds.images, np.memmap) and not ds.images.flags.writeable
    sub = ds.subset([2, copy])
    assert sub.paths == ["benign/benign (1).png", "benign/benign (9).png"] and sub.images.flags.writeable
    assert ds.class_counts().tolist() == [2, 4, 3]


def test_second_load_reuses_the_entry(busi_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_dataset(_cfg(busi_dir), progress=False)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again instead of reusing the cache")

    monkeypatch.setattr(cache, "run_audit", no_decoding)
    second = load_dataset(_cfg(busi_dir), progress=False)
    assert second.cache_path == first.cache_path
    assert np.array_equal(second.images, first.images) and second.audit == first.audit
    copy = busi_dir.parent / "elsewhere"  # same files at another place (another node): same entry
    shutil.copytree(busi_dir, copy)
    moved = load_dataset(_cfg(copy), progress=False)
    assert (
        moved.cache_path == first.cache_path and moved.root == str(copy) and moved.audit["root"] == str(copy)
    )


def test_changes_invalidate(busi_dir: Path) -> None:
    base = load_dataset(_cfg(busi_dir), progress=False)
    other_size = load_dataset(_cfg(busi_dir, image_size=40), progress=False)
    stretched = load_dataset(_cfg(busi_dir, resize="stretch"), progress=False)
    assert len({base.cache_path, other_size.cache_path, stretched.cache_path}) == 3
    assert other_size.images.shape[1:] == (40, 40) and stretched.images[:, 0].max() > 0
    assert other_size.fingerprint == base.fingerprint  # the data did not change
    write_mask(busi_dir / "benign" / "benign (1)_mask.png", np.ones((48, 56), bool))
    changed = load_dataset(_cfg(busi_dir), progress=False)
    assert changed.fingerprint != base.fingerprint and changed.cache_path != base.cache_path
    assert changed.masks[2].sum() > base.masks[2].sum()


def test_unusable_data_raises_and_leaves_nothing(busi_dir: Path, own_cache: Path) -> None:
    (busi_dir / "benign" / "benign (2).png").write_bytes(b"")
    write_mask(busi_dir / "malignant" / "malignant (1)_mask.png", np.zeros((10, 10), bool))
    with pytest.raises(
        DataError, match=r"(?s)cannot be used.*benign/benign \(2\)\.png.*malignant \(1\)_mask\.png"
    ):
        load_dataset(_cfg(busi_dir), progress=False)
    leftovers = [p.name for p in (own_cache / "datasets").iterdir() if p.is_dir()]
    assert leftovers == []
    (busi_dir / "normal" / "normal (1)_mask.png").unlink()
    with pytest.raises(DataError, match="without a mask"):
        load_dataset(_cfg(busi_dir), progress=False)


def test_missing_mask_empty_policy(busi_dir: Path) -> None:
    (busi_dir / "normal" / "normal (1)_mask.png").unlink()
    ds = load_dataset(_cfg(busi_dir, missing_mask="empty"), progress=False)
    assert len(ds) == 8 and ds.masks[0].sum() == 0
    skipped = load_dataset(_cfg(busi_dir, missing_mask="skip"), progress=False)
    assert len(skipped) == 7 and "normal/normal (1).png" not in skipped.paths


def test_cache_location_and_clear(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, busi_dir: Path) -> None:
    assert cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("BUS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "bus-search"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "bus-search"
    monkeypatch.setenv("BUS_CACHE_DIR", str(tmp_path / "cache"))
    load_dataset(_cfg(busi_dir), progress=False)
    assert clear_cache() == 1
    assert not (tmp_path / "cache" / "datasets").exists()


def test_synthetic_default(own_cache: Path) -> None:
    from trainables.data.synthetic import read_manifest

    cfg = DataConfig(
        root=None, image_size=32, synthetic=SyntheticConfig(n_per_class=[4, 5, 4], size=64, seed=1)
    )
    ds = load_dataset(cfg, progress=False)
    assert ds.root is None and len(ds) == 13 and ds.class_counts().tolist() == [4, 5, 4]
    source = Path(ds.audit["root"])
    assert source.is_relative_to(own_cache / "synthetic")
    planted = sorted(sorted([d["source"], d["copy"]]) for d in read_manifest(source)["duplicates"])
    assert ds.audit["duplicate_groups"] == planted
    for a, b in planted:
        assert ds.groups[ds.paths.index(a)] == ds.groups[ds.paths.index(b)]
    again = load_dataset(cfg, progress=False)
    assert again.cache_path == ds.cache_path and again.fingerprint == ds.fingerprint


def _load_in_child(root: str, cache: str) -> tuple[str, int]:
    import os

    os.environ["BUS_CACHE_DIR"] = cache
    ds = load_dataset(DataConfig(root=root, image_size=32), progress=False)
    return str(ds.cache_path), int(ds.images.sum())


def test_concurrent_processes_build_one_entry(busi_dir: Path, own_cache: Path) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_load_in_child, [str(busi_dir)] * 2, [str(own_cache)] * 2))
    assert results[0] == results[1]
    assert [p.name for p in (own_cache / "datasets").iterdir() if p.is_dir()] == [Path(results[0][0]).name]


def _cross_class_copy(root: Path) -> None:
    """benign (1) filed a second time as malignant: a duplicate group with contradictory labels."""
    shutil.copy(root / "benign" / "benign (1).png", root / "malignant" / "zz copy.png")
    shutil.copy(root / "benign" / "benign (1)_mask.png", root / "malignant" / "zz copy_mask.png")


def test_conflicting_labels_are_dropped_and_listed(
    busi_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cross_class_copy(busi_dir)
    ds = load_dataset(_cfg(busi_dir), progress=False)  # default: drop
    dropped = ["benign/benign (1).png", "malignant/zz copy.png"]
    assert len(ds) == 7 and not set(dropped) & set(ds.paths)
    assert ds.audit["dropped_conflicting"] == dropped and ds.audit["conflicting_policy"] == "drop"
    assert ds.audit["conflicting_labels"] == dropped and ds.class_counts().tolist() == [2, 2, 3]
    assert len(ds.images) == len(ds.masks) == len(ds.labels) == len(ds.groups) == len(ds.orig_sizes) == 7
    assert ds.cache_path is not None
    err = capsys.readouterr().err
    assert "dropped 2 image(s)" in err and "benign (1).png" in err
    kept = load_dataset(_cfg(busi_dir, conflicting_labels="keep"), progress=False)
    assert len(kept) == 9 and kept.audit["dropped_conflicting"] == []
    assert kept.cache_path == ds.cache_path  # one cache entry; the policy applies when opened


def test_dropping_conflicting_labels_may_not_empty_a_class(tmp_path: Path) -> None:
    from tests.trainables.data.conftest import make_folder

    root = make_folder(tmp_path / "d", counts=(2, 1, 2))
    _cross_class_copy(root)
    with pytest.raises(DataError, match=r"no image in class.*benign.*conflicting_labels: keep"):
        load_dataset(_cfg(root), progress=False)


def test_dedup_settings_enter_the_key(busi_dir: Path) -> None:
    from trainables.data.config import DedupConfig

    base = load_dataset(_cfg(busi_dir), progress=False)
    loose = load_dataset(_cfg(busi_dir, dedup=DedupConfig(hash_bits=20)), progress=False)
    no_frames = load_dataset(_cfg(busi_dir, dedup=DedupConfig(frames=False)), progress=False)
    assert len({base.cache_path, loose.cache_path, no_frames.cache_path}) == 3
