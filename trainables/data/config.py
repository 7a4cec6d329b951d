"""The ``data:`` section of a spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from model_zoo.schema import Section

DEFAULT_CLASSES = ("normal", "benign", "malignant")


@dataclass
class SyntheticConfig(Section):
    """The built-in synthetic set, made on the fly when ``data.root`` is null."""

    n_per_class: list[int] = field(
        default_factory=lambda: [27, 87, 42], metadata={"description": "normal benign malignant"}
    )
    size: int = field(default=128, metadata={"ge": 32, "description": "side of the written PNGs in pixels"})
    seed: int = 0


@dataclass
class DedupConfig(Section):
    """How duplicates and same-lesion frames are found (:mod:`trainables.data.dedup`, ``frames``).

    The defaults were measured on the full BUSI development set against a published curation and a
    hand-checked pair list (docs/dedup.md). Every value enters the cache key.
    """

    hash_bits: int = field(
        default=16,
        metadata={"ge": 0, "le": 128, "description": "phash+dhash bits within which images are copies"},
    )
    frames: bool = field(
        default=True, metadata={"description": "also group cropped copies and same-lesion frames"}
    )
    appearance: float = field(
        default=0.915,
        metadata={"ge": 0.0, "le": 1.0, "description": "shift-tolerant correlation at 1/8 scale"},
    )
    structure: float = field(
        default=0.32, metadata={"ge": 0.0, "le": 1.0, "description": "the same on band-passed images"}
    )
    appearance_floor: float = field(
        default=0.88,
        metadata={"ge": 0.0, "le": 1.0, "description": "appearance needed with strong_structure"},
    )
    strong_structure: float = field(
        default=0.42,
        metadata={"ge": 0.0, "le": 1.0, "description": "structure that links from appearance_floor"},
    )
    neighbours: int = field(
        default=10, metadata={"ge": 1, "le": 100, "description": "nearest images compared per image"}
    )


@dataclass
class DataConfig(Section):
    """Where the images are and how they become training arrays and splits."""

    root: str | None = field(
        default=None, metadata={"description": "BUSI-format folder; null = built-in synthetic set"}
    )
    image_size: int = field(default=256, metadata={"ge": 32, "description": "working resolution (square)"})
    resize: Literal["stretch", "letterbox"] = "letterbox"
    folds: int = field(default=3, metadata={"ge": 2, "le": 20})
    test_fraction: float = field(default=0.2, metadata={"gt": 0.0, "lt": 1.0})
    seed: int = 42
    classes: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    missing_mask: Literal["error", "empty", "skip"] = "error"
    splits: str | None = field(
        default=None, metadata={"description": "a user-written splits.json to use as given"}
    )
    train_fraction: float = field(
        default=1.0,
        metadata={
            "gt": 0.0,
            "le": 1.0,
            "description": "share of each fold's training images used (learning curves; nested per seed); "
            "validation and test parts unchanged",
        },
    )
    conflicting_labels: Literal["drop", "keep"] = field(
        default="drop",
        metadata={"description": "images in a duplicate group spanning classes: drop (listed) or keep"},
    )
    dedup: DedupConfig = field(default_factory=DedupConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
