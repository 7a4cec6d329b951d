"""Decoders: segmentation_models_pytorch's decoder classes behind one registry.

Only smp's *decoder* modules are used (``UnetDecoder``, ``UnetPlusPlusDecoder``, ...), so the encoder,
bottleneck, attention and heads stay ours. Each registered :class:`DecoderSpec` states

- its options, named as smp's model keywords (``decoder_channels``, ``decoder_use_norm``,
  ``encoder_output_stride``, ...) with smp's defaults; ``model.decoder_options`` overrides them and an
  unknown option is an error listing the valid ones;
- the encoder output stride it needs (DeepLab: 8/16 by dilation, PAN: 16/32) and the input-size divisor;
- the kernel of the 1-channel segmentation head smp puts on it;
- whether it offers deep supervision (``model.deep_supervision``): the output of every decoder stage,
  not just the last, so that coarser stages can get a segmentation head and a loss of their own.

Decoders that need a ViT encoder (``dpt``) are not registered: every entry here works with any encoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from model_zoo.registry import Registry

DECODERS: Registry = Registry("decoder")

UNET_CHANNELS = (256, 128, 64, 32, 16)
DECODER_ATTENTIONS = ("scse",)  # what smp's decoder blocks accept as decoder_attention_type


class DecoderSpec:
    """A decoder family: validated options, the encoder stride it needs, and its builder."""

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    supports_attention: ClassVar[bool] = False
    supports_deep_supervision: ClassVar[bool] = False
    head_kernel: ClassVar[int] = 1
    min_depth: ClassVar[int] = 1

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        attention: str | None = None,
        depth: int = 5,
        deep_supervision: int = 0,
    ) -> None:
        options = dict(options or {})
        if "decoder_attention_type" in options:
            raise ValueError(
                "model.decoder_options.decoder_attention_type: set model.decoder_attention instead"
            )
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            raise ValueError(
                f"model.decoder_options: unknown option(s) {', '.join(unknown)} for decoder "
                f"{self.name!r}; valid: {valid}"
            )
        if attention is not None:
            if not self.supports_attention:
                able = ", ".join(n for n in DECODERS.names() if DECODERS.get(n).supports_attention)
                raise ValueError(
                    f"model.decoder_attention: decoder {self.name!r} has no attention blocks "
                    f"(decoders with one: {able}); set it to null"
                )
            if attention not in DECODER_ATTENTIONS:
                raise ValueError(
                    f"model.decoder_attention: unknown {attention!r}; valid: "
                    f"{', '.join(DECODER_ATTENTIONS)} or null"
                )
        if depth < self.min_depth:
            raise ValueError(
                f"model.encoder_depth: decoder {self.name!r} needs at least {self.min_depth}, got {depth}"
            )
        if deep_supervision and not self.supports_deep_supervision:
            able = ", ".join(n for n in DECODERS.names() if DECODERS.get(n).supports_deep_supervision)
            raise ValueError(
                f"model.deep_supervision: decoder {self.name!r} does not expose its stages "
                f"(decoders that do: {able}); set it to 0"
            )
        if not 0 <= deep_supervision < depth:
            raise ValueError(
                f"model.deep_supervision: at most encoder_depth - 1 = {depth - 1} extra stages, "
                f"got {deep_supervision}"
            )
        self.depth = depth
        self.attention = attention
        self.opts = {**self.defaults(depth), **options}
        self.validate()

    def defaults(self, depth: int) -> dict[str, Any]:
        return dict(self.options)

    def validate(self) -> None:
        """Check option values that smp would only reject deep inside its constructors."""

    def encoder_output_stride(self) -> int:
        """The output stride to build the encoder with (32 = no dilation)."""
        return 32

    def input_divisor(self, output_stride: int) -> int:
        """Input height and width must be multiples of this."""
        return output_stride

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        """The decoder module (``forward(features) -> map``) and its output channels."""
        raise NotImplementedError

    def stage_channels(self) -> tuple[int, ...]:
        """Output channels of every stage, coarsest first (deep supervision)."""
        raise NotImplementedError(f"decoder {self.name!r} does not expose its stages")

    @staticmethod
    def stage_outputs(decoder: nn.Module, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every stage's output, coarsest first; the last equals ``decoder(features)``."""
        raise NotImplementedError


