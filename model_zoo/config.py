"""The ``model:`` section of a spec, as typed dataclasses.

Rules are stated in the types (``Literal`` choices, ``check`` name lookups) and as pydantic ``Field``
arguments in the field metadata (``ge``/``le``/``gt``/``lt``, ``description``), validated by
:mod:`model_zoo.schema`; ``build_model`` also accepts a plain dict and converts it with
:func:`model_config_from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from model_zoo.schema import Section, check


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
class LatentAugConfig(Section):
    """Latent feature augmentation of the pooled bottleneck features that feed the classifier."""

    mode: Literal["none", "noise", "mixup", "noise+mixup"] = field(
        default="none", metadata={"description": "which augmentation of the pooled features (training only)"}
    )
    sigma: float = field(
        default=0.05, metadata={"ge": 0.0, "description": "noise std, relative to feature std"}
    )
    alpha: float = field(
        default=0.4, metadata={"gt": 0.0, "description": "intra-class MixUp lambda ~ Beta(a, a)"}
    )
    target_classes: str | list[str] = field(
        default="auto",
        metadata={"description": "'auto' = classes rarer than the most frequent, or a list of names"},
    )
    multiplier: int = field(
        default=1, metadata={"ge": 1, "description": "extra samples per target sample and mode"}
    )


@dataclass
class ClsHeadConfig(Section):
    """Classification head on the pooled bottleneck feature."""

    pooling: Literal["avg", "max", "avgmax"] = "avg"
    dropout: float = field(default=0.2, metadata={"ge": 0.0, "lt": 1.0})
    hidden: int = field(
        default=0, metadata={"ge": 0, "description": "hidden units of an extra layer (0 = linear)"}
    )
    lesion_pool: bool = field(
        default=False,
        metadata={
            "description": "also pool the bottleneck feature inside the predicted lesion (the segmentation's "
            "probabilities, detached) and give the classifier the lesion's share of the image"
        },
    )
    norm: Literal["none", "layernorm"] = field(
        default="none",
        metadata={
            "description": "normalise the pooled feature before the classifier and the latent augmentation "
            "(layernorm: zero mean, unit variance per image, then a learned scale and shift)"
        },
    )


@dataclass
class ModelConfig(Section):
    """Everything needed to build the joint segmentation + classification network."""

    encoder: Annotated[str, check(_check_encoder, lookup=True)] = field(
        default="resnet18",
        metadata={"description": "smp encoder, 'tu-<timm name>', 'tv-<torchvision>' or plain_bn / plain_in"},
    )
    encoder_weights: str | None = field(
        default=None, metadata={"description": "imagenet | null | path to a .pth/.safetensors state dict"}
    )
    encoder_depth: int = field(default=5, metadata={"ge": 3, "le": 5})
    decoder: Annotated[str, check(_check_in("model_zoo.decoders.DECODERS"), lookup=True)] = "unet"
    decoder_options: dict[str, Any] = field(
        default_factory=dict, metadata={"description": "passed to the smp decoder (decoder_channels, ...)"}
    )
    bottleneck: Annotated[str, check(_check_in("model_zoo.bottleneck.BOTTLENECKS"), lookup=True)] = "identity"
    attention: Annotated[str, check(_check_in("model_zoo.attention.ATTENTIONS"), lookup=True)] = "none"
    decoder_attention: str | None = field(
        default=None,
        metadata={"description": "smp decoder_attention_type (scse) where the decoder supports it"},
    )
    deep_supervision: int = field(
        default=0,
        metadata={
            "ge": 0,
            "le": 4,
            "description": "training only: this many coarser decoder stages get a seg head and loss "
            "(nnU-Net deep supervision; 0 = off; unet)",
        },
    )
    latent_aug: LatentAugConfig = field(default_factory=LatentAugConfig)
    cls_head: ClsHeadConfig = field(default_factory=ClsHeadConfig)
    num_classes: int = field(default=3, metadata={"ge": 2})
    in_channels: Literal[1] = field(default=1, metadata={"description": "gray ultrasound input"})


@dataclass
class LossConfig(Section):
    """Joint loss: ``seg_weight * seg_loss + cls_weight * cls_loss`` (thesis default 0.7 / 0.3)."""

    seg: Literal["dice_bce", "dice_focal", "tversky", "focal"] = "dice_bce"
    cls: Literal["ce", "weighted_ce", "focal"] = "weighted_ce"
    seg_weight: float = field(default=0.7, metadata={"ge": 0.0})
    cls_weight: float = field(default=0.3, metadata={"ge": 0.0})
    label_smoothing: float = field(default=0.0, metadata={"ge": 0.0, "lt": 1.0})
    focal_gamma: float = field(default=2.0, metadata={"ge": 0.0})
    tversky_alpha: float = field(default=0.3, metadata={"ge": 0.0, "le": 1.0})
    tversky_beta: float = field(default=0.7, metadata={"ge": 0.0, "le": 1.0})
    aug_weight: float = field(
        default=1.0, metadata={"ge": 0.0, "description": "weight of latent-aug samples in cls loss"}
    )
    batch_dice: bool = field(
        default=False,
        metadata={
            "description": "Dice / Tversky summed over the whole batch (nnU-Net 2D) instead of per image"
        },
    )
    presence_weight: float = field(
        default=0.0,
        metadata={"ge": 0.0, "description": "weight of the image-level lesion-presence term in the seg loss"},
    )
    presence_top_k: int = field(
        default=10,
        metadata={
            "ge": 1,
            "description": "px; presence logit = mean of the k largest seg logits (= min_area)",
        },
    )

    def validate(self) -> list[str]:
        """``batch_dice`` changes the Dice / Tversky term, so a loss without one refuses it."""
        if self.batch_dice and self.seg == "focal":
            return [
                "batch_dice: seg 'focal' has no Dice / Tversky term to sum over the batch "
                "(dice_bce, dice_focal and tversky have one)"
            ]
        return []
