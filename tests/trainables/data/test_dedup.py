"""Near-duplicate detection: copies re-saved, resized, brightened or cropped group; distinct images don't."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.trainables.data.conftest import texture
from trainables.data.dedup import (
    DUPLICATE_THRESHOLD,
    group_duplicates,
    group_ids,
    hamming,
    image_hash,
)
from trainables.data.imageio import read_gray


def _variants(gray: np.ndarray) -> dict[str, np.ndarray]:
    """The copies the issue names: re-save, resize, slight brightness change, few-pixel crop."""
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, "JPEG", quality=80)
    h, w = gray.shape
    return {
        "resaved_jpeg": np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L")),
        "resized": np.asarray(Image.fromarray(gray).resize((round(w * 0.75), round(h * 0.8)))),
        "upscaled": np.asarray(
            Image.fromarray(gray).resize((w * 3 // 2, h * 3 // 2), Image.Resampling.BICUBIC)
        ),
        "brighter": np.clip(gray.astype(int) + 12, 0, 255).astype(np.uint8),
        "contrast": np.clip(gray.astype(float) * 1.1, 0, 255).astype(np.uint8),
        "cropped": gray[3:, 3:-3],
    }


def _realistic(seed: int) -> np.ndarray:
    return texture(seed, 160, 192, sigma=8.0)


@pytest.mark.parametrize("seed", range(6))
def test_copies_are_grouped_with_their_source(seed: int) -> None:
    source = _realistic(100 + seed)
    variants = _variants(source)
    hashes = [image_hash(source)] + [image_hash(v) for v in variants.values()]
    for name, h in zip(variants, hashes[1:]):
        assert hamming(hashes[0], h) <= DUPLICATE_THRESHOLD, name
    assert group_duplicates(hashes) == [list(range(len(hashes)))]


def test_distinct_images_are_not_grouped() -> None:
    hashes = [image_hash(_realistic(seed)) for seed in range(40)]
    assert group_duplicates(hashes) == []


def test_groups_are_transitive_and_ids_cover_singletons() -> None:
    a, b = _realistic(1), _realistic(2)
    hashes = [image_hash(a), image_hash(b), None, image_hash(a[2:-2, 2:-2]), image_hash(a[2:, 2:][2:, 2:])]
    groups = group_duplicates(hashes)
    assert groups == [[0, 3, 4]]
    assert group_ids(5, groups).tolist() == [0, 1, 2, 0, 0]
    assert group_duplicates([None, image_hash(a)]) == []


def test_threshold_controls_grouping() -> None:
    a = _realistic(7)
    hashes = [image_hash(a), image_hash(np.clip(a.astype(int) + 12, 0, 255).astype(np.uint8))]
    distance = hamming(*hashes)
    assert group_duplicates(hashes, threshold=distance) == [[0, 1]]
    if distance > 0:
        assert group_duplicates(hashes, threshold=distance - 1) == []


def test_synthetic_planted_duplicates_are_found_and_nothing_else(tmp_path: Path) -> None:
    from trainables.data.audit import audit_folder
    from trainables.data.synthetic import make_synthetic, read_manifest

    root = make_synthetic(tmp_path / "syn", n_per_class=(5, 6, 5), size=128, seed=3)
    planted = sorted(sorted([d["source"], d["copy"]]) for d in read_manifest(root)["duplicates"])
    assert planted, "the generator planted no duplicates"
    assert audit_folder(root)["duplicate_groups"] == planted


def test_real_copies_grouped_and_distinct_real_images_not(busi_subset: Path) -> None:
    benign = sorted(p for p in (busi_subset / "benign").glob("*.png") if "_mask" not in p.name)
    grays = [read_gray(p) for p in benign]
    hashes = [image_hash(g) for g in grays]
    assert group_duplicates(hashes) == []  # 35 different benign cases
    for gray in grays[:8]:
        for name, variant in _variants(gray).items():
            assert hamming(image_hash(gray), image_hash(variant)) <= DUPLICATE_THRESHOLD, name
