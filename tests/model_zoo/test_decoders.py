"""Decoders: every registered one with every encoder family, option pass-through and option errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from model_zoo.build import build_model
from model_zoo.decoders import DECODERS, decoder_spec
from model_zoo.network import check_input_shape, input_requirements

# small widths so that the whole matrix stays fast; every registered decoder must appear here
TINY: dict[str, dict[str, Any]] = {
    "unet": {"decoder_channels": [8] * 5},
    "unetplusplus": {"decoder_channels": [8] * 5},
    "manet": {"decoder_channels": [8] * 5, "decoder_pab_channels": 8},
    "linknet": {},
    "fpn": {"decoder_pyramid_channels": 16, "decoder_segmentation_channels": 32},
    "deeplabv3plus": {"decoder_channels": 16},
    "deeplabv3": {"decoder_channels": 16},
    "pan": {"decoder_channels": 8},
    "upernet": {"decoder_channels": 16},
    "segformer": {"decoder_segmentation_channels": 16},
    "pspnet": {"psp_out_channels": 16},
}
# a classic CNN, a transformer-style pyramid (no stride-2 map), the torchvision adapter and nnU-Net's plain
# encoder; the last two cannot be dilated
ENCODERS = ["tu-test_resnet", "tu-test_convnext", "tv-shufflenet_v2_x0_5", "plain_bn"]
UNDILATED = {"tv-shufflenet_v2_x0_5", "plain_bn"}


def test_tiny_table_covers_the_registry() -> None:
    assert set(TINY) == set(DECODERS.names())


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("decoder", sorted(TINY))
def test_every_decoder_with_every_encoder_family(encoder: str, decoder: str) -> None:
    cfg = {"encoder": encoder, "decoder": decoder, "decoder_options": TINY[decoder]}
    if encoder in UNDILATED and decoder_spec(decoder, TINY[decoder]).encoder_output_stride() != 32:
        if decoder == "pan":  # PAN also runs undilated
            cfg["decoder_options"] = {**TINY[decoder], "encoder_output_stride": 32}
        else:
            with pytest.raises(ValueError, match="cannot be dilated"):
                build_model(cfg)
            return
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    divisor, _ = input_requirements(model)
    h, w = max(64, divisor), max(64, divisor) + max(32, divisor)
    with torch.no_grad():
        seg, cls = model(torch.rand(1, 1, h, w))
    assert seg.shape == (1, 1, h, w) and cls.shape == (1, 3)
    assert torch.isfinite(seg).all() and torch.isfinite(cls).all()


def test_options_pass_through() -> None:
    model = build_model(
        {
            "encoder": "tu-test_resnet",
            "decoder": "unet",
            "decoder_attention": "scse",
            "decoder_options": {
                "decoder_channels": [64, 32, 32, 16, 16],
                "decoder_interpolation": "bilinear",
            },
        }
    )
    assert model.seg_head.conv.in_channels == 16
    assert any(type(m).__name__ == "SCSEModule" for m in model.decoder.modules())
    deeplab = build_model(
        {
            "encoder": "tu-test_resnet",
            "decoder": "deeplabv3plus",
            "decoder_options": {"encoder_output_stride": 8, "decoder_channels": 24},
        }
    )
    assert deeplab.output_stride == 8 and deeplab.seg_head.conv.in_channels == 24


def test_shallow_encoder_defaults() -> None:
    model = build_model({"encoder": "tu-test_resnet", "encoder_depth": 3, "decoder": "unetplusplus"})
    assert len(model.encoder_channels) == 4 and model.output_stride == 8
    seg, _ = model.eval()(torch.rand(1, 1, 40, 56))
    assert seg.shape == (1, 1, 40, 56)


@pytest.mark.parametrize(
    ("decoder", "options", "attention", "depth", "message"),
    [
        (
            "unet",
            {"decoder_chanels": [8] * 5},
            None,
            5,
            "unknown option.*decoder_chanels.*valid: decoder_channels",
        ),
        ("unet", {"decoder_channels": [8] * 4}, None, 5, "one entry per encoder stage \\(5\\)"),
        ("unet", {"decoder_attention_type": "scse"}, None, 5, "set model.decoder_attention instead"),
        ("unet", {}, "cbam", 5, "decoder_attention: unknown 'cbam'; valid: scse"),
        ("fpn", {}, "scse", 5, "'fpn' has no attention blocks.*unet, unetplusplus"),
        ("fpn", {"decoder_segmentation_channels": 48}, None, 5, "multiple of 32"),
        ("fpn", {}, None, 2, "needs at least 3"),
        ("deeplabv3plus", {"encoder_output_stride": 32}, None, 5, "supports 8 or 16"),
        ("pan", {"encoder_output_stride": 8}, None, 5, "supports 16 or 32"),
    ],
)
def test_option_errors(decoder: str, options: dict, attention: str | None, depth: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decoder_spec(decoder, options, attention, depth)


def test_input_checks_name_the_size_to_pad_to() -> None:
    check_input_shape({"encoder": "tu-test_resnet"}, 64, 96)
    with pytest.raises(ValueError, match=r"multiples of 32.*pad \(or resize\) to \(96, 96\)"):
        check_input_shape({"encoder": "tu-test_resnet"}, 70, 90)
    with pytest.raises(ValueError, match=r"multiples of 128.*to \(128, 256\)"):
        check_input_shape({"encoder": "tu-test_resnet", "decoder": "pan"}, 64, 160)
    with pytest.raises(ValueError, match=r"at least 96.*to \(96, 96\)"):
        check_input_shape({"encoder": "tu-inception_v3"}, 64, 64)
    model = build_model({"encoder": "tu-test_resnet", "decoder": "deeplabv3plus"}).eval()
    assert input_requirements(model) == (16, 16)
    with pytest.raises(ValueError, match=r"\(48, 48\)"):
        model(torch.rand(1, 1, 40, 40))
    with pytest.raises(ValueError, match=r"gray batch \[B, 1, H, W\]"):
        model(torch.rand(1, 3, 32, 32))


def test_deep_supervision_stages_match_the_decoder_and_only_unet_offers_them() -> None:
    options = {"decoder_channels": [40, 32, 24, 16, 8]}
    spec = decoder_spec("unet", options, None, 5, 3)
    model = build_model({"encoder": "tu-test_resnet", "decoder_options": options}).eval()
    torch.manual_seed(0)
    features = model.encoder(model.preprocess(torch.rand(2, 1, 64, 96)))
    with torch.no_grad():
        stages = spec.stage_outputs(model.decoder, list(features))
        assert torch.equal(stages[-1], model.decoder(list(features)))  # smp's forward, step for step
    assert [s.shape[1] for s in stages] == list(spec.stage_channels()) == [40, 32, 24, 16, 8]
    assert [tuple(s.shape[-2:]) for s in stages] == [(4, 6), (8, 12), (16, 24), (32, 48), (64, 96)]
    with pytest.raises(ValueError, match=r"'fpn' does not expose its stages \(decoders that do: unet\)"):
        decoder_spec("fpn", {}, None, 5, 1)
    with pytest.raises(ValueError, match="at most encoder_depth - 1 = 3"):
        decoder_spec("unet", {"decoder_channels": [8] * 4}, None, 4, 4)