def _register(cls: type[DecoderSpec]) -> type[DecoderSpec]:
    return DECODERS.register(cls.name)(cls)


def _channels(spec: DecoderSpec) -> tuple[int, ...]:
    channels = tuple(int(c) for c in spec.opts["decoder_channels"])
    if len(channels) != spec.depth:
        raise ValueError(
            f"model.decoder_options.decoder_channels: decoder {spec.name!r} needs one entry per "
            f"encoder stage ({spec.depth}), got {list(channels)}"
        )
    return channels


class _UnetLike(DecoderSpec):
    head_kernel = 3

    def defaults(self, depth: int) -> dict[str, Any]:
        return {**self.options, "decoder_channels": UNET_CHANNELS[:depth]}

    def validate(self) -> None:
        _channels(self)


@_register
class Unet(_UnetLike):
    """U-Net (Ronneberger et al. 2015): upsample + concat skip + two convs per stage."""

    name = "unet"
    options: ClassVar[dict[str, Any]] = {
        "decoder_channels": UNET_CHANNELS,
        "decoder_use_norm": "batchnorm",
        "decoder_interpolation": "nearest",
    }
    supports_attention = True
    supports_deep_supervision = True

    def stage_channels(self) -> tuple[int, ...]:
        return _channels(self)

    @staticmethod
    def stage_outputs(decoder: nn.Module, features: list[torch.Tensor]) -> list[torch.Tensor]:
        # smp 0.6's UnetDecoder.forward, keeping each block's output (tested equal to forward).
        shapes = [f.shape[2:] for f in features][::-1]
        features = features[1:][::-1]
        skips = features[1:]
        x = decoder.center(features[0])
        outputs = []
        for i, block in enumerate(decoder.blocks):
            height, width = shapes[i + 1]
            x = block(x, height, width, skip_connection=skips[i] if i < len(skips) else None)
            outputs.append(x)
        return outputs

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder

        channels = _channels(self)
        module = UnetDecoder(
            encoder_channels=encoder_channels,
            decoder_channels=channels,
            n_blocks=self.depth,
            use_norm=self.opts["decoder_use_norm"],
            attention_type=self.attention,
            add_center_block=encoder_name.startswith("vgg"),
            interpolation_mode=self.opts["decoder_interpolation"],
        )
        return module, channels[-1]


@_register
class UnetPlusPlus(_UnetLike):
    """UNet++ (Zhou et al. 2018): nested dense skip pathways between encoder and decoder."""

    name = "unetplusplus"
    options = Unet.options
    supports_attention = True

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        from segmentation_models_pytorch.decoders.unetplusplus.decoder import UnetPlusPlusDecoder

        if encoder_name.startswith("mit_b"):
            raise ValueError(
                f"decoder 'unetplusplus' does not support encoder {encoder_name!r} (smp restriction)"
            )
        channels = _channels(self)
        module = UnetPlusPlusDecoder(
            encoder_channels=encoder_channels,
            decoder_channels=channels,
            n_blocks=self.depth,
            use_norm=self.opts["decoder_use_norm"],
            attention_type=self.attention,
            interpolation_mode=self.opts["decoder_interpolation"],
            center=encoder_name.startswith("vgg"),
        )
        return module, channels[-1]


@_register
class MAnet(_UnetLike):
    """MA-Net (Fan et al. 2020): position- and channel-attention blocks in a U-shaped decoder."""

    name = "manet"
    options: ClassVar[dict[str, Any]] = {
        "decoder_channels": UNET_CHANNELS,
        "decoder_use_norm": "batchnorm",
        "decoder_pab_channels": 64,
        "decoder_interpolation": "nearest",
    }

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        from segmentation_models_pytorch.decoders.manet.decoder import MAnetDecoder

        channels = _channels(self)
        module = MAnetDecoder(
            encoder_channels=encoder_channels,
            decoder_channels=channels,
            n_blocks=self.depth,
            use_norm=self.opts["decoder_use_norm"],
            pab_channels=self.opts["decoder_pab_channels"],
            interpolation_mode=self.opts["decoder_interpolation"],
        )
        return module, channels[-1]


