"""describe(), `launch.py models` and the error path of `launch.py fetch-weights`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import launch
import model_zoo
from model_zoo.describe import describe

TINY = {
    "encoder": "tu-test_resnet",
    "decoder": "unet",
    "bottleneck": "dual_domain",
    "attention": "cbam",
    "latent_aug": {"mode": "noise"},
}


def test_describe_counts_and_flops() -> None:
    small, large = describe(TINY, image_size=64), describe(TINY, image_size=128)
    params = small["params"]
    assert params["total"] == sum(part["total"] for part in params["by_part"].values()) > 0
    assert params["by_part"]["bottleneck"]["total"] > 0 and params["by_part"]["latent_aug"]["total"] == 0
    assert small["encoder_channels"][0] == 3 and small["output_stride"] == 32
    assert 3.5 < large["flops"] / small["flops"] < 4.5  # convolutions scale with the pixel count
    json.dumps(small)  # plain JSON types only


def test_describe_ignores_weight_cache_and_checks_size() -> None:
    info = describe({**TINY, "encoder_weights": "imagenet"}, image_size=64)  # nothing cached, still describes
    assert info["params"]["total"] > 0
    with pytest.raises(ValueError, match="pad"):
        describe(TINY, image_size=100)
    assert model_zoo.describe is describe


def _models(*argv: str) -> int:
    return launch.main(["models", *argv])


def test_models_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert _models("--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["encoders"]["benchmark"]) == len(model_zoo.BENCHMARK)
    assert {"unet", "unetplusplus", "deeplabv3plus"} <= set(info["decoders"])
    assert info["decoders"]["unet"]["options"]["decoder_channels"] == [256, 128, 64, 32, 16]
    assert set(info["bottlenecks"]) == {"identity", "dual_domain"}
    assert info["latent_aug_modes"] == ["none", "noise", "mixup", "noise+mixup"]
    assert "dice_bce" in info["seg_losses"] and "weighted_ce" in info["cls_losses"]
    assert _models() == 0
    text = capsys.readouterr().out
    assert "tv-googlenet (GoogLeNet)" in text and "dual_domain" in text and "decoder_channels=" in text


def test_models_describe_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\nmodel:\n  encoder: tu-test_resnet\n  decoder: fpn\n")
    assert _models("--describe", str(spec), "--size", "64", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["decoder"] == "fpn" and info["image_size"] == 64
    assert _models("--describe", str(spec), "--size", "64") == 0
    assert "GFLOPs" in capsys.readouterr().out
    spec.write_text("model:\n  encoder: tu-test_resnet\n  decoder: unett\n")
    assert _models("--describe", str(spec), "--size", "64") == 2
    assert "Did you mean 'unet'" in capsys.readouterr().err
    spec.write_text("train: {}\n")
    assert _models("--describe", str(spec)) == 2
    assert "no 'model:'" in capsys.readouterr().err


def test_fetch_weights_reports_bad_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert launch.main(["fetch-weights", "resnet19", "tu-test_vit", "--weights", "imagenet"]) == 1
    err = capsys.readouterr().err
    assert "resnet19: FAILED" in err and "tu-test_vit: FAILED" in err
