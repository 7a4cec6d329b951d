"""Bottleneck blocks on the deepest encoder feature, ``[B, C, h, w] -> [B, C, h, w]``.

``dual_domain`` pairs a local spatial branch with a global frequency branch that learns in the
Fourier domain, then fuses both and adds the input back (residual):

- spatial: conv3x3 - BN - ReLU;
- frequency: ``rfft2`` (ortho) -> GFNet-style learnable complex filter, stored at a fixed size and
  bilinearly resized to the spectrum (Rao et al., NeurIPS 2021, arXiv:2107.00645) -> FFC's Fourier
  unit, a 1x1 conv + BN + ReLU over the stacked real/imaginary parts (Chi et al., NeurIPS 2020; LaMa,
  arXiv:2109.07161) -> ``irfft2`` back to ``(h, w)``;
- fusion: concat -> 1x1 conv -> BN, then ``x + fused``.

Both spectral transforms are size-agnostic, so any ``h, w`` works (odd, non-square, 1x1). The FFT
runs in float32 with autocast off (half-precision cuFFT only takes powers of two) and the result is
cast back to the input dtype. The thesis code instead multiplied the magnitude by a constant 1.1,
which learns nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_zoo.registry import Registry

BOTTLENECKS: Registry = Registry("bottleneck")


class SpectralFilter(nn.Module):
    """GFNet global filter: elementwise complex product with a learnable ``[C, fh, fw]`` filter.

    The filter is stored at ``size`` (the rfft2 of an 8x8 map by default) and resized to the actual
    spectrum; it starts at 1 + 0j so the block initially passes the spectrum through unchanged.
    """

    def __init__(self, channels: int, size: tuple[int, int] = (8, 5)) -> None:
        super().__init__()
        weight = torch.zeros(channels, 2, *size)
        weight[:, 0] = 1.0
        self.weight = nn.Parameter(weight)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        h, w = spec.shape[-2:]
        weight = self.weight
        if weight.shape[-2:] != (h, w):
            weight = F.interpolate(weight, size=(h, w), mode="bilinear", align_corners=True)
        return spec * torch.complex(weight[:, 0], weight[:, 1])


class FourierUnit(nn.Module):
    """FFC Fourier unit: 1x1 conv + BN + ReLU on ``[real, imag]`` of the spectrum, ``[B, 2C, h, w//2+1]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        c = spec.shape[1]
        z = self.act(self.bn(self.conv(torch.cat([spec.real, spec.imag], dim=1))))
        return torch.complex(z[:, :c], z[:, c:])


class FrequencyBranch(nn.Module):
    """``irfft2(FourierUnit(filter * rfft2(x)))``, computed in float32 (or float64 for float64 input)."""

    def __init__(self, channels: int, filter_size: tuple[int, int] = (8, 5)) -> None:
        super().__init__()
        self.filter = SpectralFilter(channels, filter_size)
        self.unit = FourierUnit(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.fft.rfft2(x.to(torch.promote_types(x.dtype, torch.float32)), norm="ortho")
            spec = self.unit(self.filter(spec))
            out = torch.fft.irfft2(spec, s=(h, w), norm="ortho")
        return out.to(x.dtype)


class DualDomainBottleneck(nn.Module):
    """Spatial (conv3x3-BN-ReLU) + frequency branch, fused by concat + 1x1 conv + BN, plus the input."""

    def __init__(self, channels: int, filter_size: tuple[int, int] = (8, 5)) -> None:
        super().__init__()
        self.spatial = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.frequency = FrequencyBranch(channels, filter_size)
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = self.spatial(x)
        freq = self.frequency(x).to(spatial.dtype)
        return x + self.fuse(torch.cat([spatial, freq], dim=1))


@BOTTLENECKS.register("identity")
def identity(channels: int) -> nn.Module:
    """No bottleneck block (the deepest feature goes straight on)."""
    return nn.Identity()


@BOTTLENECKS.register("dual_domain")
def dual_domain(channels: int) -> nn.Module:
    """Spatial conv + learnable Fourier-domain branch, fused with a residual."""
    return DualDomainBottleneck(channels)