@_register
class Linknet(DecoderSpec):
    """LinkNet (Chaurasia & Culurciello 2017): additive skips, light decoder."""

    name = "linknet"
    options: ClassVar[dict[str, Any]] = {"decoder_use_norm": "batchnorm"}

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        from segmentation_models_pytorch.decoders.linknet.decoder import LinknetDecoder

        module = LinknetDecoder(
            encoder_channels=encoder_channels,
            prefinal_channels=32,
            n_blocks=self.depth,
            use_norm=self.opts["decoder_use_norm"],
        )
        return module, 32


@_register
class FPN(DecoderSpec):
    """Feature Pyramid Network (Lin et al. 2017) segmentation branch, output at stride 4."""

    name = "fpn"
    options: ClassVar[dict[str, Any]] = {
        "decoder_pyramid_channels": 256,
        "decoder_segmentation_channels": 128,
        "decoder_merge_policy": "add",
        "decoder_dropout": 0.2,
        "decoder_interpolation": "nearest",
    }
    min_depth = 3

    def validate(self) -> None:
        channels = self.opts["decoder_segmentation_channels"]
        if not isinstance(channels, int) or channels <= 0 or channels % 32:
            raise ValueError(
                "model.decoder_options.decoder_segmentation_channels: fpn uses GroupNorm(32), so it "
                f"must be a positive multiple of 32, got {channels!r}"
            )
        if self.opts["decoder_merge_policy"] not in ("add", "cat"):
            raise ValueError(
                "model.decoder_options.decoder_merge_policy: expected 'add' or 'cat', "
                f"got {self.opts['decoder_merge_policy']!r}"
            )

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        from segmentation_models_pytorch.decoders.fpn.decoder import FPNDecoder

        module = FPNDecoder(
            encoder_channels=encoder_channels,
            encoder_depth=self.depth,
            pyramid_channels=self.opts["decoder_pyramid_channels"],
            segmentation_channels=self.opts["decoder_segmentation_channels"],
            dropout=self.opts["decoder_dropout"],
            merge_policy=self.opts["decoder_merge_policy"],
            interpolation_mode=self.opts["decoder_interpolation"],
        )
        return module, module.out_channels


class _DeepLab(DecoderSpec):
    strides: ClassVar[tuple[int, ...]] = (8, 16)

    def validate(self) -> None:
        if self.opts["encoder_output_stride"] not in self.strides:
            raise ValueError(
                f"model.decoder_options.encoder_output_stride: decoder {self.name!r} supports "
                f"{' or '.join(map(str, self.strides))}, got {self.opts['encoder_output_stride']!r}"
            )

    def encoder_output_stride(self) -> int:
        return int(self.opts["encoder_output_stride"])


@_register
class DeepLabV3Plus(_DeepLab):
    """DeepLabV3+ (Chen et al. 2018): ASPP on a dilated encoder + stride-4 low-level skip."""

    name = "deeplabv3plus"
    options: ClassVar[dict[str, Any]] = {
        "encoder_output_stride": 16,
        "decoder_channels": 256,
        "decoder_atrous_rates": (12, 24, 36),
        "decoder_aspp_separable": True,
        "decoder_aspp_dropout": 0.5,
    }
    min_depth = 3

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        from segmentation_models_pytorch.decoders.deeplabv3.decoder import DeepLabV3PlusDecoder

        module = DeepLabV3PlusDecoder(
            encoder_channels=encoder_channels,
            encoder_depth=self.depth,
            out_channels=self.opts["decoder_channels"],
            atrous_rates=tuple(self.opts["decoder_atrous_rates"]),
            output_stride=self.opts["encoder_output_stride"],
            aspp_separable=self.opts["decoder_aspp_separable"],
            aspp_dropout=self.opts["decoder_aspp_dropout"],
        )
        return module, int(self.opts["decoder_channels"])


