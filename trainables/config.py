"""The ``train:`` section of a spec."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Annotated, Literal

from model_zoo.config import LossConfig
from model_zoo.schema import Section, check


class DoubleImbalanceCorrectionWarning(UserWarning):
    """``train.sampler: balanced`` with ``train.loss.cls: weighted_ce``: the class imbalance is corrected
    twice."""


def double_correction_message(sampler: str, cls_loss: str) -> str | None:
    """Why ``sampler`` with ``cls_loss`` over-corrects the class imbalance, or None when it does not.

    The balanced sampler already shows the classes equally often; ``weighted_ce`` then weighs each class
    by its inverse frequency in the training fold as well, which inverts the imbalance: a class n times
    rarer counts about n times as much in the classification loss instead of equally.
    """
    if sampler != "balanced" or cls_loss != "weighted_ce":
        return None
    return (
        "train.sampler balanced with train.loss.cls weighted_ce corrects the class imbalance twice: the "
        "sampler already draws the classes equally often, and weighted_ce weighs them by inverse training "
        "frequency on top (rare classes then outweigh common ones). Use ce or focal with the balanced "
        "sampler, or weighted_ce with the random sampler, unless this pairing is compared on purpose."
    )


def _check_select(weights: dict[str, float]) -> None:
    from trainables.metrics import check_select  # lazy: metrics imports MONAI and scikit-learn

    check_select(weights)


@dataclass
class AugmentConfig(Section):
    """On-device batch augmentation (image and mask share one affine grid)."""

    hflip: bool = True
    rotate: float = field(default=15.0, metadata={"ge": 0.0, "le": 180.0, "description": "max degrees"})
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = field(
        default=0.0,
        metadata={"ge": 0.0, "le": 0.5, "description": "max shift per axis, fraction of the image side"},
    )
    brightness: float = field(default=0.1, metadata={"ge": 0.0, "le": 1.0})
    contrast: float = field(default=0.1, metadata={"ge": 0.0, "le": 1.0})
    gamma: tuple[float, float] = (0.8, 1.2)
    speckle: float = field(
        default=0.1, metadata={"ge": 0.0, "le": 1.0, "description": "multiplicative noise std"}
    )
    blur: float = field(
        default=0.0, metadata={"ge": 0.0, "le": 1.0, "description": "share of images Gaussian-blurred"}
    )
    blur_sigma: tuple[float, float] = field(
        default=(0.5, 1.0), metadata={"description": "blur std range, pixels of the training size"}
    )
    lowres: float = field(
        default=0.0,
        metadata={"ge": 0.0, "le": 1.0, "description": "share of images shown at a lower resolution"},
    )
    lowres_zoom: tuple[float, float] = field(
        default=(0.5, 1.0), metadata={"description": "downsampling factor range before the upsampling"}
    )
    lesion_paste: float = field(
        default=0.0,
        metadata={
            "ge": 0.0,
            "le": 1.0,
            "description": "share of lesion images that get the lesion of another same-class image of the "
            "batch carved in (CarveMix)",
        },
    )
    lesion_paste_margin: float = field(
        default=0.05,
        metadata={
            "ge": 0.0,
            "le": 0.25,
            "description": "tissue kept around the carved lesion, fraction of the image side",
        },
    )

    def validate(self) -> list[str]:
        """Ranges run low to high; blur and low-resolution settings stay where they mean something."""
        problems = [
            f"{name}: [{lo}, {hi}] must run low to high"
            for name, (lo, hi) in (
                ("scale", self.scale),
                ("gamma", self.gamma),
                ("blur_sigma", self.blur_sigma),
                ("lowres_zoom", self.lowres_zoom),
            )
            if lo > hi
        ]
        if min(self.scale) <= 0 or min(self.gamma) <= 0:
            problems.append(f"scale: {list(self.scale)}, gamma: {list(self.gamma)}: both must be > 0")
        if not (self.blur_sigma[0] >= 0.1 and self.blur_sigma[1] <= 5.0):
            problems.append(f"blur_sigma: {list(self.blur_sigma)}: std in pixels within [0.1, 5]")
        if not (self.lowres_zoom[0] >= 0.1 and self.lowres_zoom[1] <= 1.0):
            problems.append(f"lowres_zoom: {list(self.lowres_zoom)}: factors within [0.1, 1]")
        return problems


@dataclass
class TrainConfig(Section):
    """Optimisation of one config across the K folds."""

    epochs: int = field(default=40, metadata={"ge": 1})
    batch_size: int = field(default=8, metadata={"ge": 1})
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = field(default=3.0e-4, metadata={"gt": 0.0})
    weight_decay: float = field(default=1.0e-4, metadata={"ge": 0.0})
    momentum: float = field(default=0.9, metadata={"ge": 0.0, "lt": 1.0, "description": "SGD only"})
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: int = field(default=1, metadata={"ge": 0})
    schedule_epochs: int | None = field(
        default=None,
        metadata={
            "ge": 1,
            "description": "epochs the LR schedule spans; training stops after `epochs` (<= this). "
            "null: `epochs`. A refit of N epochs sets it to the CV's epochs, so that its LR follows the "
            "CV's curve up to the chosen epoch instead of annealing to 0 over N",
        },
    )
    amp: Literal["auto", "bf16", "fp16", "off"] = field(
        default="auto",
        metadata={
            "description": "auto: bf16 on CUDA (fp16 where unsupported); on CPUs with bf16 hardware "
            "(AVX512-BF16/AMX) the faster of bf16 and off, timed before the first epoch (bf16 is 1.9x "
            "fp32 on one such CPU, slower on another); else off (fp32); bf16 | fp16 (CUDA) | off force one"
        },
    )
    channels_last: bool = field(
        default=True, metadata={"description": "NHWC weights: faster on CUDA and on the CPU (oneDNN)"}
    )
    compile: bool = False
    grad_clip: float | None = field(default=1.0, metadata={"gt": 0.0})
    ema: float | None = field(
        default=None,
        metadata={
            "gt": 0.0,
            "lt": 1.0,
            "description": "decay per optimizer step of an exponential moving average of the weights "
            "(torch.optim.swa_utils, buffers included); validation, checkpoints' best weights, refit and "
            "bundles then use the average. null: the weights as trained",
        },
    )
    sampler: Literal["random", "balanced"] = "random"
    patience: int | None = field(
        default=None, metadata={"ge": 1, "description": "per-fold early stopping (epochs)"}
    )
    seed: int = 0
    deterministic: bool = False
    cudnn_benchmark: bool = field(
        default=True,
        metadata={
            "description": "CUDA: autotune conv kernels (faster epochs, slower first epoch); "
            "off with deterministic"
        },
    )
    tau: float = field(default=2.0, metadata={"gt": 0.0, "description": "NSD tolerance in pixels"})
    min_area: int = field(
        default=10, metadata={"ge": 0, "description": "px; a smaller predicted lesion counts as none"}
    )
    lesion_gate: Literal["none", "classifier"] = field(
        default="none",
        metadata={
            "description": "classifier: no lesion is drawn on an image the classification head calls normal "
            "(validation, test, predict; the ungated figures are kept as val/ungated_*)"
        },
    )
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    select: Annotated[dict[str, float], check(_check_select)] = field(
        default_factory=lambda: {"dice": 0.5, "macro_f1": 0.5},
        metadata={"description": "score = weighted mean of these validation metrics"},
    )

    @property
    def schedule_span(self) -> int:
        """Epochs the LR schedule spans: ``schedule_epochs``, else ``epochs``."""
        return self.schedule_epochs or self.epochs

    def validate(self) -> list[str]:
        """Cross-field rules: ``schedule_epochs`` below ``epochs`` refuses; balanced sampler +
        ``weighted_ce`` warns (:class:`DoubleImbalanceCorrectionWarning`): an over-correction, but a
        legitimate arm of an imbalance study (``spaces/stage4_imbalance.yaml`` crosses sampler and loss
        on purpose)."""
        message = double_correction_message(self.sampler, self.loss.cls)
        if message is not None:
            warnings.warn(message, DoubleImbalanceCorrectionWarning, stacklevel=2)
        if self.schedule_epochs is not None and self.schedule_epochs < self.epochs:
            # past its end torch's cosine climbs back up and OneCycleLR raises
            return [
                f"schedule_epochs: {self.schedule_epochs} is less than epochs: {self.epochs}; the schedule "
                "must span every epoch trained (null: epochs)"
            ]
        return []
