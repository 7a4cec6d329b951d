"""Leakage-safe splits: a stratified hold-out test set, then stratified group K folds on the rest.

Duplicate groups (``dataset.groups``) are the unit of assignment, so every copy of a picture lands in
the same part. Assignment is greedy over groups, largest first, then in a seeded random order: each
group goes to the part (test/dev, then fold) where it most reduces the squared gap between the part's
per-class counts and its targets (test: ``test_fraction`` of each class; fold: ``1/K`` of the dev part's
class counts). With single-image groups this puts every part within one image of its ideal per class.

``splits.json``: ``{"test": [...], "folds": [{"train": [...], "val": [...]}, ...], "seed": ...,
"fingerprint": ...}`` with relative paths, sorted (plus ``train_fraction`` and its seed when the folds'
training lists were thinned for a learning curve, :func:`subsample_training`). A user-written file is used
as given once :func:`validate_splits` accepts it.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from trainables.data.config import DataConfig
from trainables.data.errors import DataError, listing


class SplitData(Protocol):
    """What splitting needs from a dataset (a :class:`cache.BUSDataset` or a :class:`SplitSource`)."""

    paths: list[str]
    labels: np.ndarray
    groups: np.ndarray
    fingerprint: str


@dataclass
class SplitSource:
    """Paths, labels and duplicate groups of a folder, without the decoded arrays."""

    paths: list[str]
    labels: np.ndarray
    groups: np.ndarray
    fingerprint: str
    class_names: tuple[str, ...] = ()


@dataclass
class SplitIndices:
    """Row indices into the dataset: ``test``, ``dev`` (all non-test rows) and per fold ``(train, val)``."""

    test: np.ndarray
    dev: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]


def _group_table(data: SplitData) -> tuple[list[np.ndarray], np.ndarray]:
    """Members of each group and its per-class counts ``int[G, C]``."""
    labels = np.asarray(data.labels, dtype=np.int64)
    groups = np.asarray(data.groups)
    if len(labels) != len(data.paths) or len(groups) != len(data.paths):
        raise DataError("splits: paths, labels and groups must have the same length")
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)] if len(labels) else []
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    counts = np.zeros((len(members), n_classes), dtype=np.int64)
    for g, idx in enumerate(members):
        np.add.at(counts[g], labels[idx], 1)
    return members, counts


def _assign(counts: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Part index per group: largest groups first, then seeded random order, each to the least-cost part.

    Cost of adding class-count vector ``v`` to part ``b`` of share ``w_b`` (its target over all targets):
    the increase of ``sum_c (filled_bc - target_bc)^2 / w_b``, i.e. ``sum_c v_c (2 (filled_bc - target_bc)
    + v_c) / w_b``; ties go to the part with the largest total remaining room, then the lower index.
    Weighing each part by its share makes parts fill in proportion (equal marginal cost at equal relative
    deficit); with plain absolute deviations the big part (development, 80%) always cost less for a large
    group, so every multi-image group went to development and the test part held singletons only (full
    BUSI, seed 42: 128 of 128 test images, against 224 of 510 development images). Parts of equal share
    (the folds) are assigned exactly as by absolute deviations.
    """
    sizes = counts.sum(axis=1)
    order = rng.permutation(len(counts))
    order = order[np.argsort(-sizes[order], kind="stable")]
    filled = np.zeros_like(targets, dtype=np.float64)
    share = targets.sum(axis=1) / max(float(targets.sum()), 1e-12)
    scale = np.maximum(share, 1e-12)[:, None]
    part = np.empty(len(counts), dtype=np.int64)
    for g in order:
        v = counts[g]
        cost = (v * (2.0 * (filled - targets) + v) / scale).sum(axis=1)
        room = (targets - filled).sum(axis=1)
        best = np.lexsort((np.arange(len(targets)), -room, np.round(cost, 9)))[0]
        part[g] = best
        filled[best] += v
    return part


