"""Attention blocks applied to the bottleneck feature map, ``[B, C, h, w] -> [B, C, h, w]``.

- ``cbam``: Convolutional Block Attention Module (Woo et al., ECCV 2018, arXiv:1807.06521): a channel
  gate (shared MLP on the average- and max-pooled descriptors, summed, sigmoid) followed by a spatial gate
  (7x7 conv + BN over the channel-wise [max, mean] maps, sigmoid).
- ``se``: Squeeze-and-Excitation (Hu et al., CVPR 2018, arXiv:1709.01507).
- ``scse``: concurrent spatial and channel SE (Roy et al., MICCAI 2018, arXiv:1803.02579), the
  additive variant that smp's ``decoder_attention_type="scse"`` also uses.

Hidden widths are ``max(channels // reduction, min_hidden)`` so that narrow maps of tiny test
encoders do not collapse to zero units.
"""

from __future__ import annotations

import torch
from torch import nn

from model_zoo.registry import Registry

ATTENTIONS: Registry = Registry("attention")


def _hidden(channels: int, reduction: int, min_hidden: int) -> int:
    return max(channels // reduction, min_hidden)


class ChannelGate(nn.Module):
    """CBAM channel attention: ``sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` with one shared MLP."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = _hidden(channels, reduction, min_hidden)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(avg + mx)


class SpatialGate(nn.Module):
    """CBAM spatial attention: ``sigmoid(BN(conv7x7([max_c(x), mean_c(x)])))``."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """Channel gate then spatial gate, in that order (the sequential arrangement of Woo et al.)."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelGate(channels, reduction, min_hidden)
        self.spatial = SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class SqueezeExcitation(nn.Module):
    """SE: ``x * sigmoid(FC(ReLU(FC(avgpool(x)))))`` (channel re-weighting only)."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = _hidden(channels, reduction, min_hidden)
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


class SCSE(nn.Module):
    """scSE: channel SE plus spatial SE (``sigmoid(conv1x1(x))`` per pixel), outputs added."""

    def __init__(self, channels: int, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        self.cse = SqueezeExcitation(channels, reduction, min_hidden)
        self.sse = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cse(x) + x * self.sse(x)


@ATTENTIONS.register("none")
def none(channels: int) -> nn.Module:
    """No attention (identity)."""
    return nn.Identity()


@ATTENTIONS.register("cbam")
def cbam(channels: int) -> nn.Module:
    """CBAM (Woo et al. 2018): channel gate (reduction 16) then 7x7 spatial gate."""
    return CBAM(channels)


@ATTENTIONS.register("se")
def se(channels: int) -> nn.Module:
    """Squeeze-and-Excitation (Hu et al. 2018), reduction 16."""
    return SqueezeExcitation(channels)


@ATTENTIONS.register("scse")
def scse(channels: int) -> nn.Module:
    """Concurrent spatial and channel SE (Roy et al. 2018)."""
    return SCSE(channels)
