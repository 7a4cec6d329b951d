"""Exact and near-duplicate images, found with a perceptual hash.

Each image gets a 128-bit hash: the 64-bit DCT hash (``imagehash.phash``) followed by the 64-bit
difference hash (``imagehash.dhash``), both computed from one 64x64 area-averaged thumbnail of the gray
image. Two images are duplicates when the Hamming distance between their hashes is at most
:data:`DUPLICATE_THRESHOLD` = 16 bits; groups are the connected components of that relation
(union-find), so a chain of near copies forms one group.

Why 16: measured on the real samples (BUSI subset + thesis sample: 169 images, 14k pairs), a re-save
(JPEG q75), a resize (0.7x or 1.5x), a brightness change (+15 levels or x1.15) and a crop of 2 to 4 px
stay within 12 bits on the full-size images; on 128-px copies a 2 to 3 px crop stays within 16 bits for
95% of them. Unrelated images are 28 bits or more apart (the closest: two BUS-BRA cases, and a BUSI
vs a BUS-BRA case). Consecutive frames of one lesion (BUSI ``malignant (4)`` .. ``(9)``) fall at 5 to 21
bits; the hash joins the closest of them, and :mod:`trainables.data.frames` (a shift-tolerant
correlation at one pixel scale) joins cropped copies and the rest of a lesion's frames without chaining
unrelated images. :func:`group_duplicates` takes the union of both relations.
"""

from __future__ import annotations

from collections.abc import Sequence

import imagehash
import numpy as np
from PIL import Image

from trainables.data.frames import FrameRule, FrameSignature, frame_links

HASH_BITS = 128
DUPLICATE_THRESHOLD = 16
_THUMB = 64  # both hashes are taken from one 64x64 area-averaged thumbnail
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def image_hash(gray: np.ndarray) -> np.ndarray:
    """``bool[128]`` perceptual hash (phash then dhash) of a gray ``uint8[H, W]`` image."""
    image = Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), mode="L")
    image = image.resize((_THUMB, _THUMB), Image.Resampling.BOX)  # area average; 8x faster hashing
    return np.concatenate([imagehash.phash(image).hash.ravel(), imagehash.dhash(image).hash.ravel()])


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    """Number of differing bits between two hashes."""
    return int(np.count_nonzero(np.asarray(a, bool) != np.asarray(b, bool)))


def _pairs(hashes: np.ndarray, threshold: int, chunk: int = 512) -> list[tuple[int, int]]:
    """All index pairs ``i < j`` within ``threshold`` bits, in row chunks to bound memory."""
    packed = np.packbits(hashes.astype(bool), axis=1)
    pairs: list[tuple[int, int]] = []
    for start in range(0, len(packed), chunk):
        block = packed[start : start + chunk]
        dist = _POPCOUNT[block[:, None, :] ^ packed[None, :, :]].sum(axis=2, dtype=np.int32)
        rows, cols = np.nonzero(dist <= threshold)
        rows = rows + start
        keep = rows < cols
        pairs.extend(zip(rows[keep].tolist(), cols[keep].tolist()))
    return pairs


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def group_duplicates(
    hashes: Sequence[np.ndarray | None],
    threshold: int = DUPLICATE_THRESHOLD,
    signatures: Sequence[FrameSignature | None] | None = None,
    rule: FrameRule | None = None,
    workers: int = 1,
    progress: bool = False,
) -> list[list[int]]:
    """Groups (two or more indices, sorted; groups sorted by first index) of duplicate images.

    Pairs within ``threshold`` hash bits are linked; with ``signatures`` and a ``rule``, so are the pairs
    :func:`trainables.data.frames.frame_links` finds (same-lesion frames, cropped copies). Groups are the
    connected components. ``hashes[i]`` / ``signatures[i]`` may be None (unreadable): no link from it.
    """
    known = [i for i, h in enumerate(hashes) if h is not None]
    uf = _UnionFind(len(hashes))
    linked: set[tuple[int, int]] = set()
    if len(known) >= 2:
        matrix = np.stack([np.asarray(hashes[i], bool) for i in known])
        for a, b in _pairs(matrix, threshold):
            uf.union(known[a], known[b])
            linked.add((known[a], known[b]))
    if signatures is not None and rule is not None:
        for a, b in frame_links(signatures, rule, skip=linked, workers=workers, progress=progress):
            uf.union(a, b)
    members: dict[int, list[int]] = {}
    for i in range(len(hashes)):
        members.setdefault(uf.find(i), []).append(i)
    return sorted((sorted(m) for m in members.values() if len(m) > 1), key=lambda g: g[0])


def group_ids(n: int, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """``int64[n]`` group id per item: the smallest index of its group, its own index when alone."""
    ids = np.arange(n, dtype=np.int64)
    for group in groups:
        ids[list(group)] = min(group)
    return ids
