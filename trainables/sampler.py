"""Batches of dataset indices for one training epoch, drawn from a seeded NumPy Generator.

``random``: a fresh permutation of the fold's training indices, cut into batches. ``balanced``: every
class present in the fold gets the same share of the batch slots (the remainder spread at random), and
each class is read through successive permutations of its own indices, so rare classes repeat before
common ones do. Both give ``ceil(n / batch_size)`` batches per epoch; a final batch of a single sample is
dropped because BatchNorm cannot train on one sample.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLERS = ("random", "balanced")


def n_batches(n: int, batch_size: int) -> int:
    """How many batches one epoch of ``n`` training samples yields (a lone last sample is dropped)."""
    if n == 0:
        return 0
    full, rest = divmod(n, batch_size)
    return full + (1 if rest > 1 else 0) if full else 1


def _cut(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    count = n_batches(len(order), batch_size)
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(count)]


def random_batches(indices: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random permutation of ``indices`` cut into batches."""
    return _cut(rng.permutation(np.asarray(indices, dtype=np.int64)), batch_size)


def balanced_batches(
    indices: np.ndarray, labels: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Batches in which the classes of ``labels`` (aligned with ``indices``) appear equally often."""
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels)
    if len(indices) != len(labels):
        raise ValueError(f"balanced sampler: {len(indices)} indices but {len(labels)} labels")
    classes = np.unique(labels)
    total = len(indices)
    if total == 0:
        return []
    per_class, extra = divmod(total, len(classes))
    slots = np.repeat(classes, per_class)
    if extra:
        slots = np.concatenate([slots, rng.choice(classes, size=extra, replace=False)])
    slots = rng.permutation(slots)
    order = np.empty(total, dtype=np.int64)
    for c in classes:
        members = indices[labels == c]
        where = np.flatnonzero(slots == c)
        rounds = math.ceil(len(where) / len(members))
        stream = np.concatenate([rng.permutation(members) for _ in range(rounds)])
        order[where] = stream[: len(where)]
    return _cut(order, batch_size)


def epoch_batches(
    indices: np.ndarray, labels: np.ndarray, batch_size: int, mode: str, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch of batches; ``mode`` is ``train.sampler`` (``random`` or ``balanced``)."""
    if mode == "random":
        return random_batches(indices, batch_size, rng)
    if mode == "balanced":
        return balanced_batches(indices, labels, batch_size, rng)
    raise ValueError(f"train.sampler: unknown sampler {mode!r}; expected one of {', '.join(SAMPLERS)}")
