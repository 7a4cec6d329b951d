"""The ``model:`` section of a spec, as typed dataclasses.

Rules are stated as field metadata (``min``/``max``/``gt``/``choices``/``check``, see docs/architecture.md)
and enforced by the generic validator in ``trainables/schema.py``; ``build_model`` also accepts a plain
dict and converts it with :func:`model_config_from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


def _check_encoder(name: str) -> None:
    from model_zoo.encoders import check_encoder_name

    check_encoder_name(name)


def _check_in(registry_attr: str) -> Any:
    def check(name: str) -> None:
        import importlib

        module_name, attr = registry_attr.rsplit(".", 1)
        getattr(importlib.import_module(module_name), attr).check(name)

    return check


@dataclass
class LatentAugConfig:
    """Latent feature augmentation of the pooled bottleneck features that feed the classifier."""

    mode: Literal["none", "noise", "mixup", "noise+mixup"] = field(
        default="none", metadata={"help": "which augmentation of the pooled features (training only)"}
    )
    sigma: float = field(default=0.05, metadata={"min": 0.0, "help": "noise std, relative to feature std"})
    alpha: float = field(default=0.4, metadata={"gt": 0.0, "help": "intra-class MixUp lambda ~ Beta(a, a)"})
    target_classes: str | list[str] = field(
        default="auto", metadata={"help": "'auto' = classes rarer than the most frequent, or a list of names"}
    )
    multiplier: int = field(
        default=1, metadata={"min": 1, "help": "extra samples per target sample and mode"}
    )


@dataclass
class ClsHeadConfig:
    """Classification head on the pooled bottleneck feature."""

    pooling: Literal["avg", "max", "avgmax"] = "avg"
    dropout: float = field(default=0.2, metadata={"min": 0.0, "lt": 1.0})
    hidden: int = field(default=0, metadata={"min": 0, "help": "hidden units of an extra layer (0 = linear)"})


@dataclass
class ModelConfig:
    """Everything needed to build the joint segmentation + classification network."""

    encoder: str = field(
        default="resnet18",
        metadata={"check": _check_encoder, "help": "smp encoder, 'tu-<timm name>' or 'tv-<torchvision>'"},
    )
    encoder_weights: str | None = field(
        default=None, metadata={"help": "imagenet | null | path to a .pth/.safetensors state dict"}
    )
    encoder_depth: int = field(default=5, metadata={"min": 3, "max": 5})
    decoder: str = field(default="unet", metadata={"check": _check_in("model_zoo.decoders.DECODERS")})
    decoder_options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "passed to the smp decoder (decoder_channels, ...)"}
    )
    bottleneck: str = field(
        default="identity", metadata={"check": _check_in("model_zoo.bottleneck.BOTTLENECKS")}
    )
    attention: str = field(default="none", metadata={"check": _check_in("model_zoo.attention.ATTENTIONS")})
    decoder_attention: str | None = field(
        default=None, metadata={"help": "smp decoder_attention_type (scse) where the decoder supports it"}
    )
    latent_aug: LatentAugConfig = field(default_factory=LatentAugConfig)
    cls_head: ClsHeadConfig = field(default_factory=ClsHeadConfig)
    num_classes: int = field(default=3, metadata={"min": 2})
    in_channels: int = field(default=1, metadata={"choices": (1,), "help": "gray ultrasound input"})


@dataclass
class LossConfig:
    """Joint loss: ``seg_weight * seg_loss + cls_weight * cls_loss`` (thesis default 0.7 / 0.3)."""

    seg: Literal["dice_bce", "dice_focal", "tversky", "focal"] = "dice_bce"
    cls: Literal["ce", "weighted_ce", "focal"] = "weighted_ce"
    seg_weight: float = field(default=0.7, metadata={"min": 0.0})
    cls_weight: float = field(default=0.3, metadata={"min": 0.0})
    label_smoothing: float = field(default=0.0, metadata={"min": 0.0, "lt": 1.0})
    focal_gamma: float = field(default=2.0, metadata={"min": 0.0})
    tversky_alpha: float = field(default=0.3, metadata={"min": 0.0, "max": 1.0})
    tversky_beta: float = field(default=0.7, metadata={"min": 0.0, "max": 1.0})
    aug_weight: float = field(
        default=1.0, metadata={"min": 0.0, "help": "weight of latent-aug samples in cls loss"}
    )
    presence_weight: float = field(
        default=0.0,
        metadata={"min": 0.0, "help": "weight of the image-level lesion-presence term in the seg loss"},
    )
    presence_top_k: int = field(
        default=10,
        metadata={"min": 1, "help": "px; presence logit = mean of the k largest seg logits (= min_area)"},
    )
