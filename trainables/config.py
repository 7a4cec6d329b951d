"""The ``train:`` section of a spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from model_zoo.config import LossConfig


def _check_select(weights: dict[str, float]) -> None:
    from trainables.metrics import check_select  # lazy: metrics imports MONAI and scikit-learn

    check_select(weights)


@dataclass
class AugmentConfig:
    """On-device batch augmentation (image and mask share one affine grid)."""

    hflip: bool = True
    rotate: float = field(default=15.0, metadata={"min": 0.0, "max": 180.0, "help": "max degrees"})
    scale: tuple[float, float] = (0.9, 1.1)
    brightness: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    contrast: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0})
    gamma: tuple[float, float] = (0.8, 1.2)
    speckle: float = field(default=0.1, metadata={"min": 0.0, "max": 1.0, "help": "multiplicative noise std"})


@dataclass
class TrainConfig:
    """Optimisation of one config across the K folds."""

    epochs: int = field(default=40, metadata={"min": 1})
    batch_size: int = field(default=8, metadata={"min": 1})
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = field(default=3.0e-4, metadata={"gt": 0.0})
    weight_decay: float = field(default=1.0e-4, metadata={"min": 0.0})
    momentum: float = field(default=0.9, metadata={"min": 0.0, "lt": 1.0, "help": "SGD only"})
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: int = field(default=1, metadata={"min": 0})
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True
    compile: bool = False
    grad_clip: float | None = field(default=1.0, metadata={"gt": 0.0})
    sampler: Literal["random", "balanced"] = "random"
    patience: int | None = field(
        default=None, metadata={"min": 1, "help": "per-fold early stopping (epochs)"}
    )
    seed: int = 0
    deterministic: bool = False
    cudnn_benchmark: bool = field(
        default=True,
        metadata={
            "help": "CUDA: autotune conv kernels (faster epochs, slower first epoch); off with deterministic"
        },
    )
    tau: float = field(default=2.0, metadata={"gt": 0.0, "help": "NSD tolerance in pixels"})
    min_area: int = field(
        default=10, metadata={"min": 0, "help": "px; a smaller predicted lesion counts as none"}
    )
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    select: dict[str, float] = field(
        default_factory=lambda: {"dice": 0.5, "macro_f1": 0.5},
        metadata={"check": _check_select, "help": "score = weighted mean of these validation metrics"},
    )