@_register
class DeepLabV3(_DeepLab):
    """DeepLabV3 (Chen et al. 2017): ASPP on the deepest map of a dilated encoder."""

    name = "deeplabv3"
    options: ClassVar[dict[str, Any]] = {
        "encoder_output_stride": 8,
        "decoder_channels": 256,
        "decoder_atrous_rates": (12, 24, 36),
        "decoder_aspp_separable": False,
        "decoder_aspp_dropout": 0.5,
    }

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        from segmentation_models_pytorch.decoders.deeplabv3.decoder import DeepLabV3Decoder

        module = DeepLabV3Decoder(
            in_channels=encoder_channels[-1],
            out_channels=self.opts["decoder_channels"],
            atrous_rates=tuple(self.opts["decoder_atrous_rates"]),
            aspp_separable=self.opts["decoder_aspp_separable"],
            aspp_dropout=self.opts["decoder_aspp_dropout"],
        )
        return module, int(self.opts["decoder_channels"])


@_register
class PAN(_DeepLab):
    """Pyramid Attention Network (Li et al. 2018): feature-pyramid attention + global attention upsampling."""

    name = "pan"
    options: ClassVar[dict[str, Any]] = {
        "encoder_output_stride": 16,
        "decoder_channels": 32,
        "decoder_interpolation": "bilinear",
    }
    strides = (16, 32)
    min_depth = 3
    head_kernel = 3

    def input_divisor(self, output_stride: int) -> int:
        # the feature-pyramid block halves the deepest map three times and upsamples it back
        return output_stride * 8

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        from segmentation_models_pytorch.decoders.pan.decoder import PANDecoder

        module = PANDecoder(
            encoder_channels=encoder_channels,
            encoder_depth=self.depth,
            decoder_channels=self.opts["decoder_channels"],
            interpolation_mode=self.opts["decoder_interpolation"],
        )
        return module, int(self.opts["decoder_channels"])


@_register
class UPerNet(DecoderSpec):
    """UPerNet (Xiao et al. 2018): PSP module on the deepest map + FPN fusion, output at stride 4."""

    name = "upernet"
    options: ClassVar[dict[str, Any]] = {"decoder_channels": 256, "decoder_use_norm": "batchnorm"}
    min_depth = 3

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder

        module = UPerNetDecoder(
            encoder_channels=encoder_channels,
            encoder_depth=self.depth,
            decoder_channels=self.opts["decoder_channels"],
            use_norm=self.opts["decoder_use_norm"],
        )
        return module, int(self.opts["decoder_channels"])


@_register
class Segformer(DecoderSpec):
    """SegFormer's all-MLP decoder (Xie et al. 2021), on any encoder, output at stride 4."""

    name = "segformer"
    options: ClassVar[dict[str, Any]] = {"decoder_segmentation_channels": 256}
    min_depth = 3

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        from segmentation_models_pytorch.decoders.segformer.decoder import SegformerDecoder

        channels = int(self.opts["decoder_segmentation_channels"])
        module = SegformerDecoder(
            encoder_channels=encoder_channels, encoder_depth=self.depth, segmentation_channels=channels
        )
        return module, channels


@_register
class PSPNet(DecoderSpec):
    """PSPNet (Zhao et al. 2017): pyramid pooling on the deepest map."""

    name = "pspnet"
    options: ClassVar[dict[str, Any]] = {
        "psp_out_channels": 512,
        "decoder_use_norm": "batchnorm",
        "psp_dropout": 0.2,
    }
    head_kernel = 3

    def build(self, encoder_channels: Sequence[int], encoder_name: str = "") -> tuple[nn.Module, int]:
        from segmentation_models_pytorch.decoders.pspnet.decoder import PSPDecoder

        module = PSPDecoder(
            encoder_channels=encoder_channels,
            use_norm=self.opts["decoder_use_norm"],
            out_channels=self.opts["psp_out_channels"],
            dropout=self.opts["psp_dropout"],
        )
        return module, int(self.opts["psp_out_channels"])


def decoder_spec(
    name: str,
    options: Mapping[str, Any] | None = None,
    attention: str | None = None,
    depth: int = 5,
    deep_supervision: int = 0,
) -> DecoderSpec:
    """The validated spec of decoder ``name`` (unknown names list the valid ones)."""
    return DECODERS.get(name)(options, attention, depth, deep_supervision)
