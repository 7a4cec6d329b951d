"""The thesis' encoder benchmark: every entry builds with random weights and runs a forward pass."""

from __future__ import annotations

import pytest
import torch

from model_zoo.build import build_model
from model_zoo.encoders import BENCHMARK, BENCHMARK_LABELS, min_input_size

# over ~30 M parameters: built in CI (`make test`), skipped by `make test-fast`
LARGE = {"resnet50", "resnet101", "efficientnet-b5", "efficientnet-b6"}


def test_benchmark_list() -> None:
    labels = [BENCHMARK_LABELS[name] for name in BENCHMARK]
    assert len(BENCHMARK) == len(set(BENCHMARK)) == 19
    assert labels[:3] == ["ResNet-18", "ResNet-50", "ResNet-101"]
    assert labels[3:10] == [f"EfficientNet-B{i}" for i in range(7)]
    assert "mobilenet_v2" in BENCHMARK and "efficientnet-b6" in BENCHMARK  # the lost-comma bug, not here
    assert {"MobileNet-V3 small", "MobileNet-V3 large", "GoogLeNet", "Inception-V3"} <= set(labels)
    assert [label for label in labels if label.startswith("ShuffleNet")] == [
        f"ShuffleNet V2 x{s}" for s in ("0.5", "1.0", "1.5", "2.0")
    ]


@pytest.mark.parametrize(
    "encoder", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in BENCHMARK]
)
def test_benchmark_encoder_builds_and_runs(encoder: str) -> None:
    model = build_model({"encoder": encoder, "encoder_weights": None}).eval()
    side = max(64, min_input_size(encoder))  # 64, except Inception-V3 (valid padding) at 96
    with torch.no_grad():
        seg, cls = model(torch.rand(1, 1, side, side))
    assert seg.shape == (1, 1, side, side) and cls.shape == (1, 3)
    assert torch.isfinite(seg).all() and torch.isfinite(cls).all()
    assert model.encoder_channels[0] == 3 and len(model.encoder_channels) == 6
