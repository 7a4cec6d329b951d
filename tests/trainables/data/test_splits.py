"""Splits that cannot leak: contract, group integrity, stratification, determinism, validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trainables.data.config import DataConfig
from trainables.data.errors import DataError
from trainables.data.splits import (
    SplitSource,
    load_splits,
    make_splits,
    resolve_splits,
    save_splits,
    split_indices,
    subsample_training,
    validate_splits,
)


def _source(counts: tuple[int, ...], group_sizes: list[int] | None = None, seed: int = 0) -> SplitSource:
    """Images per class; ``group_sizes`` merges consecutive shuffled images (across classes too) into
    groups."""
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    paths = [f"c{c}/img {i}.png" for i, c in enumerate(labels)]
    groups = np.arange(len(labels), dtype=np.int64)
    if group_sizes:
        order = np.random.default_rng(seed).permutation(len(labels))
        start = 0
        for size in group_sizes:
            members = order[start : start + size]
            groups[members] = members.min()
            start += size
    return SplitSource(paths, labels, groups, fingerprint="f" * 64)


def _parts(splits: dict) -> list[list[str]]:
    return [splits["test"]] + [f["val"] for f in splits["folds"]]


def test_contract_and_coverage() -> None:
    data = _source((20, 40, 30))
    splits = make_splits(data, folds=3, test_fraction=0.2, seed=5)
    assert list(splits) == ["test", "folds", "seed", "fingerprint"]
    assert splits["seed"] == 5 and splits["fingerprint"] == data.fingerprint and len(splits["folds"]) == 3
    assert all(list(f) == ["train", "val"] for f in splits["folds"])
    everything = [p for part in _parts(splits) for p in part]
    assert sorted(everything) == sorted(data.paths)  # every image exactly once in test or one val fold
    dev = set(data.paths) - set(splits["test"])
    for fold in splits["folds"]:
        assert fold["train"] == sorted(dev - set(fold["val"])) and fold["val"] == sorted(fold["val"])
    json.dumps(splits)  # plain JSON types
    validate_splits(splits, data)


@pytest.mark.parametrize(
    ("counts", "folds", "fraction"),
    [
        ((133, 437, 210), 3, 0.2),
        ((35, 35, 35), 3, 0.2),
        ((4, 18, 42), 5, 0.25),
        ((7, 11, 13), 2, 0.3),
        ((50, 9), 4, 0.1),
    ],
)
def test_class_proportions_within_one_image_of_ideal(
    counts: tuple[int, ...], folds: int, fraction: float
) -> None:
    data = _source(counts)
    for seed in range(3):
        splits = make_splits(data, folds=folds, test_fraction=fraction, seed=seed)
        label = dict(zip(data.paths, data.labels.tolist()))
        test = np.bincount([label[p] for p in splits["test"]], minlength=len(counts))
        assert np.all(np.abs(test - fraction * np.array(counts)) <= 1.0), test
        dev = np.array(counts) - test
        for fold in splits["folds"]:
            val = np.bincount([label[p] for p in fold["val"]], minlength=len(counts))
            assert np.all(np.abs(val - dev / folds) <= 1.0), (val, dev / folds)


@pytest.mark.parametrize("seed", range(4))
def test_duplicate_groups_never_leak(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 6, size=25).tolist()  # 25 groups of 2-5 images, many across classes
    data = _source((60, 120, 70), sizes, seed=seed)
    splits = make_splits(data, folds=3, seed=seed)
    part_of = {p: k for k, part in enumerate(_parts(splits)) for p in part}
    groups: dict[int, set[int]] = {}
    for path, group in zip(data.paths, data.groups.tolist()):
        groups.setdefault(group, set()).add(part_of[path])
    assert all(len(parts) == 1 for parts in groups.values())
    for fold in splits["folds"]:
        train_groups = {g for p, g in zip(data.paths, data.groups) if p in set(fold["train"])}
        held = set(fold["val"]) | set(splits["test"])
        assert not any(g in train_groups for p, g in zip(data.paths, data.groups) if p in held)
    validate_splits(splits, data)


def test_deterministic_per_seed() -> None:
    data = _source((30, 60, 40), [3, 2, 4, 2], seed=1)
    assert make_splits(data, seed=3) == make_splits(data, seed=3)
    assert make_splits(data, seed=3)["test"] != make_splits(data, seed=4)["test"]


def test_split_indices() -> None:
    data = _source((10, 20, 15))
    splits = make_splits(data, folds=3)
    idx = split_indices(splits, data)
    assert np.array_equal(np.sort(np.concatenate([idx.test, idx.dev])), np.arange(45))
    for (train, val), fold in zip(idx.folds, splits["folds"]):
        assert [data.paths[i] for i in val] == fold["val"] and len(train) + len(val) == len(idx.dev)
        assert train.dtype == np.int64


def test_validation_rejects_bad_user_splits(tmp_path: Path) -> None:
    data = _source((10, 20, 15), [2], seed=0)
    good = make_splits(data, folds=3, seed=0)
    pair = [p for p, g in zip(data.paths, data.groups) if (data.groups == g).sum() == 2]
    save_splits(good, tmp_path / "s.json")
    assert load_splits(tmp_path / "s.json") == good

    def broken(change: str) -> dict:
        s = json.loads(json.dumps(good))
        f0, f1 = s["folds"][0], s["folds"][1]
        if change == "unknown":
            s["test"].append("c0/nope.png")
        elif change == "twice":
            f0["val"].append(f0["val"][0])
        elif change == "two parts":
            s["test"].append(f0["val"][0])
        elif change == "no val fold":
            moved = f0["val"].pop()
            f1["train"].append(moved) if moved not in f1["train"] else None
        elif change == "train and val":
            f0["train"].append(f0["val"][0])
        elif change == "group":
            for part in [s["test"]] + [f["val"] for f in s["folds"]] + [f["train"] for f in s["folds"]]:
                for p in pair:
                    if p in part:
                        part.remove(p)
            s["test"].append(pair[0])
            for f in s["folds"]:
                f["val" if f is f0 else "train"].append(pair[1])
        elif change == "shape":
            s["folds"] = [{"train": [], "value": []}, {"train": [], "val": []}]
        return s

    messages = {
        "unknown": "not images of the dataset",
        "twice": "twice",
        "two parts": "one part only",
        "no val fold": "no validation fold",
        "train and val": "both train and val",
        "group": "duplicate group",
        "shape": "folds",
    }
    for change, message in messages.items():
        with pytest.raises(DataError, match=message):
            validate_splits(broken(change), data)
    other = dict(good, fingerprint="0" * 64)
    with pytest.warns(UserWarning, match="fingerprint differs"):
        validate_splits(other, data)


def test_resolve_splits_uses_a_user_file_as_given(tmp_path: Path) -> None:
    data = _source((10, 20, 15))
    made = make_splits(data, folds=2, test_fraction=0.3, seed=9)
    path = save_splits(made, tmp_path / "splits.json")
    assert resolve_splits(DataConfig(splits=str(path)), data) == made
    assert resolve_splits(DataConfig(folds=2, test_fraction=0.3, seed=9), data) == made
    made["test"].append(made["folds"][0]["val"][0])
    save_splits(made, path)
    with pytest.raises(DataError, match=r"splits\.json: splits:"):
        resolve_splits(DataConfig(splits=str(path)), data)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match=r"bad\.json"):
        load_splits(tmp_path / "bad.json")


def test_impossible_requests_are_clear() -> None:
    with pytest.raises(DataError, match="folds"):
        make_splits(_source((5, 5, 5)), folds=1)
    with pytest.raises(DataError, match="test_fraction"):
        make_splits(_source((5, 5, 5)), test_fraction=1.0)
    with pytest.raises(DataError, match="fewer than folds=8"):
        make_splits(_source((3, 3, 3)), folds=8, test_fraction=0.2)
    with pytest.raises(DataError, match="no test image"):
        make_splits(_source((2, 2, 1)), folds=2, test_fraction=0.1)


@pytest.mark.parametrize("seed", range(3))
def test_the_test_part_gets_its_share_of_multi_image_groups(seed: int) -> None:
    """Groups fill the parts in proportion to their targets: with absolute deviations every multi-image
    group went to the 80% development part and the test part held singletons only (full BUSI, seed 42)."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([2, 2, 2, 3, 4, 7], size=60).tolist()  # BUSI-like: mostly pairs, a few frame runs
    data = _source((116, 349, 173), sizes, seed=seed)
    splits = make_splits(data, folds=3, test_fraction=0.2, seed=seed)
    size_of = {g: n for g, n in zip(*np.unique(data.groups, return_counts=True))}
    grouped = {p for p, g in zip(data.paths, data.groups.tolist()) if size_of[g] > 1}
    share = len(grouped) / len(data.paths)
    test_share = len(grouped & set(splits["test"])) / len(splits["test"])
    assert abs(test_share - share) <= 0.1, (test_share, share)
    for fold in splits["folds"]:
        assert abs(len(grouped & set(fold["val"])) / len(fold["val"]) - share) <= 0.1


