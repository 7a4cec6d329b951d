"""The data of a run: the cached dataset and its splits, checked against what the run recorded.

``train``, ``search`` (new or resumed) and ``refit`` all start here, so a resumed or refitted run can never
train on other images or another split than the files of its folder say (``data.json`` fingerprint,
``splits.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainables.data.config import DataConfig
from trainables.data.errors import DataError

if TYPE_CHECKING:
    from trainables.data.cache import BUSDataset


class DataChangedError(DataError):
    """The images under ``data.root`` are not those a run recorded (their fingerprints differ)."""


def load_run_data(
    cfg: DataConfig,
    splits: dict | None = None,
    fingerprint: str | None = None,
    hint: str = "pass --data with the same images",
    progress: bool = True,
) -> tuple[BUSDataset, dict]:
    """The dataset of ``cfg`` and the splits to train with.

    ``splits``: a run's saved ``splits.json`` (validated against the dataset); ``None`` resolves them
    (``data.splits`` if set, else made from the seed). ``fingerprint``: the one the run recorded; another
    dataset raises :class:`DataChangedError` ending with ``hint`` (what the user can do).
    """
    from trainables.data.cache import load_dataset
    from trainables.data.splits import resolve_splits, validate_splits

    dataset = load_dataset(cfg, progress=progress)
    if fingerprint and dataset.fingerprint != fingerprint:
        raise DataChangedError(
            f"the data at {cfg.root or 'the synthetic set'} differs from the data the run used "
            f"(fingerprint {dataset.fingerprint} != {fingerprint}); {hint}"
        )
    if splits is None:
        return dataset, resolve_splits(cfg, dataset)
    validate_splits(splits, dataset)
    return dataset, splits


def data_summary(dataset: BUSDataset) -> dict[str, Any]:
    """``data.json`` of a run: what it trained on (fingerprint, root, sizes, classes, audit)."""
    return {
        "fingerprint": dataset.fingerprint,
        "root": dataset.root,
        "n_images": len(dataset),
        "image_size": dataset.image_size,
        "resize": dataset.resize,
        "class_names": list(dataset.class_names),
        "class_counts": [int(c) for c in dataset.class_counts()],
        "audit": dataset.audit,
    }
