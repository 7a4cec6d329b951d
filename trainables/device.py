"""Device and mixed-precision choice for training, plus the seeding that makes runs repeatable.

``resolve_device`` never falls back silently: asking for CUDA where there is none is an error (the
original ``--gpu`` flag quietly trained on the CPU). ``amp_settings`` turns ``train.amp`` into an autocast
dtype and whether fp16 needs a gradient scaler; ``auto`` picks bf16 on a CPU with bf16 in hardware
(:func:`cpu_bf16_native`), which trains about twice as fast on the AMD EPYC VM (``benchmarks/cpu_speed.py``)
but slower on an Intel Xeon VM with the same instructions: the training loop and ``predict`` therefore
time both there and keep the faster (:mod:`trainables.cpu_precision`).
"""

from __future__ import annotations

import os
import random
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from model_zoo.errors import UserError

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"


class DeviceError(UserError, ValueError):
    """A device or precision request this machine cannot satisfy."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` -> a usable torch.device."""
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text.partition(":")[2]
        if index_text and not index_text.isdigit():
            raise DeviceError(f"device {name!r}: the CUDA index must be a number; expected {DEVICE_CHOICES}")
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} was asked for but CUDA is not available on this machine "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use --device cpu or auto"
            )
        count = torch.cuda.device_count()
        index = int(index_text) if index_text else torch.cuda.current_device()
        if index >= count:
            raise DeviceError(f"device {name!r}: this machine has {count} CUDA device(s), 0..{count - 1}")
        return torch.device("cuda", index)
    raise DeviceError(f"device {name!r}: unknown; expected {DEVICE_CHOICES}")


@dataclass(frozen=True)
class AmpSettings:
    """Autocast dtype (None = full precision) and whether a GradScaler is needed (fp16 only)."""

    dtype: torch.dtype | None
    use_scaler: bool

    @property
    def name(self) -> str:
        return {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


CPU_BF16_CHECKS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def cpu_bf16_native() -> bool:
    """Whether this CPU multiplies bf16 in hardware (x86 AVX512-BF16 or AMX) and torch has oneDNN to use it.

    Why it decides ``amp: auto`` on the CPU (``benchmarks/cpu_speed.py``, UNet + ResNet-18 at 128 px, 2
    threads): with those instructions bf16 autocast trains 1.9x as fast as fp32 (40.0 vs 21.4 images/s,
    both channels_last) and infers 2.0x as fast; without them oneDNN emulates bf16 and it is slower than
    fp32: 2.1x slower with AVX-512 but no BF16, 10x slower on AVX2 (the same CPU limited by
    ``ONEDNN_MAX_CPU_ISA``). Other CPUs (ARM, older x86) answer False: fp32 there. True is necessary, not
    sufficient: on an Intel Xeon VM with AVX-512 BF16 and no AMX, bf16 trains 1.15-1.5x slower than fp32,
    so where it is True the loop and ``predict`` measure (:mod:`trainables.cpu_precision`).
    """
    if not torch.backends.mkldnn.is_available():
        return False
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in CPU_BF16_CHECKS)


def amp_settings(device: torch.device, amp: str = "auto") -> AmpSettings:
    """``train.amp`` -> settings. ``auto``: on CUDA bf16 when supported, else fp16 with a scaler; on the CPU
    bf16 when :func:`cpu_bf16_native`, else off (full fp32).

    The explicit values override the detection: ``bf16`` also runs on any CPU (autocast supports it),
    ``off`` is full fp32 everywhere; ``fp16`` needs CUDA. Autocast keeps fp32 master weights and optimizer
    state in every case: only the forward's matrix products run in the lower precision.
    """
    if amp == "off":
        return AmpSettings(None, False)
    if amp == "auto":
        if device.type != "cuda":
            return AmpSettings(torch.bfloat16, False) if cpu_bf16_native() else AmpSettings(None, False)
        if torch.cuda.is_bf16_supported():
            return AmpSettings(torch.bfloat16, False)
        return AmpSettings(torch.float16, True)
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DeviceError(
                f"train.amp: bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16"
            )
        return AmpSettings(torch.bfloat16, False)
    if amp == "fp16":
        if device.type != "cuda":
            raise DeviceError("train.amp: fp16 needs a CUDA device; on the CPU use bf16 or off")
        return AmpSettings(torch.float16, True)
    raise DeviceError(f"train.amp: unknown value {amp!r}; expected auto | bf16 | fp16 | off")


def autocast(device: torch.device, amp: AmpSettings) -> AbstractContextManager:
    """The autocast context for ``amp`` (a no-op when precision is full)."""
    if amp.dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp.dtype)


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D weights in ``channels_last`` (in place), skipped when they already are.

    Why, also on the CPU: oneDNN's convolutions run NHWC directly and reorder NCHW weights on every call.
    UNet + ResNet-18 at 128 px, 2 threads: training 40.0 vs 34.7 images/s in bf16 (fp32: 21.4 vs 17.8),
    inference 128 vs 91 (``benchmarks/cpu_speed.py``). The input needs no conversion: with one channel,
    NCHW and NHWC are the same layout. The check looks at one convolution weight with more than one
    input channel and a kernel larger than 1x1 (the only kind whose two layouts differ), so calling this
    before every batch costs nothing once converted. Converting inside ``torch.inference_mode`` would make
    the weights inference tensors that can never be trained again, so the conversion always leaves it.
    """
    for p in model.parameters():
        if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1:
            if p.is_contiguous(memory_format=torch.channels_last):
                return model
            break
    with torch.inference_mode(False):
        return model.to(memory_format=torch.channels_last)


def make_scaler(device: torch.device, amp: AmpSettings) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 (its state_dict is empty when disabled)."""
    return torch.amp.GradScaler(device.type, enabled=amp.use_scaler)


def seed_everything(seed: int, deterministic: bool = False, cudnn_benchmark: bool = True) -> None:
    """Seed Python, NumPy's legacy global and torch; ``deterministic`` also asks for deterministic kernels.

    Deterministic mode costs speed on CUDA; the resume test uses it on the CPU. ``cudnn_benchmark``
    autotunes each new convolution shape on CUDA: faster steady epochs for a slower first one.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = cudnn_benchmark