def make_splits(data: SplitData, folds: int = 3, test_fraction: float = 0.2, seed: int = 42) -> dict:
    """The ``splits.json`` object for a dataset: hold-out test part, then ``folds`` group-stratified folds."""
    if not isinstance(folds, int) or folds < 2:
        raise DataError(f"folds: expected an integer >= 2, got {folds!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"test_fraction: expected a number strictly between 0 and 1, got {test_fraction!r}")
    members, counts = _group_table(data)
    rng = np.random.default_rng(seed)
    class_totals = counts.sum(axis=0).astype(np.float64)
    outer = _assign(
        counts, np.stack([test_fraction * class_totals, (1.0 - test_fraction) * class_totals]), rng
    )
    test_groups, dev_groups = np.flatnonzero(outer == 0), np.flatnonzero(outer == 1)
    if len(test_groups) == 0:
        raise DataError(
            f"splits: test_fraction {test_fraction} of {len(data.paths)} images leaves no test image"
        )
    if len(dev_groups) < folds:
        raise DataError(
            f"splits: the development part has {len(dev_groups)} duplicate group(s), fewer than folds={folds}"
        )
    dev_totals = counts[dev_groups].sum(axis=0).astype(np.float64)
    inner = _assign(counts[dev_groups], np.tile(dev_totals / folds, (folds, 1)), rng)

    def paths_of(group_ids: np.ndarray) -> list[str]:
        return sorted(data.paths[i] for g in group_ids for i in members[g])

    dev = set(paths_of(dev_groups))
    fold_list = []
    for k in range(folds):
        val = paths_of(dev_groups[inner == k])
        fold_list.append({"train": sorted(dev.difference(val)), "val": val})
    return {"test": paths_of(test_groups), "folds": fold_list, "seed": seed, "fingerprint": data.fingerprint}


def subsample_training(splits: dict, data: SplitData, fraction: float, seed: int = 42) -> dict:
    """``splits`` with each fold's training list thinned to ``fraction`` of its images, for learning curves.

    Validation and test lists are unchanged, so every point of a curve is scored on the same images.
    Duplicate groups stay whole; within each class (a group's majority label) the groups are taken in one
    seeded random order until the class reaches ``fraction`` of its training images (the group that lands
    nearest the target is the last), and at least one group of every class the fold trains on is kept.
    The order does not depend on ``fraction``, so for one seed a smaller fraction's training images are a
    subset of a larger one's (nested curves: a point differs from the next only by the added images).
    """
    fraction = float(fraction)
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"train_fraction: expected a number in (0, 1], got {fraction!r}")
    if fraction == 1.0:
        return splits
    if "train_fraction" in splits:
        raise DataError(
            f"train_fraction {fraction}: these splits were already thinned to {splits['train_fraction']} "
            "(their splits.json says so); give the full splits file, or train_fraction 1"
        )
    members, counts = _group_table(data)
    group_of_row = np.empty(len(data.paths), dtype=np.int64)
    for g, idx in enumerate(members):
        group_of_row[idx] = g
    row = {p: i for i, p in enumerate(data.paths)}
    order = np.random.default_rng([int(seed), 0x5B5A]).permutation(len(members))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    folds = []
    for k, fold in enumerate(splits["folds"]):
        groups = np.unique(group_of_row[[row[p] for p in fold["train"]]])
        groups = groups[np.argsort(rank[groups], kind="stable")]
        majority = counts[groups].argmax(axis=1)
        keep: list[int] = []
        for c in np.unique(majority):
            in_class = groups[majority == c]
            sizes = counts[in_class].sum(axis=1)
            target = fraction * sizes.sum()
            taken = np.concatenate([[0], np.cumsum(sizes)])
            n = max(1, int(np.argmin(np.abs(taken - target))))  # prefix length closest to the target
            keep.extend(int(g) for g in in_class[:n])
        kept = {data.paths[i] for g in keep for i in members[g]}
        train = sorted(p for p in fold["train"] if p in kept)
        if not train:
            raise DataError(f"train_fraction {fraction}: folds[{k}] keeps no training image")
        folds.append({**fold, "train": train})
    return {**splits, "folds": folds, "train_fraction": fraction, "train_fraction_seed": int(seed)}


def _as_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise DataError(f"splits: {where} must be a list of relative image paths")
    return value


def _parse(splits: dict) -> tuple[list[str], list[tuple[list[str], list[str]]]]:
    """The test list and (train, val) lists of a splits object, or a :class:`DataError` on its shape."""
    if not isinstance(splits, dict) or "test" not in splits or "folds" not in splits:
        raise DataError('splits: expected an object with "test" and "folds" (and "seed", "fingerprint")')
    test = _as_list(splits["test"], '"test"')
    if not isinstance(splits["folds"], list) or len(splits["folds"]) < 2:
        raise DataError('splits: "folds" must be a list of at least 2 {"train": [...], "val": [...]} objects')
    folds = []
    for k, fold in enumerate(splits["folds"]):
        if not isinstance(fold, dict) or not {"train", "val"} <= set(fold):
            raise DataError(f'splits: folds[{k}] must be an object with "train" and "val" lists')
        folds.append((_as_list(fold["train"], f"folds[{k}].train"), _as_list(fold["val"], f"folds[{k}].val")))
    return test, folds


