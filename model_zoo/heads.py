"""Heads of the joint network: full-resolution lesion logits and image-class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

POOLINGS = ("avg", "max", "avgmax")


class SegmentationHead(nn.Module):
    """Conv to ``out_channels`` logits, then bilinear resize to the input size (decoders end at 1/1..1/32)."""

    def __init__(self, in_channels: int, out_channels: int = 1, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.conv(x)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


class GlobalPool(nn.Module):
    """``[B, C, h, w] -> [B, C]`` (avg, max) or ``[B, 2C]`` (avgmax: both, concatenated)."""

    def __init__(self, mode: str = "avg") -> None:
        super().__init__()
        if mode not in POOLINGS:
            raise ValueError(f"model.cls_head.pooling: unknown {mode!r}; valid: {', '.join(POOLINGS)}")
        self.mode = mode

    def out_features(self, channels: int) -> int:
        return 2 * channels if self.mode == "avgmax" else channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "avg":
            return x.mean(dim=(2, 3))
        if self.mode == "max":
            return x.amax(dim=(2, 3))
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


class LesionPool(nn.Module):
    """``[B, C, h, w]`` features + ``[B, 1, H, W]`` lesion logits -> ``[B, C + 1]``: the features averaged
    with the lesion probability as weights, and the mean lesion probability (the lesion's share of the image).

    The probabilities are area-averaged to the feature map's size and detached, so the classification loss
    never moves the segmentation through this path; the classifier sees the lesion the segmentation found
    (benign vs malignant is a property of the lesion, not of the surrounding tissue) and how much lesion
    there is (normal vs lesion). ``eps`` keeps the average defined on an image with no lesion drawn.
    """

    def __init__(self, eps: float = 1e-4) -> None:
        super().__init__()
        self.eps = eps

    @staticmethod
    def out_features(channels: int) -> int:
        return channels + 1

    def forward(self, x: torch.Tensor, seg_logits: torch.Tensor) -> torch.Tensor:
        weight = F.adaptive_avg_pool2d(torch.sigmoid(seg_logits.detach().float()), x.shape[-2:]).to(x.dtype)
        mass = weight.sum(dim=(2, 3))
        pooled = (x * weight).sum(dim=(2, 3)) / (mass + self.eps)
        return torch.cat([pooled, weight.mean(dim=(2, 3))], dim=1)


class ClassificationHead(nn.Sequential):
    """Dropout + linear, or dropout + linear(hidden) + ReLU + dropout + linear when ``hidden > 0``."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.2, hidden: int = 0) -> None:
        if hidden > 0:
            layers: list[nn.Module] = [
                nn.Dropout(dropout),
                nn.Linear(in_features, hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            ]
        else:
            layers = [nn.Dropout(dropout), nn.Linear(in_features, num_classes)]
        super().__init__(*layers)
