"""Device resolution never falls back silently; AMP choices per device."""

from __future__ import annotations

import pytest
import torch

from trainables.device import AmpSettings, DeviceError, amp_settings, autocast, make_scaler, resolve_device

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
    assert amp_settings(CPU, "auto") == AmpSettings(None, False)
    assert amp_settings(CPU, "off").name == "off"
    assert amp_settings(CPU, "bf16") == AmpSettings(torch.bfloat16, False)
    with pytest.raises(DeviceError, match="fp16 needs a CUDA device"):
        amp_settings(CPU, "fp16")
    with pytest.raises(DeviceError, match="unknown value"):
        amp_settings(CPU, "half")


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
