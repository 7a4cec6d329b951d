"""Attention blocks applied to the bottleneck feature map, ``[B, C, h, w] -> [B, C, h, w]``.

- ``cbam``: Convolutional Block Attention Module (Woo et al., ECCV 2018, arXiv:1807.06521): a channel
  gate (shared MLP on the average- and max-pooled descriptors, summed, sigmoid) followed by a spatial gate
  (7x7 conv + BN over the channel-wise [mean, max] maps, sigmoid).
- ``se``: Squeeze-and-Excitation (Hu et al., CVPR 2018, arXiv:1709.01507).
- ``scse``: concurrent spatial and channel SE (Roy et al., MICCAI 2018, arXiv:1803.02579), the
  additive variant that smp's ``decoder_attention_type="scse"`` also uses.

CBAM and SE are timm's modules (``timm.layers.CbamModule``, ``SEModule``), which compute exactly these
definitions; two settings make them the thesis's: the MLP of CBAM's channel gate has biases (as in Woo et
al.'s reference code; timm defaults to none), and hidden widths are ``max(channels // reduction,
min_hidden)`` so that narrow maps of tiny test encoders do not collapse to zero units. scSE's spatial half
is one 1x1 conv and a sigmoid, written here (timm has no scSE).
"""

from __future__ import annotations

import torch
from timm.layers.cbam import CbamModule
from timm.layers.squeeze_excite import SEModule
from torch import nn

from model_zoo.registry import Registry

ATTENTIONS: Registry = Registry("attention")
REDUCTION, MIN_HIDDEN, SPATIAL_KERNEL = 16, 8, 7


def _hidden(channels: int, reduction: int = REDUCTION, min_hidden: int = MIN_HIDDEN) -> int:
    return max(channels // reduction, min_hidden)


class SCSE(nn.Module):
    """scSE: channel SE plus spatial SE (``sigmoid(conv1x1(x))`` per pixel), outputs added."""

    def __init__(self, channels: int, reduction: int = REDUCTION, min_hidden: int = MIN_HIDDEN) -> None:
        super().__init__()
        self.cse = se(channels, reduction, min_hidden)
        self.sse = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cse(x) + x * self.sse(x)


@ATTENTIONS.register("none")
def none(channels: int) -> nn.Module:
    """No attention (identity)."""
    return nn.Identity()


@ATTENTIONS.register("cbam")
def cbam(channels: int, reduction: int = REDUCTION, min_hidden: int = MIN_HIDDEN) -> CbamModule:
    """CBAM (Woo et al. 2018): channel gate (MLP with biases, hidden ``max(C // reduction, min_hidden)``)
    then the 7x7 spatial gate, in that order."""
    hidden = _hidden(channels, reduction, min_hidden)
    return CbamModule(channels, rd_channels=hidden, spatial_kernel_size=SPATIAL_KERNEL, mlp_bias=True)


@ATTENTIONS.register("se")
def se(channels: int, reduction: int = REDUCTION, min_hidden: int = MIN_HIDDEN) -> SEModule:
    """Squeeze-and-Excitation (Hu et al. 2018): ``x * sigmoid(FC(ReLU(FC(avgpool(x)))))``, reduction 16."""
    return SEModule(channels, rd_channels=_hidden(channels, reduction, min_hidden))


@ATTENTIONS.register("scse")
def scse(channels: int) -> nn.Module:
    """Concurrent spatial and channel SE (Roy et al. 2018)."""
    return SCSE(channels)