def _class_counts(paths: list[str]) -> list[int]:
    return [sum(p.startswith(f"c{c}/") for p in paths) for c in range(3)]


@pytest.mark.parametrize("seed", range(3))
def test_subsample_training_is_stratified_nested_and_keeps_groups(seed: int) -> None:
    """Learning curves: each fold's training list shrinks per class to the fraction, groups whole, the
    smaller fraction's images inside the larger one's, validation and test untouched."""
    rng = np.random.default_rng(seed)
    data = _source((60, 180, 90), rng.choice([2, 2, 3, 4], size=25).tolist(), seed=seed)
    full = make_splits(data, folds=3, seed=seed)
    group_of = dict(zip(data.paths, data.groups.tolist()))
    previous = None
    for fraction in (0.25, 0.5, 0.75):
        sub = subsample_training(full, data, fraction, seed)
        validate_splits(sub, data)  # a valid splits.json: every image still in test or one val fold
        assert sub["train_fraction"] == fraction and sub["train_fraction_seed"] == seed
        assert sub["test"] == full["test"]
        for k, (fold, whole) in enumerate(zip(sub["folds"], full["folds"])):
            assert fold["val"] == whole["val"] and set(fold["train"]) < set(whole["train"])
            kept_groups = {group_of[p] for p in fold["train"]}
            assert {p for p in whole["train"] if group_of[p] in kept_groups} == set(fold["train"])
            # per class within the largest group of the target (groups have at most 4 images)
            for got, total in zip(_class_counts(fold["train"]), _class_counts(whole["train"])):
                assert abs(got - fraction * total) <= 4
            if previous is not None:
                assert set(previous["folds"][k]["train"]) <= set(fold["train"])
        previous = sub
    assert subsample_training(full, data, 1.0, seed) is full
    other = subsample_training(full, data, 0.5, seed + 10)
    assert other["folds"][0]["train"] != subsample_training(full, data, 0.5, seed)["folds"][0]["train"]


