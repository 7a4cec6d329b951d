"""Every name looked up from a spec fails with an error that lists the valid names."""

from __future__ import annotations

import pytest

import model_zoo
from model_zoo.build import build_model, model_config_from_dict
from model_zoo.encoders import check_encoder_name
from model_zoo.registry import UnknownComponentError

TINY = {"encoder": "tu-test_resnet"}


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ("DECODERS", {"unet", "unetplusplus", "deeplabv3plus", "fpn", "manet", "linknet", "pan", "upernet"}),
        ("BOTTLENECKS", {"identity", "dual_domain"}),
        ("ATTENTIONS", {"none", "cbam", "se", "scse"}),
        ("SEG_LOSSES", {"dice_bce", "dice_focal", "tversky", "focal"}),
        ("CLS_LOSSES", {"ce", "weighted_ce", "focal"}),
    ],
)
def test_registry_unknown_name_lists_valid(registry: str, expected: set[str]) -> None:
    reg = getattr(model_zoo, registry)
    assert expected <= set(reg.names())
    with pytest.raises(UnknownComponentError) as info:
        reg.get("no-such-thing")
    assert isinstance(info.value, ValueError)
    for name in reg.names():
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "listed"),
    [
        ("decoder", "unett", ["Did you mean 'unet'", "unetplusplus", "deeplabv3plus"]),
        ("bottleneck", "dual", ["dual_domain", "identity"]),
        ("attention", "cbma", ["cbam", "scse", "se", "none"]),
        ("encoder", "resnet19", ["resnet18", "tu-<timm model>", "tv-googlenet"]),
    ],
)
def test_build_model_unknown_component(field: str, value: str, listed: list[str]) -> None:
    with pytest.raises(UnknownComponentError) as info:
        build_model({**TINY, field: value})
    for text in listed:
        assert text in str(info.value)


def test_encoder_names_all_families() -> None:
    for name in (
        "resnet18",
        "efficientnet-b6",
        "tu-test_efficientnet",
        "tu-resnet18.a1_in1k",
        "tv-googlenet",
    ):
        check_encoder_name(name)
    with pytest.raises(UnknownComponentError, match="Did you mean tu-resnet18"):
        check_encoder_name("tu-resnet18x")
    with pytest.raises(UnknownComponentError, match="strides"):
        check_encoder_name("tu-test_vit")  # a ViT has no stride-2..32 pyramid
    with pytest.raises(UnknownComponentError, match="tv-shufflenet_v2_x0_5"):
        check_encoder_name("tv-shufflenet")


def test_latent_aug_and_pooling_choices() -> None:
    with pytest.raises(ValueError, match="noise\\+mixup"):
        model_config_from_dict({"latent_aug": {"mode": "cutmix"}})
    with pytest.raises(ValueError, match="avgmax"):
        model_config_from_dict({"cls_head": {"pooling": "gem"}})


def test_config_unknown_key_and_types() -> None:
    with pytest.raises(ValueError, match=r"model\.decodr: unknown key, did you mean model\.decoder\?"):
        model_config_from_dict({"decodr": "unet"})
    with pytest.raises(ValueError, match=r"model\.latent_aug\.sigmaa: unknown key.*sigma"):
        model_config_from_dict({"latent_aug": {"sigmaa": 0.1}})
    with pytest.raises(ValueError, match=r"model\.num_classes: expected an integer"):
        model_config_from_dict({"num_classes": "3"})
    cfg = model_config_from_dict({"encoder": "tu-test_resnet", "latent_aug": {"mode": "noise", "sigma": 1}})
    assert cfg.latent_aug.sigma == 1.0 and isinstance(cfg.latent_aug.sigma, float)
    assert model_config_from_dict(cfg) is cfg
