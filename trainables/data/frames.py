"""Same-lesion frames and cropped copies: a second duplicate signal beside the perceptual hash.

The hash (:mod:`trainables.data.dedup`) compares fixed-size thumbnails, so it misses two kinds of
images that must share a split part: **cropped copies** (BUSI ``benign (62)`` is ``benign (140)``
trimmed by 63 px on one side) and **consecutive frames of one lesion** (``malignant (3)`` .. ``(9)``:
the probe moved, 17-24 bits apart in a 64-bit phash, while a hash threshold wide enough to join them
chains all 780 BUSI images into one group). This signal compares images at one *pixel scale* and over
all shifts, so a crop or a small probe move costs little:

- each image is area-averaged by :data:`SCALE` (8 original pixels per thumbnail pixel);
- *appearance*: the highest Pearson correlation of two thumbnails over every relative shift whose overlap
  covers at least :data:`MIN_OVERLAP` of *each* (normalised cross-correlation, by FFT). Measured against
  "of the smaller one": a small image then slides over a large one at many shifts and finds a chance
  match (BUSI ``benign (20)`` in ``malignant (18)``: structure 0.50, an unrelated lesion);
- *structure*: the same on band-passed thumbnails (minus a Gaussian blur of sigma :data:`BAND_SIGMA`
  thumbnail pixels). Every breast ultrasound image is bright on top and dark below, so appearance alone
  is high for unrelated images (median 0.67 over all BUSI pairs, 0.88 at the 99th percentile); the
  band-pass removes that shared layout and keeps the lesion and tissue structures.

Two images are linked when (appearance >= ``appearance`` and structure >= ``structure``) or (appearance
>= ``appearance_floor`` and structure >= ``strong_structure``). Only each image's ``neighbours`` most
similar images by fixed-size thumbnail correlation (raw and band-passed) are compared, so the cost grows
as N x neighbours, not N^2 (658 BUSI images: about 9,800 pairs).

Measured on ``busi/`` (658 images; docs/dedup.md, ``python -m benchmarks.dedup_busi``) against the
published curation and a hand-checked list of 90 candidate pairs (tests/trainables/data/
busi_frame_pairs.csv): together with the hash, 292 of the 293 images the curation removed are grouped
(the last one's copy is in the sealed test set), 36 of 37 hand-checked same-lesion pairs (the miss is a
zoomed view, which no fixed-scale signal sees) and none of the 48 hand-checked different-lesion pairs;
the largest group is a 7-frame series of one lesion. Thresholds below 0.88 / 0.30 start chaining
unrelated images (largest group 65 at appearance 0.88 with structure 0.26).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve

SCALE = 8  # original pixels per thumbnail pixel
BAND_SIGMA = 4.0  # thumbnail pixels (32 original pixels)
MIN_OVERLAP = 0.6  # of each thumbnail's area
_FIXED = 32  # side of the fixed-size thumbnails that pick the neighbours to compare
_MIN_SIDE = 24  # smaller thumbnails (images under 192 px a side) are not compared: too few samples


@dataclass(frozen=True)
class FrameRule:
    """When two images are frames of one lesion (see the module docstring for the measurements)."""

    appearance: float = 0.915
    structure: float = 0.32
    appearance_floor: float = 0.88
    strong_structure: float = 0.42
    neighbours: int = 10

    def links(self, appearance: float, structure: float) -> bool:
        return (appearance >= self.appearance and structure >= self.structure) or (
            appearance >= self.appearance_floor and structure >= self.strong_structure
        )


@dataclass(frozen=True)
class FrameSignature:
    """What one image contributes: its fixed-scale thumbnail, band-passed copy and fixed-size views."""

    thumb: np.ndarray  # float64 [h, w], 1/SCALE of the image
    band: np.ndarray  # thumb minus its Gaussian blur
    fixed: np.ndarray  # float32 [_FIXED*_FIXED], zero mean, unit norm
    fixed_band: np.ndarray  # same, band-passed


def _unit(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float32).ravel()
    v = v - v.mean()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 1e-6 else v


def frame_signature(gray: np.ndarray) -> FrameSignature | None:
    """The signature of a gray ``uint8[H, W]`` image; None when it is too small to compare."""
    h, w = gray.shape
    th, tw = round(h / SCALE), round(w / SCALE)
    if min(th, tw) < _MIN_SIDE:
        return None
    image = Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), mode="L")
    thumb = np.asarray(image.resize((tw, th), Image.Resampling.BOX), dtype=np.float64)
    fixed = np.asarray(image.resize((_FIXED, _FIXED), Image.Resampling.BOX), dtype=np.float64)
    return FrameSignature(
        thumb=thumb,
        band=thumb - gaussian_filter(thumb, BAND_SIGMA),
        fixed=_unit(fixed),
        fixed_band=_unit(fixed - gaussian_filter(fixed, 2.0)),
    )


def _overlap_counts(na: int, nb: int) -> np.ndarray:
    """Overlap length of a length-``na`` and a length-``nb`` row at each of the ``na + nb - 1`` shifts."""
    shifts = np.arange(na + nb - 1) - (nb - 1)
    return np.minimum(na, shifts + nb) - np.maximum(0, shifts)


def shift_correlation(a: np.ndarray, b: np.ndarray, min_overlap: float = MIN_OVERLAP) -> float:
    """Highest Pearson correlation of ``a`` and ``b`` over the shifts whose overlap covers at least
    ``min_overlap`` of each (-1 if there is none).

    Sums over each overlap are full 2-D cross-correlations (``fftconvolve`` with the flipped image; the
    overlap sizes are separable and counted directly). Measured: about 1.8 ms for two 60x70 thumbnails,
    faster than one batched ``scipy.fft`` call per pair (3.1 ms, the stacking and padding cost more).
    """
    (ha, wa), (hb, wb) = a.shape, b.shape
    n = np.outer(_overlap_counts(ha, hb), _overlap_counts(wa, wb)).astype(np.float64)
    ok = n >= min_overlap * max(a.size, b.size)
    if not ok.any():
        return -1.0
    ones_a, b_rev = np.ones_like(a), b[::-1, ::-1]
    ones_b = np.ones_like(b)
    sums = (
        fftconvolve(a, b_rev),
        fftconvolve(a, ones_b),
        fftconvolve(ones_a, b_rev),
        fftconvolve(a * a, ones_b),
        fftconvolve(ones_a, b_rev * b_rev),
    )
    sum_ab, sum_a, sum_b, sum_aa, sum_bb = sums
    n = np.where(ok, n, 1.0)
    cov = sum_ab - sum_a * sum_b / n
    var = (sum_aa - sum_a**2 / n) * (sum_bb - sum_b**2 / n)
    valid = ok & (var > 1e-9 * n * n)
    if not valid.any():
        return -1.0
    return float((cov[valid] / np.sqrt(var[valid])).max())


def candidate_pairs(signatures: Sequence[FrameSignature | None], neighbours: int) -> list[tuple[int, int]]:
    """Pairs ``i < j`` where ``j`` is among ``i``'s nearest by fixed-size correlation, or vice versa."""
    known = [i for i, s in enumerate(signatures) if s is not None]
    if len(known) < 2 or neighbours < 1:
        return []
    k = min(neighbours, len(known) - 1)
    pairs: set[tuple[int, int]] = set()
    for attr in ("fixed", "fixed_band"):
        matrix = np.stack([getattr(signatures[i], attr) for i in known])
        sim = matrix @ matrix.T
        np.fill_diagonal(sim, -np.inf)
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        for row, cols in enumerate(nearest):
            for col in cols.tolist():
                a, b = known[row], known[col]
                pairs.add((min(a, b), max(a, b)))
    return sorted(pairs)


