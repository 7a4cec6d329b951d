"""Bottleneck blocks: shapes at any size, the frequency branch really learns, autocast, gradcheck."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_zoo.bottleneck import BOTTLENECKS, DualDomainBottleneck, FrequencyBranch
from model_zoo.registry import UnknownComponentError

SIZES = [(1, 1), (2, 2), (3, 5), (7, 7), (8, 8), (9, 6), (16, 11)]


@pytest.mark.parametrize("name", BOTTLENECKS.names())
@pytest.mark.parametrize("hw", SIZES)
def test_shape_train_and_eval(name: str, hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    block = BOTTLENECKS.get(name)(6)
    x = torch.randn(2, 6, *hw, requires_grad=True)
    for training in (True, False):
        block.train(training)
        y = block(x)
        assert y.shape == x.shape and torch.isfinite(y).all()
    block.train()
    block(x).square().mean().backward()
    assert torch.isfinite(x.grad).all()


def test_registered_names() -> None:
    assert set(BOTTLENECKS.names()) == {"identity", "dual_domain"}
    assert isinstance(BOTTLENECKS.get("identity")(4), nn.Identity)
    with pytest.raises(UnknownComponentError, match="dual_domain"):
        BOTTLENECKS.get("fourier")


def _spectral_params(block: DualDomainBottleneck) -> dict[str, nn.Parameter]:
    return {n: p for n, p in block.named_parameters() if n.startswith("frequency.")}


@pytest.mark.parametrize("hw", [(8, 8), (5, 7)])
def test_frequency_branch_receives_gradient(hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    block = DualDomainBottleneck(8)
    block(torch.randn(4, 8, *hw)).square().mean().backward()
    params = _spectral_params(block)
    assert {"frequency.filter.weight", "frequency.unit.conv.weight"} <= set(params)
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("param", ["frequency.filter.weight", "frequency.unit.conv.weight"])
def test_output_depends_on_spectral_weights(param: str) -> None:
    torch.manual_seed(0)
    block = DualDomainBottleneck(8).eval()
    x = torch.randn(2, 8, 6, 9)
    before = block(x)
    with torch.no_grad():
        weight = dict(block.named_parameters())[param]
        weight.add_(0.5 * torch.randn_like(weight))
    assert not torch.allclose(before, block(x), atol=1e-4)


def test_frequency_branch_is_not_a_spatial_op() -> None:
    # a global spectral filter mixes information across the whole map: a change at one pixel
    # reaches the far corner, which a 3x3 conv could not do
    torch.manual_seed(0)
    branch = FrequencyBranch(4).eval()
    with torch.no_grad():
        branch.filter.weight.add_(0.3 * torch.randn_like(branch.filter.weight))
    x = torch.randn(1, 4, 12, 12)
    x2 = x.clone()
    x2[..., 0, 0] += 1.0
    assert (branch(x) - branch(x2))[..., 6, 6].abs().max() > 1e-4


def test_gradcheck_eval_double() -> None:
    torch.manual_seed(0)
    block = DualDomainBottleneck(2).double().eval()
    x = torch.randn(1, 2, 3, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-4)


def test_autocast_bfloat16() -> None:
    torch.manual_seed(0)
    block = DualDomainBottleneck(8)
    x = torch.randn(2, 8, 7, 5)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        y = block(x)
    assert y.shape == x.shape and torch.isfinite(y.float()).all()
    y.float().sum().backward()
    assert block.frequency.filter.weight.grad.dtype == torch.float32
