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
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
