"""Random and class-balanced batch sampling."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.sampler import balanced_batches, epoch_batches, n_batches, random_batches


@pytest.mark.parametrize(("n", "bs", "expected"), [(0, 8, 0), (16, 8, 2), (17, 8, 2), (18, 8, 3), (5, 8, 1)])
def test_n_batches_drops_a_lone_last_sample(n: int, bs: int, expected: int) -> None:
    assert n_batches(n, bs) == expected
    batches = random_batches(np.arange(n), bs, np.random.default_rng(0))
    assert len(batches) == expected
    assert all(len(b) >= 2 for b in batches) or n < 2


def test_random_covers_every_index_once_and_is_seeded() -> None:
    idx = np.arange(100, 140)
    batches = random_batches(idx, 8, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == idx.tolist()
    assert [b.tolist() for b in random_batches(idx, 8, np.random.default_rng(1))] == [
        b.tolist() for b in batches
    ]
    assert flat.tolist() != np.concatenate(random_batches(idx, 8, np.random.default_rng(2))).tolist()
    assert flat.tolist() != idx.tolist()


def test_balanced_draws_classes_evenly() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 6 + [1] * 60 + [2] * 24)
    idx = np.arange(len(labels)) + 1000
    batches = balanced_batches(idx, labels, 9, rng)
    flat = np.concatenate(batches)
    assert len(flat) == len(idx)
    drawn = labels[flat - 1000]
    assert np.bincount(drawn).tolist() == [30, 30, 30]
    # the rare class repeats only after all of its members were drawn
    rare = flat[drawn == 0]
    for start in range(0, 30, 6):
        assert sorted(rare[start : start + 6].tolist()) == list(range(1000, 1006))
    # batches are mixed, not sorted by class
    assert len(set(labels[batches[0] - 1000].tolist())) > 1


def test_balanced_skips_absent_classes_and_checks_lengths() -> None:
    labels = np.array([1, 1, 1, 2, 2, 2, 2, 2])
    flat = np.concatenate(balanced_batches(np.arange(8), labels, 4, np.random.default_rng(3)))
    assert np.bincount(labels[flat], minlength=3).tolist() == [0, 4, 4]
    with pytest.raises(ValueError, match="8 indices but 3 labels"):
        balanced_batches(np.arange(8), labels[:3], 4, np.random.default_rng(0))


def test_unknown_sampler_lists_choices() -> None:
    with pytest.raises(ValueError, match="random, balanced"):
        epoch_batches(np.arange(4), np.zeros(4), 2, "stratified", np.random.default_rng(0))
