"""The ``data:`` section of a spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DEFAULT_CLASSES = ("normal", "benign", "malignant")


@dataclass
class SyntheticConfig:
    """The built-in synthetic set, made on the fly when ``data.root`` is null."""

    n_per_class: list[int] = field(
        default_factory=lambda: [27, 87, 42], metadata={"help": "normal benign malignant"}
    )
    size: int = field(default=128, metadata={"min": 32, "help": "side of the written PNGs in pixels"})
    seed: int = 0


@dataclass
class DedupConfig:
    """How duplicates and same-lesion frames are found (:mod:`trainables.data.dedup`, ``frames``).

    The defaults were measured on the full BUSI development set against a published curation and a
    hand-checked pair list (docs/dedup.md). Every value enters the cache key.
    """

    hash_bits: int = field(
        default=16, metadata={"min": 0, "max": 128, "help": "phash+dhash bits within which images are copies"}
    )
    frames: bool = field(default=True, metadata={"help": "also group cropped copies and same-lesion frames"})
    appearance: float = field(
        default=0.915, metadata={"min": 0.0, "max": 1.0, "help": "shift-tolerant correlation at 1/8 scale"}
    )
    structure: float = field(
        default=0.32, metadata={"min": 0.0, "max": 1.0, "help": "the same on band-passed images"}
    )
    appearance_floor: float = field(
        default=0.88, metadata={"min": 0.0, "max": 1.0, "help": "appearance needed with strong_structure"}
    )
    strong_structure: float = field(
        default=0.42, metadata={"min": 0.0, "max": 1.0, "help": "structure that links from appearance_floor"}
    )
    neighbours: int = field(
        default=10, metadata={"min": 1, "max": 100, "help": "nearest images compared per image"}
    )


@dataclass
class DataConfig:
    """Where the images are and how they become training arrays and splits."""

    root: str | None = field(
        default=None, metadata={"help": "BUSI-format folder; null = built-in synthetic set"}
    )
    image_size: int = field(default=256, metadata={"min": 32, "help": "working resolution (square)"})
    resize: Literal["stretch", "letterbox"] = "letterbox"
    folds: int = field(default=3, metadata={"min": 2, "max": 20})
    test_fraction: float = field(default=0.2, metadata={"gt": 0.0, "lt": 1.0})
    seed: int = 42
    classes: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    missing_mask: Literal["error", "empty", "skip"] = "error"
    splits: str | None = field(default=None, metadata={"help": "a user-written splits.json to use as given"})
    conflicting_labels: Literal["drop", "keep"] = field(
        default="drop",
        metadata={"help": "images in a duplicate group spanning classes: drop (listed) or keep"},
    )
    dedup: DedupConfig = field(default_factory=DedupConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