def test_subsample_training_keeps_every_class_and_refuses_bad_fractions() -> None:
    data = _source((6, 30, 12))
    full = make_splits(data, folds=2, seed=0)
    tiny = subsample_training(full, data, 0.01, 0)
    for fold, whole in zip(tiny["folds"], full["folds"]):
        assert _class_counts(fold["train"]) == [1, 1, 1] and len(whole["train"]) > 3
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(DataError, match="train_fraction"):
            subsample_training(full, data, bad, 0)
    with pytest.raises(DataError, match=r"already thinned to 0\.01"):
        subsample_training(tiny, data, 0.5, 0)


def test_resolve_splits_thins_the_training_lists(tmp_path: Path) -> None:
    data = _source((10, 20, 15))
    made = make_splits(data, folds=2, seed=9)
    thinned = resolve_splits(DataConfig(folds=2, seed=9, train_fraction=0.5), data)
    assert thinned == subsample_training(made, data, 0.5, 9)
    for fold, whole in zip(thinned["folds"], made["folds"]):  # singletons: half of each class, rounded
        for got, total in zip(_class_counts(fold["train"]), _class_counts(whole["train"])):
            assert abs(got - total / 2) <= 0.5
    path = save_splits(made, tmp_path / "splits.json")  # a user's file is thinned the same way
    assert resolve_splits(DataConfig(splits=str(path), seed=9, train_fraction=0.5), data) == thinned
