"""The same-lesion frame signal: shift-tolerant correlation, candidate pairs, and the grouping it adds."""

from __future__ import annotations

import numpy as np
import pytest

from tests.trainables.data.conftest import texture
from trainables.data.audit import frame_rule
from trainables.data.config import DedupConfig
from trainables.data.dedup import DUPLICATE_THRESHOLD, group_duplicates, hamming, image_hash
from trainables.data.frames import (
    MIN_OVERLAP,
    FrameRule,
    candidate_pairs,
    frame_links,
    frame_scores,
    frame_signature,
    shift_correlation,
)


def _brute_force(a: np.ndarray, b: np.ndarray, min_overlap: float) -> float:
    """Pearson correlation at every shift, by explicit overlap windows."""
    best = -1.0
    (ha, wa), (hb, wb) = a.shape, b.shape
    for dy in range(-(hb - 1), ha):
        for dx in range(-(wb - 1), wa):
            y0, y1, x0, x1 = max(0, dy), min(ha, dy + hb), max(0, dx), min(wa, dx + wb)
            if (y1 - y0) * (x1 - x0) < min_overlap * max(a.size, b.size):
                continue
            pa = a[y0:y1, x0:x1].ravel()
            pb = b[y0 - dy : y1 - dy, x0 - dx : x1 - dx].ravel()
            if pa.std() < 1e-9 or pb.std() < 1e-9:
                continue
            best = max(best, float(np.corrcoef(pa, pb)[0, 1]))
    return best


@pytest.mark.parametrize("shape_b", [(9, 11), (12, 8), (10, 10)])
def test_shift_correlation_matches_explicit_windows(shape_b: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 10))
    b = rng.normal(size=shape_b)
    b[:6, :6] += 3 * a[2:8, 3:9]  # a shifted copy in part of b
    assert shift_correlation(a, b, 0.3) == pytest.approx(_brute_force(a, b, 0.3), abs=1e-9)
    assert shift_correlation(a, b) == pytest.approx(_brute_force(a, b, MIN_OVERLAP), abs=1e-9)


def test_no_overlap_large_enough_gives_minus_one() -> None:
    assert shift_correlation(np.ones((4, 4)), np.random.default_rng(1).normal(size=(20, 20))) == -1.0


def test_a_crop_is_linked_where_the_hash_misses_it() -> None:
    """BUSI's cropped copies: one image trimmed on a side, same pixel scale."""
    full = texture(7, 420, 520, sigma=25)
    crop = full[:, 90:]  # 17% trimmed: a different fixed-size thumbnail
    assert hamming(image_hash(full), image_hash(crop)) > DUPLICATE_THRESHOLD
    a, b = frame_signature(full), frame_signature(crop)
    appearance, structure = frame_scores(a, b)
    assert appearance > 0.99 and structure > 0.95
    groups = group_duplicates([image_hash(full), image_hash(crop)], signatures=[a, b], rule=FrameRule())
    assert groups == [[0, 1]]
    assert group_duplicates([image_hash(full), image_hash(crop)]) == []  # hash alone


def test_a_moved_probe_frame_is_linked_and_unrelated_images_are_not() -> None:
    scene = texture(3, 500, 600, sigma=25)
    frame_1, frame_2 = scene[:420, :500], scene[30:450, 40:540]  # the probe moved by 30 / 40 px
    others = [texture(s, 420, 500, sigma=25) for s in (11, 12, 13, 14)]
    images = [frame_1, frame_2, *others]
    signatures = [frame_signature(g) for g in images]
    links = frame_links(signatures, FrameRule(neighbours=3))
    assert links == [(0, 1)]


def test_small_images_get_no_signature_and_no_links() -> None:
    assert frame_signature(texture(1, 128, 128)) is None  # thumbnails under 24 px: too few samples
    assert frame_links([None, frame_signature(texture(1, 400, 400, sigma=25))], FrameRule()) == []


def test_candidates_are_each_images_nearest_neighbours() -> None:
    signatures = [frame_signature(texture(s, 300, 300, sigma=25)) for s in range(8)]
    pairs = candidate_pairs(signatures, neighbours=2)
    assert all(i < j for i, j in pairs) and len(set(pairs)) == len(pairs)
    for i in range(8):
        assert sum(i in p for p in pairs) >= 2  # each image meets at least its own 2 nearest
    assert len(candidate_pairs(signatures, neighbours=7)) == 28  # everyone
    assert candidate_pairs([signatures[0], None], neighbours=3) == []


def test_threads_give_the_same_links() -> None:
    scene = texture(5, 520, 620, sigma=25)
    images = [scene[i * 8 : 420 + i * 8, i * 10 : 500 + i * 10] for i in range(6)]
    images += [texture(s, 420, 500, sigma=25) for s in range(20, 40)]
    signatures = [frame_signature(g) for g in images]
    one = frame_links(signatures, FrameRule(neighbours=5), workers=1)
    two = frame_links(signatures, FrameRule(neighbours=5), workers=2)
    assert one == two and {(0, 1), (1, 2)} <= set(one)


def test_rule_from_the_spec_section() -> None:
    assert frame_rule(DedupConfig(frames=False)) is None
    rule = frame_rule(DedupConfig(appearance=0.9, structure=0.3, neighbours=4))
    assert rule == FrameRule(appearance=0.9, structure=0.3, neighbours=4)
    assert rule.links(0.95, 0.35) and not rule.links(0.95, 0.29) and rule.links(0.89, 0.5)
    assert not rule.links(0.87, 0.9)
