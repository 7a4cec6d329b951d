"""Attention blocks: shapes, gate semantics, registry errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_zoo.attention import ATTENTIONS, CBAM, ChannelGate, SpatialGate
from model_zoo.registry import UnknownComponentError


@pytest.mark.parametrize("name", ATTENTIONS.names())
@pytest.mark.parametrize("shape", [(2, 4, 1, 1), (2, 32, 5, 7), (1, 64, 8, 8)])
def test_shape_and_backward(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    block = ATTENTIONS.get(name)(shape[1])
    x = torch.randn(*shape, requires_grad=True)
    block.train(shape[0] > 1)  # BN of the spatial gate needs >1 value per channel in training
    y = block(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_registered_names() -> None:
    assert set(ATTENTIONS.names()) == {"none", "cbam", "se", "scse"}
    assert isinstance(ATTENTIONS.get("none")(8), nn.Identity)


def test_unknown_name_lists_valid() -> None:
    with pytest.raises(UnknownComponentError, match=r"cbam.*scse"):
        ATTENTIONS.get("cbma")


def test_cbam_structure_follows_woo_et_al() -> None:
    block = CBAM(256)
    assert isinstance(block.channel, ChannelGate) and isinstance(block.spatial, SpatialGate)
    assert block.channel.mlp[0].out_channels == 256 // 16
    assert CBAM(32).channel.mlp[0].out_channels == 8  # floor for narrow maps
    conv = block.spatial.conv
    assert conv.in_channels == 2 and conv.out_channels == 1 and conv.kernel_size == (7, 7)
    assert isinstance(block.spatial.bn, nn.BatchNorm2d)


def test_channel_gate_matches_formula() -> None:
    torch.manual_seed(0)
    gate = ChannelGate(16)
    x = torch.randn(2, 16, 5, 5)
    mlp = gate.mlp
    expected = x * torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))
    torch.testing.assert_close(gate(x), expected)


def test_spatial_gate_uses_channel_max_then_mean() -> None:
    torch.manual_seed(0)
    gate = SpatialGate().eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        gate.conv.weight.zero_()
        gate.conv.weight[0, 0, 3, 3] = 1.0  # the centre tap of the max channel only
    expected = x * torch.sigmoid(gate.bn(x.amax(1, keepdim=True)))
    torch.testing.assert_close(gate(x), expected)