def validate_splits(splits: dict, data: SplitData) -> None:
    """Raise :class:`DataError` unless ``splits`` names only images of ``data``, none twice, keeps every
    duplicate group inside one part (test or one validation fold), and puts every dev image in exactly one
    validation fold. A different ``fingerprint`` only warns (the files changed since it was written)."""
    test, folds = _parse(splits)
    known = set(data.paths)
    named = set(test).union(*(set(t) | set(v) for t, v in folds))
    unknown = sorted(named - known)
    if unknown:
        raise DataError(f"splits: {len(unknown)} path(s) are not images of the dataset: {listing(unknown)}")
    lists = [("test", test)] + [
        (f"folds[{k}].{name}", f[i]) for k, f in enumerate(folds) for i, name in enumerate(("train", "val"))
    ]
    for where, items in lists:
        twice = sorted(p for p, n in Counter(items).items() if n > 1)
        if twice:
            raise DataError(f"splits: {where} names an image twice: {listing(twice)}")
    part: dict[str, str] = {p: "test" for p in test}
    for k, (train, val) in enumerate(folds):
        for p in val:
            if p in part:
                raise DataError(
                    f"splits: {p} is in {part[p]} and in folds[{k}].val; an image may be in one part only"
                )
            part[p] = f"folds[{k}].val"
        both = sorted(set(train) & set(val))
        if both:
            raise DataError(f"splits: folds[{k}] has images in both train and val: {listing(both)}")
        in_test = sorted(set(train) & set(test))
        if in_test:
            raise DataError(f"splits: folds[{k}].train holds test images: {listing(in_test)}")
    dev = set().union(*(set(t) | set(v) for t, v in folds))
    unassigned = sorted(p for p in dev if p not in part)
    if unassigned:
        raise DataError(
            f"splits: {len(unassigned)} development image(s) are in no validation fold: {listing(unassigned)}"
        )
    group_of = dict(zip(data.paths, np.asarray(data.groups).tolist()))
    by_group: dict[int, list[str]] = {}
    for p in data.paths:
        by_group.setdefault(group_of[p], []).append(p)
    for k, (train, val) in enumerate(folds):
        train_set = set(train)
        train_groups = {group_of[p] for p in train}
        for p in [*test, *val]:
            if group_of[p] in train_groups:
                mates = sorted(m for m in by_group[group_of[p]] if m in train_set)
                raise DataError(
                    f"splits: duplicate group leaks: {p} ({part[p]}) has a duplicate in folds[{k}].train: "
                    f"{listing(mates)}"
                )
    for members in by_group.values():
        parts = {part[p] for p in members if p in part}
        if len(parts) > 1:
            where = ", ".join(f"{p} ({part[p]})" for p in sorted(members) if p in part)
            raise DataError(f"splits: duplicate group split across parts: {where}")
    fingerprint = splits.get("fingerprint")
    if fingerprint is not None and fingerprint != data.fingerprint:
        warnings.warn(
            "splits: fingerprint differs from the dataset's (the files changed since the splits were "
            "written); using the splits as given after checking them",
            stacklevel=2,
        )


def split_indices(splits: dict, data: SplitData, validate: bool = True) -> SplitIndices:
    """Row indices of each part of ``splits`` in ``data`` (checked first unless ``validate`` is False)."""
    if validate:
        validate_splits(splits, data)
    row = {p: i for i, p in enumerate(data.paths)}

    def rows(items: Sequence[str]) -> np.ndarray:
        return np.array(sorted(row[p] for p in items), dtype=np.int64)

    folds = [(rows(f["train"]), rows(f["val"])) for f in splits["folds"]]
    dev = np.unique(np.concatenate([np.concatenate([t, v]) for t, v in folds])).astype(np.int64)
    return SplitIndices(test=rows(splits["test"]), dev=dev, folds=folds)


def save_splits(splits: dict, path: str | Path) -> Path:
    """Write ``splits`` as JSON (UTF-8, indented)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(splits, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_splits(path: str | Path) -> dict:
    """Read a ``splits.json``; :class:`DataError` naming the file when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: splits file not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON splits file ({exc})") from exc


def resolve_splits(cfg: DataConfig, data: SplitData) -> dict:
    """The splits a run uses: ``cfg.splits`` as given after validation, else :func:`make_splits`; then
    each fold's training list thinned to ``cfg.train_fraction`` (:func:`subsample_training`) when below 1."""
    if cfg.splits:
        splits = load_splits(cfg.splits)
        try:
            validate_splits(splits, data)
        except DataError as exc:
            raise DataError(f"{cfg.splits}: {exc}") from exc
    else:
        splits = make_splits(data, cfg.folds, cfg.test_fraction, cfg.seed)
    return subsample_training(splits, data, cfg.train_fraction, cfg.seed)
