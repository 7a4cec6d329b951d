"""Attention blocks: shapes, gate semantics, registry errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_zoo.attention import ATTENTIONS, cbam, se
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
    block = cbam(256)
    fc1, fc2 = block.channel.fc1, block.channel.fc2
    assert (fc1.in_channels, fc1.out_channels, fc2.out_channels) == (256, 256 // 16, 256)
    assert fc1.bias is not None and fc2.bias is not None  # the MLP has biases (Woo et al.'s code)
    assert cbam(32).channel.fc1.out_channels == 8  # floor for narrow maps
    conv = block.spatial.conv.conv
    assert conv.in_channels == 2 and conv.out_channels == 1 and conv.kernel_size == (7, 7)
    assert isinstance(block.spatial.conv.bn, nn.BatchNorm2d) and conv.bias is None
    assert list(block.children())[:2] == [block.channel, block.spatial]  # channel gate first


def test_cbam_matches_the_formula() -> None:
    """``y = x' * sigmoid(BN(conv7x7([mean_c(x'), max_c(x')])))`` with
    ``x' = x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` (one shared MLP)."""
    torch.manual_seed(0)
    block = cbam(16).eval()
    x = torch.randn(2, 16, 6, 6)
    ch = block.channel

    def mlp(v: torch.Tensor) -> torch.Tensor:
        return ch.fc2(torch.relu(ch.fc1(v)))

    x1 = x * torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))
    conv = block.spatial.conv
    pooled = torch.cat([x1.mean(1, keepdim=True), x1.amax(1, keepdim=True)], dim=1)
    expected = x1 * torch.sigmoid(conv.bn(conv.conv(pooled)))
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)


def test_se_matches_the_formula() -> None:
    torch.manual_seed(0)
    block = se(256).eval()
    assert (block.fc1.out_channels, block.fc2.out_channels) == (256 // 16, 256)
    assert se(64).fc1.out_channels == 8  # floor for narrow maps
    x = torch.randn(2, 256, 5, 5)
    squeeze = x.mean((2, 3), keepdim=True)
    expected = x * torch.sigmoid(block.fc2(torch.relu(block.fc1(squeeze))))
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)
