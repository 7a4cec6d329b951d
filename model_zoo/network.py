"""The joint segmentation + classification network.

::

    x [B,1,H,W] in [0,1] -> repeat to RGB, normalise (buffers) -> encoder -> features f0..fd
    fd -> bottleneck -> attention -> fd'          (replaces fd for the decoder)
    [f0..fd'] -> decoder -> seg head -> seg logits [B,1,H,W]
    fd' -> pool -> cls head -> cls logits [B,K]       (cls_head.lesion_pool: + fd' pooled inside the lesion)
    (cls_head.norm: layernorm on the pooled vector, before the cls head and the latent aug)
    training with labels: pool(fd') -> latent aug -> extra (features, labels) -> cls head -> aug logits
    training with deep supervision: decoder stages at 1/2, 1/4, ... -> 1x1 conv each -> aux seg logits

The latent augmentation only ever sees the pooled vectors of the classification path, so the decoder is
never trained on mixed features under one image's mask.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model_zoo.attention import ATTENTIONS
from model_zoo.bottleneck import BOTTLENECKS
from model_zoo.config import ModelConfig
from model_zoo.convert import model_config_from_dict
from model_zoo.decoders import decoder_spec
from model_zoo.encoders import build_encoder, encoder_normalisation, min_input_size
from model_zoo.errors import UserError
from model_zoo.heads import ClassificationHead, GlobalPool, LesionPool, SegmentationHead
from model_zoo.latent_aug import LatentAugmentation


class InputShapeError(UserError, ValueError):
    """The input size does not fit the encoder/decoder; the message says what to pad to."""


@dataclass
class JointOutput:
    """``seg_logits, cls_logits = out`` always; the latent-augmentation extras are attributes.

    ``aug_cls_logits [M,K]`` / ``aug_labels [M]`` are None outside training, without labels, without
    latent augmentation, or when the batch gave no extra samples. ``features`` are the pooled
    bottleneck features ``[B,D]`` that feed the classifier. ``aux_seg_logits`` (training with
    ``model.deep_supervision``): the coarser stages' lesion logits ``[B,1,H/2,W/2]``, ``[B,1,H/4,W/4]``, ...
    """

    seg_logits: torch.Tensor
    cls_logits: torch.Tensor
    aug_cls_logits: torch.Tensor | None = None
    aug_labels: torch.Tensor | None = None
    features: torch.Tensor | None = None
    aux_seg_logits: tuple[torch.Tensor, ...] | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.seg_logits, self.cls_logits))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        return (self.seg_logits, self.cls_logits)[index]


def _register_pytree() -> None:
    """Let torch.compile / export flatten the output like a tuple of its tensor fields."""
    from torch.utils import _pytree

    if JointOutput in _pytree.SUPPORTED_NODES:  # module reloaded
        return
    names = [f.name for f in dataclasses.fields(JointOutput)]
    _pytree.register_pytree_node(
        JointOutput,
        lambda out: ([getattr(out, n) for n in names], None),
        lambda values, _ctx: JointOutput(*values),
        serialized_type_name="model_zoo.network.JointOutput",
    )


_register_pytree()


def input_requirements(cfg_or_model: ModelConfig | dict | nn.Module) -> tuple[int, int]:
    """``(divisor, min_size)``: H and W must be multiples of ``divisor`` and at least ``min_size``."""
    if isinstance(cfg_or_model, JointNet):
        return cfg_or_model.input_divisor, cfg_or_model.min_input_size
    cfg = cfg_or_model if isinstance(cfg_or_model, ModelConfig) else model_config_from_dict(cfg_or_model)
    spec = decoder_spec(
        cfg.decoder, cfg.decoder_options, cfg.decoder_attention, cfg.encoder_depth, cfg.deep_supervision
    )
    divisor = spec.input_divisor(min(spec.encoder_output_stride(), 2**cfg.encoder_depth))
    return divisor, max(divisor, min_input_size(cfg.encoder))


def check_input_shape(cfg_or_model: ModelConfig | dict | nn.Module, h: int, w: int) -> None:
    """Raise :class:`InputShapeError` unless an ``h x w`` input fits; the message gives the size to pad to."""
    divisor, min_size = input_requirements(cfg_or_model)
    if h % divisor == 0 and w % divisor == 0 and min(h, w) >= min_size:
        return

    def fit(n: int) -> int:
        n = max(n, min_size)
        return -(-n // divisor) * divisor

    raise InputShapeError(
        f"input of height={h}, width={w} does not fit this model: height and width must be multiples of "
        f"{divisor} and at least {min_size}; pad (or resize) to ({fit(h)}, {fit(w)})"
    )


def align_features(
    features: Sequence[torch.Tensor], h: int, w: int, output_stride: int
) -> list[torch.Tensor]:
    """Resize feature ``i`` to ``(h, w) / min(2**i, output_stride)`` where an encoder is off the grid.

    A no-op for padded ('same') convolution encoders; valid-padding ones such as Inception-V3 produce
    slightly smaller maps that the decoders could not concatenate.
    """
    out = []
    for i, feat in enumerate(features):
        stride = min(2**i, output_stride)
        size = (h // stride, w // stride)
        if tuple(feat.shape[-2:]) != size:
            if feat.shape[1] == 0:
                feat = feat.new_empty(feat.shape[0], 0, *size)
            else:
                feat = F.interpolate(feat, size=size, mode="bilinear", align_corners=False)
        out.append(feat)
    return out


class JointNet(nn.Module):
    """Encoder + bottleneck + attention + decoder + segmentation head + classification head."""

    def __init__(self, cfg: ModelConfig, class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        from segmentation_models_pytorch.base import initialization

        if cfg.in_channels != 1:
            raise ValueError(f"model.in_channels: only 1 (gray) is supported, got {cfg.in_channels}")
        if class_names is not None and len(class_names) != cfg.num_classes:
            raise ValueError(f"{len(class_names)} class names for model.num_classes={cfg.num_classes}")
        self.config = copy.deepcopy(cfg)
        self.class_names = tuple(class_names) if class_names is not None else None
        spec = decoder_spec(
            cfg.decoder, cfg.decoder_options, cfg.decoder_attention, cfg.encoder_depth, cfg.deep_supervision
        )
        bottleneck_builder = BOTTLENECKS.get(cfg.bottleneck)
        attention_builder = ATTENTIONS.get(cfg.attention)

        self.encoder = build_encoder(
            cfg.encoder, cfg.encoder_weights, cfg.encoder_depth, spec.encoder_output_stride()
        )
        channels = tuple(int(c) for c in self.encoder.out_channels)
        self.encoder_channels = channels
        self.output_stride = int(self.encoder.output_stride)
        self.input_divisor = spec.input_divisor(self.output_stride)
        self.min_input_size = max(self.input_divisor, min_input_size(cfg.encoder))

        self.bottleneck = bottleneck_builder(channels[-1])
        self.attention = attention_builder(channels[-1])
        self.decoder, decoder_channels = spec.build(channels, cfg.encoder)
        self.seg_head = SegmentationHead(decoder_channels, 1, spec.head_kernel)
        # Deep supervision: a 1x1 conv on each of the last stages before the output (finest first).
        self._stage_outputs = spec.stage_outputs if cfg.deep_supervision else None
        stage_channels = spec.stage_channels() if cfg.deep_supervision else ()
        self.aux_heads = nn.ModuleList(
            nn.Conv2d(stage_channels[-1 - k], 1, kernel_size=1) for k in range(1, cfg.deep_supervision + 1)
        )
        self.pool = GlobalPool(cfg.cls_head.pooling)
        self.lesion_pool = LesionPool() if cfg.cls_head.lesion_pool else None
        pooled_features = self.pool.out_features(channels[-1])
        if self.lesion_pool is not None:
            pooled_features += self.lesion_pool.out_features(channels[-1])
        # Why a norm option: without CBAM's sigmoid gates the pooled ResNet feature is about 3x larger,
        # the classifier's logits start 2-3x wider and its gradient on the shared encoder is 4-8x the
        # segmentation's (benchmarks/grad_balance.py); a layernorm fixes that scale without attention.
        self.cls_norm = nn.LayerNorm(pooled_features) if cfg.cls_head.norm == "layernorm" else nn.Identity()
        self.cls_head = ClassificationHead(
            pooled_features, cfg.num_classes, cfg.cls_head.dropout, cfg.cls_head.hidden
        )
        self.latent_aug = (
            LatentAugmentation(cfg.latent_aug, cfg.num_classes, self.class_names)
            if cfg.latent_aug.mode != "none"
            else None
        )
        mean, std = encoder_normalisation(cfg.encoder, cfg.encoder_weights)
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

        initialization.initialize_decoder(self.decoder)
        initialization.initialize_head(self.seg_head)
        for head in self.aux_heads:
            initialization.initialize_head(head)
        initialization.initialize_head(self.cls_head)

    def set_class_counts(self, counts: Sequence[int] | torch.Tensor) -> None:
        """Give the training fold's per-class counts to the latent augmentation (``target_classes: auto``)."""
        if self.latent_aug is not None:
            self.latent_aug.set_class_counts(counts)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Gray ``[B,1,H,W]`` in ``[0,1]`` -> normalised RGB ``[B,3,H,W]``."""
        if x.dim() != 4 or x.shape[1] != 1:
            raise InputShapeError(
                f"expected a gray batch [B, 1, H, W] with values in [0, 1], got {tuple(x.shape)}"
            )
        return (x.expand(-1, 3, -1, -1) - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> JointOutput:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            check_input_shape(self, h, w)
        features = align_features(self.encoder(self.preprocess(x)), h, w, self.output_stride)
        deep = self.attention(self.bottleneck(features[-1]))
        features[-1] = deep
        aux_logits = None
        if self.training and self._stage_outputs is not None:
            stages = self._stage_outputs(self.decoder, features)
            decoded = stages[-1]
            aux_logits = tuple(head(stages[-2 - k]) for k, head in enumerate(self.aux_heads))
        else:
            decoded = self.decoder(features)
        seg_logits = self.seg_head(decoded, (h, w))

        pooled = self.pool(deep)
        if self.lesion_pool is not None:
            pooled = torch.cat([pooled, self.lesion_pool(deep, seg_logits)], dim=1)
        pooled = self.cls_norm(pooled)
        cls_logits = self.cls_head(pooled)
        aug_logits = aug_labels = None
        if self.training and labels is not None and self.latent_aug is not None:
            aug_feats, aug_y = self.latent_aug(pooled, labels)
            if aug_feats.shape[0] > 0:
                aug_logits, aug_labels = self.cls_head(aug_feats), aug_y
        return JointOutput(seg_logits, cls_logits, aug_logits, aug_labels, pooled, aux_logits)

    def config_dict(self) -> dict[str, Any]:
        """The model config as a plain dict (round-trips through ``build_model``)."""
        return dataclasses.asdict(self.config)
