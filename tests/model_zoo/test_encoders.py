"""Encoders: smp conventions for the tu-/tv-/plain families, dilation, normalisation, feature alignment."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_zoo.encoders import (
    IMAGENET_MEAN,
    TV_ENCODERS,
    build_encoder,
    check_encoder_name,
    encoder_normalisation,
)
from model_zoo.network import align_features
from model_zoo.plain_encoder import PLAIN_ENCODERS
from model_zoo.registry import UnknownComponentError


def _strides(features: list[torch.Tensor], h: int) -> list[int]:
    return [h // f.shape[-2] for f in features]


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "googlenet"])
def test_torchvision_adapter_strides_and_channels(name: str) -> None:
    enc = build_encoder(f"tv-{name}").eval()
    with torch.no_grad():
        feats = enc(torch.rand(1, 3, 64, 96))
    assert _strides(feats, 64) == [1, 2, 4, 8, 16, 32]
    assert [f.shape[-1] for f in feats] == [96 // s for s in (1, 2, 4, 8, 16, 32)]
    assert tuple(f.shape[1] for f in feats) == tuple(enc.out_channels) == (3, *TV_ENCODERS[name].channels)
    assert enc.output_stride == 32


def test_torchvision_adapter_depth_and_no_dilation() -> None:
    enc = build_encoder("tv-shufflenet_v2_x0_5", depth=3)
    assert enc.out_channels == (3, 24, 24, 48) and enc.output_stride == 8
    assert len(enc(torch.rand(1, 3, 32, 32))) == 4
    with pytest.raises(ValueError, match=r"cannot be dilated.*encoder_output_stride: 32"):
        build_encoder("tv-googlenet", output_stride=16)


@pytest.mark.parametrize("name", ["tu-test_efficientnet", "tu-test_resnet", "tu-test_convnext"])
def test_timm_encoders_follow_smp_convention(name: str) -> None:
    enc = build_encoder(name).eval()
    feats = enc(torch.rand(1, 3, 64, 64))
    assert len(feats) == len(enc.out_channels) == 6
    assert [f.shape[1] for f in feats] == list(enc.out_channels)
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8, 4, 2]


def test_dilated_timm_encoder() -> None:
    enc = build_encoder("tu-test_efficientnet", output_stride=16).eval()
    feats = enc(torch.rand(1, 3, 64, 64))
    assert enc.output_stride == 16
    assert [f.shape[-1] for f in feats] == [64, 32, 16, 8, 4, 4]


def test_normalisation_per_family() -> None:
    assert encoder_normalisation("tu-test_resnet") == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert encoder_normalisation("tv-googlenet")[0] == (0.5, 0.5, 0.5)  # Google's weights expect (x-0.5)/0.5
    assert encoder_normalisation("tv-shufflenet_v2_x0_5")[0] == IMAGENET_MEAN
    assert encoder_normalisation("resnet18", None)[0] == IMAGENET_MEAN


def test_align_features_resizes_only_off_grid_maps() -> None:
    on_grid = torch.rand(1, 8, 16, 24)
    feats = [torch.rand(1, 3, 64, 96), torch.empty(1, 0, 31, 47), on_grid, torch.rand(1, 4, 6, 11)]
    out = align_features(feats, 64, 96, output_stride=32)
    assert [tuple(f.shape) for f in out] == [(1, 3, 64, 96), (1, 0, 32, 48), (1, 8, 16, 24), (1, 4, 8, 12)]
    assert out[0] is feats[0] and out[2] is on_grid


def test_dilated_features_alignment_caps_stride() -> None:
    feats = [
        torch.rand(1, 1, 64, 64),
        torch.rand(1, 1, 32, 32),
        torch.rand(1, 1, 16, 16),
        torch.rand(1, 1, 16, 16),
    ]
    assert [f.shape[-1] for f in align_features(feats, 64, 64, output_stride=4)] == [64, 32, 16, 16]


@pytest.mark.parametrize("name", sorted(PLAIN_ENCODERS))
def test_plain_encoder_strides_channels_and_depth(name: str) -> None:
    enc = build_encoder(name).eval()
    with torch.no_grad():
        feats = enc(torch.rand(2, 3, 64, 96))
    assert _strides(feats, 64) == [1, 2, 4, 8, 16, 32]
    assert tuple(f.shape[1] for f in feats) == enc.out_channels == (3, 32, 64, 128, 256, 320)
    assert enc.output_stride == 32
    shallow = build_encoder(name, depth=3)
    assert shallow.out_channels == (3, 32, 64, 128) and shallow.output_stride == 8
    assert len(shallow(torch.rand(1, 3, 32, 32))) == 4


def test_plain_encoder_norms() -> None:
    """Instance norm makes each image's features independent of the batch; batch norm does not."""
    x = torch.rand(4, 3, 64, 64)
    for name, independent in (("plain_in", True), ("plain_bn", False)):
        torch.manual_seed(0)
        enc = build_encoder(name).train()
        alone, batched = enc(x[:1])[-1], enc(x)[-1][:1]
        assert torch.allclose(alone, batched, atol=1e-3) == independent, name


def test_plain_encoder_weights_from_file_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = build_encoder("plain_bn")
    path = tmp_path / "plain.pth"
    torch.save(trained.state_dict(), path)
    loaded = build_encoder("plain_bn", weights=str(path))
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(ValueError, match=r"has no pretrained weights.*null"):
        build_encoder("plain_bn", weights="imagenet")
    with pytest.raises(ValueError, match="cannot be dilated"):
        build_encoder("plain_in", output_stride=16)


def test_plain_encoder_names_and_typos() -> None:
    for name in PLAIN_ENCODERS:
        check_encoder_name(name)
    with pytest.raises(UnknownComponentError, match="Did you mean 'plain_bn'"):
        check_encoder_name("plain_bm")
    assert encoder_normalisation("plain_bn", "imagenet")[0] == IMAGENET_MEAN  # no weights' config to read
