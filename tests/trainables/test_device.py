"""Device resolution never falls back silently; AMP choices per device (bf16 on CPUs with bf16 hardware)."""

from __future__ import annotations

import pytest
import torch

from trainables import device as device_module
from trainables.device import (
    AmpSettings,
    DeviceError,
    amp_settings,
    autocast,
    cpu_bf16_native,
    make_scaler,
    resolve_device,
    to_channels_last,
)

CPU = torch.device("cpu")


def test_auto_and_cpu_resolve() -> None:
    assert resolve_device("cpu") == CPU
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(" CPU ") == CPU


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_an_error(name: str) -> None:
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", ""])
def test_unknown_device_lists_choices(name: str) -> None:
    with pytest.raises(DeviceError, match=r"auto \| cpu \| cuda \| cuda:N"):
        resolve_device(name)


def test_amp_on_cpu() -> None:
    expected = AmpSettings(torch.bfloat16, False) if cpu_bf16_native() else AmpSettings(None, False)
    assert amp_settings(CPU, "auto") == expected
    assert amp_settings(CPU, "off").name == "off"
    assert amp_settings(CPU, "bf16") == AmpSettings(torch.bfloat16, False)
    with pytest.raises(DeviceError, match="fp16 needs a CUDA device"):
        amp_settings(CPU, "fp16")
    with pytest.raises(DeviceError, match="unknown value"):
        amp_settings(CPU, "half")


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_on_cpu_follows_the_bf16_hardware_and_overrides_win(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(device_module, "cpu_bf16_native", lambda: native)
    auto = amp_settings(CPU, "auto")
    assert auto == (AmpSettings(torch.bfloat16, False) if native else AmpSettings(None, False))
    assert auto.name == ("bf16" if native else "off") and not auto.use_scaler
    assert amp_settings(CPU, "off") == AmpSettings(None, False)  # fp32 even with bf16 hardware
    assert amp_settings(CPU, "bf16") == AmpSettings(torch.bfloat16, False)  # bf16 even without it
    with pytest.raises(DeviceError, match="fp16 needs a CUDA device"):
        amp_settings(CPU, "fp16")


@pytest.mark.parametrize(
    ("mkldnn", "checks", "expected"),
    [
        (True, {"_is_avx512_bf16_supported": True, "_is_amx_tile_supported": False}, True),
        (True, {"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": True}, True),
        (True, {"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}, False),
        (False, {"_is_avx512_bf16_supported": True, "_is_amx_tile_supported": True}, False),
    ],
)
def test_cpu_bf16_detection_reads_torchs_cpu_checks(
    monkeypatch: pytest.MonkeyPatch, mkldnn: bool, checks: dict[str, bool], expected: bool
) -> None:
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: mkldnn)
    for name, value in checks.items():
        monkeypatch.setattr(torch.cpu, name, lambda value=value: value, raising=False)
    assert cpu_bf16_native() is expected


def test_cpu_bf16_detection_without_torchs_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torch build without the x86 checks (e.g. ARM) means no detected bf16: fp32."""
    for name in device_module.CPU_BF16_CHECKS:
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert cpu_bf16_native() is False
    assert amp_settings(CPU, "auto") == AmpSettings(None, False)


def test_to_channels_last_converts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 4, 3), torch.nn.Conv2d(4, 2, 1))
    assert not net[1].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 1, 9, 9)
    before = net(x)
    assert to_channels_last(net) is net
    assert net[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert not net[1].weight.is_contiguous()  # really NHWC now, not a layout both names fit
    assert torch.allclose(net(x), before, atol=1e-6)
    calls: list[tuple] = []
    monkeypatch.setattr(net, "to", lambda *a, **k: calls.append((a, k)) or net)
    assert to_channels_last(net) is net and calls == []  # already converted: not converted again
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    monkeypatch.setattr(fresh, "to", lambda *a, **k: calls.append((a, k)) or fresh)
    to_channels_last(fresh)
    assert calls == [((), {"memory_format": torch.channels_last})]


def test_to_channels_last_in_inference_mode_keeps_the_weights_trainable() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Conv2d(4, 1, 3))
    with torch.inference_mode():
        to_channels_last(net)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.is_inference() for p in net.parameters())
    net(torch.rand(1, 2, 7, 7)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_amp_auto_on_cuda() -> None:
    dev = torch.device("cuda")
    amp = amp_settings(dev, "auto")
    if torch.cuda.is_bf16_supported():
        assert amp == AmpSettings(torch.bfloat16, False)
    else:
        assert amp == AmpSettings(torch.float16, True)
    assert amp_settings(dev, "fp16").use_scaler


def test_autocast_and_scaler_on_cpu() -> None:
    lin = torch.nn.Linear(4, 4)
    with autocast(CPU, amp_settings(CPU, "bf16")):
        assert lin(torch.ones(2, 4)).dtype == torch.bfloat16
    with autocast(CPU, amp_settings(CPU, "off")):
        assert lin(torch.ones(2, 4)).dtype == torch.float32
    scaler = make_scaler(CPU, amp_settings(CPU, "auto"))
    assert not scaler.is_enabled()


@pytest.mark.parametrize("benchmark", [True, False])
def test_cudnn_benchmark_follows_the_setting(monkeypatch: pytest.MonkeyPatch, benchmark: bool) -> None:
    from trainables.device import seed_everything

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", not benchmark)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # restored afterwards
    seed_everything(0, deterministic=False, cudnn_benchmark=benchmark)
    assert torch.backends.cudnn.benchmark is benchmark
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        seed_everything(0, deterministic=True, cudnn_benchmark=True)
        assert torch.backends.cudnn.benchmark is False  # deterministic wins
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])


@pytest.mark.parametrize("text", ["train: {amp: off}", "train: {amp: 'off'}"])
def test_amp_off_written_unquoted_is_the_override(text: str) -> None:
    """YAML 1.1 reads an unquoted ``off`` as false; ``amp: off`` and ``--set train.amp=off`` still mean
    fp32, the way to opt out of bf16 on a CPU with bf16 hardware."""
    import yaml

    from trainables.spec import apply_overrides, spec_from_dict

    assert spec_from_dict(yaml.safe_load(text)).train.amp == "off"
    assert spec_from_dict(apply_overrides({}, ["train.amp=off"])).train.amp == "off"
    with pytest.raises(ValueError, match=r"train\.amp: expected one of auto, bf16, fp16, off, got true"):
        spec_from_dict({"train": {"amp": True}})