def frame_scores(a: FrameSignature, b: FrameSignature) -> tuple[float, float]:
    """(appearance, structure) of two signatures."""
    return shift_correlation(a.thumb, b.thumb), shift_correlation(a.band, b.band)


def frame_links(
    signatures: Sequence[FrameSignature | None],
    rule: FrameRule = FrameRule(),
    skip: set[tuple[int, int]] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> list[tuple[int, int]]:
    """Index pairs the rule links, among the candidate pairs not in ``skip`` (already linked)."""
    pairs = [p for p in candidate_pairs(signatures, rule.neighbours) if not skip or p not in skip]

    def linked(pair: tuple[int, int]) -> bool:
        a, b = signatures[pair[0]], signatures[pair[1]]
        appearance = shift_correlation(a.thumb, b.thumb)
        if appearance < min(rule.appearance, rule.appearance_floor):
            return False  # the structure term is only computed where it can matter
        return rule.links(appearance, shift_correlation(a.band, b.band))

    from tqdm import tqdm

    with tqdm(total=len(pairs), desc="frames", unit="pair", disable=not progress) as bar:

        def step(pair: tuple[int, int]) -> bool:
            result = linked(pair)
            bar.update(1)
            return result

        if workers > 1 and len(pairs) > 64:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers) as pool:  # scipy's FFT releases the GIL
                flags = list(pool.map(step, pairs))
        else:
            flags = [step(p) for p in pairs]
    return [p for p, keep in zip(pairs, flags) if keep]
