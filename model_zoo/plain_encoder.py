"""nnU-Net-style plain convolutional encoder, for training from scratch (``plain_bn``, ``plain_in``).

Each stage is two 3x3 convolutions, each followed by a normalisation and LeakyReLU(0.01), the first with
stride 2. The widths (32, 64, 128, 256, 320) are the list the anchor study of issue 13 (Aumente-Maestro et
al. 2025) trains from scratch on BUSI (nnU-Net's, capped at its 3D limit of 320), shifted one stage: nnU-Net's
full-resolution stage is left out, since smp's decoders never read the stride-1 feature (it is the input,
by their convention), so the first stage starts at stride 2, which also spares the most expensive
convolutions on a CPU. At each stride that is half nnU-Net's 2D width (64 at stride 2 ... 512 at 32).

Why it exists: ImageNet encoders (ResNets, EfficientNets) are designed to be pretrained; nnU-Net's plain
network is the from-scratch practice for medical segmentation. Measured on the 2-core development VM
(batch 16, 128 px, bf16 autocast, forward + backward + AdamW, smp U-Net decoder [128, 64, 32, 32, 16]):
ResNet-18 36.4 images/s with 12.5 M parameters, ``plain_in`` 48.5, ``plain_bn`` 56.1 with 3.9 M (instance
norm on the CPU returns contiguous tensors, so ``plain_in`` leaves channels_last at every stage).

No pretrained weights exist for it; a state-dict file (``encoder_weights: path``) still loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from model_zoo.pyramid_encoder import PyramidEncoder

WIDTHS = (32, 64, 128, 256, 320)


@dataclass(frozen=True)
class PlainEncoderSpec:
    """Widths of the stages at strides 2..32 and the normalisation after every convolution."""

    norm: str
    widths: tuple[int, ...] = WIDTHS
    description: str = ""


PLAIN_ENCODERS: dict[str, PlainEncoderSpec] = {
    "plain_bn": PlainEncoderSpec("batch", description="batch norm: the per-image channel means survive"),
    "plain_in": PlainEncoderSpec("instance", description="instance norm, as nnU-Net and the anchor study"),
}

_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "instance": lambda c: nn.InstanceNorm2d(c, affine=True),
}


def _conv_norm_act(c_in: int, c_out: int, stride: int, norm: str) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        _NORMS[norm](c_out),
        nn.LeakyReLU(0.01, inplace=True),
    ]


class PlainEncoder(PyramidEncoder):
    """The input, then the stages' features at strides 2 .. 2**depth."""

    def __init__(self, name: str, depth: int = 5, in_channels: int = 3) -> None:
        spec = PLAIN_ENCODERS[name]
        widths = spec.widths[:depth]
        super().__init__(name, (in_channels, *widths))
        inputs = (in_channels, *widths[:-1])
        self.stages = nn.ModuleList(
            nn.Sequential(
                *_conv_norm_act(c_in, c_out, 2, spec.norm), *_conv_norm_act(c_out, c_out, 1, spec.norm)
            )
            for c_in, c_out in zip(inputs, widths)
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # nnU-Net's init for LeakyReLU networks
                nn.init.kaiming_normal_(module.weight, a=0.01)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [x]
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
