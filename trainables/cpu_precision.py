"""``train.amp: auto`` on a CPU with bf16 hardware: time both precisions on the real model, keep the faster.

Why measure instead of detect: the same instruction set does not give the same speed. UNet + ResNet-18 at
128 px, batch 16, 2 threads (``benchmarks/cpu_speed.py``): on an AMD EPYC VM with AVX-512 BF16, bf16
autocast trains 1.9x as fast as fp32; on an Intel Xeon VM that also reports AVX-512 BF16 (no AMX exposed),
bf16 trains 1.15-1.5x *slower* (11.5-13.8 vs 15.9-17.2 images/s) and infers 1.2x slower. A CPU without bf16
hardware is not measured: oneDNN emulates bf16 there and it is 2-10x slower
(:func:`trainables.device.cpu_bf16_native`).

The probe runs a few steps of a deep copy of the model as it will be used (training: forward under
autocast with labels, the real loss, backward; inference: the eval-mode forward, at the canonical batch
:data:`INFER_BATCH` so that validation, ``evaluate`` and ``predict`` of one architecture agree) on a
random batch of the real image size, both precisions interleaved so that a change of load hits both
(1 warm-up + 3 timed steps each), and picks bf16 only when its median step is at least
:data:`BF16_MARGIN` faster: fp32 is the numerically safer choice, so a tie goes to it. Under
:func:`torch.random.fork_rng` on a copy without the caller's hooks, so the caller's weights, batch-norm
statistics, hooks and random streams are as before (a seeded run stays repeatable).

The timings are cached in memory and in ``<cache>/precision/<key>.json`` (the data cache's folder,
:func:`trainables.data.cache.cache_dir`), measured under a file lock so that concurrent trials on a node
measure once and agree. Key: the architecture (the model config without its weights source, dropout
and latent-augmentation strengths, which do not change the work), input shape, training or inference,
channels_last, torch's threads and version, the CPU's name and bf16 / AMX flags and oneDNN's ISA limit;
the choice is recomputed from the cached times with the current margin. Delete the folder to measure
again; ``train.amp: bf16`` or ``off`` skips the probe. The loop records its choices in its state (a
resumed run keeps them) and summary.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model_zoo.files import write_json_atomic
from trainables import device as torch_device
from trainables.device import AmpSettings, autocast, to_channels_last

BF16_MARGIN = 0.05  # bf16 must be at least 5% faster per step to be chosen
INFER_BATCH = 16  # the inference probe's batch, whatever the caller's (one answer per architecture)
PROBE_VERSION = 1
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
# Model-config entries that change no computation's cost (``cls_head.dropout`` and the latent
# augmentation's strengths are searched: without this, every trial of one architecture would re-measure).
NOT_ARCHITECTURE = {"encoder_weights": None, "cls_head": ("dropout",), "latent_aug": ("sigma", "alpha")}

_MEMORY: dict[str, tuple[float, float]] = {}


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """The chosen ``train.amp`` (``bf16`` or ``off``), the median seconds per step of each precision and
    where it came from (``measured`` now, the ``cache``, or a resumed run's ``state``)."""

    amp: str
    fp32_s: float
    bf16_s: float
    source: str = "measured"

    @classmethod
    def from_times(cls, fp32_s: float, bf16_s: float, source: str) -> PrecisionChoice:
        amp = "bf16" if bf16_s <= (1.0 - BF16_MARGIN) * fp32_s else "off"
        return cls(amp, float(fp32_s), float(bf16_s), source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> PrecisionChoice:
        """A recorded choice (a state's or summary's dict), keeping its recorded ``amp``."""
        return cls(str(data["amp"]), float(data["fp32_s"]), float(data["bf16_s"]), source)

    @property
    def speedup(self) -> float:
        """fp32 step time / bf16 step time (> 1: bf16 faster)."""
        return self.fp32_s / self.bf16_s if self.bf16_s > 0 else float("nan")

    def describe(self) -> str:
        return (
            f"{self.amp} ({self.source}: bf16 at {self.speedup:.2f}x the speed of fp32, "
            f"{self.bf16_s * 1e3:.0f} vs {self.fp32_s * 1e3:.0f} ms per step)"
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.cache
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`), read once per
    process: ``predict`` builds a probe key for every image it is given."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def architecture(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a model config dict) without the entries of :data:`NOT_ARCHITECTURE`."""
    out = dict(config)
    for name, keys in NOT_ARCHITECTURE.items():
        if keys is None:
            out.pop(name, None)
        elif isinstance(out.get(name), Mapping):
            out[name] = {k: v for k, v in out[name].items() if k not in keys}
    return out


def probe_key(
    model_id: Mapping[str, Any] | str, shape: tuple[int, ...], train: bool, channels_last: bool
) -> str:
    """The cache key of one measurement: everything that changes which precision is faster."""
    flags = {name: bool(getattr(torch.cpu, name, lambda: False)()) for name in torch_device.CPU_BF16_CHECKS}
    fields = {
        "version": PROBE_VERSION,
        "model": architecture(model_id) if isinstance(model_id, Mapping) else model_id,
        "shape": list(shape),
        "mode": "train" if train else "infer",
        "channels_last": bool(channels_last),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "flags": flags,
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "isa_env": {name: os.environ.get(name) for name in ISA_ENV},
    }
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def time_steps(run: Callable[[AmpSettings], None], repeats: int = 3, warmup: int = 1) -> tuple[float, float]:
    """Median seconds of ``run(amp)`` for fp32 and for bf16, interleaved after ``warmup`` calls of each
    (the first calls create oneDNN's kernels)."""
    fp32, bf16 = AmpSettings(None, False), AmpSettings(torch.bfloat16, False)
    for _ in range(warmup):
        run(bf16)
        run(fp32)
    times: dict[str, list[float]] = {"off": [], "bf16": []}
    for _ in range(repeats):
        for amp in (fp32, bf16):
            t0 = time.perf_counter()
            run(amp)
            times[amp.name].append(time.perf_counter() - t0)
    return statistics.median(times["off"]), statistics.median(times["bf16"])


def _probe_copy(model: nn.Module, train: bool, channels_last: bool) -> nn.Module:
    """A deep copy of ``model`` in the probe's mode, without the caller's hooks (profilers, W&B watch)."""
    probe = copy.deepcopy(model)
    for module in probe.modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            getattr(module, hooks, {}).clear()
    probe.train(train)
    return to_channels_last(probe) if channels_last else probe


def _measure(
    model: nn.Module,
    shape: tuple[int, ...],
    loss_fn: Callable[..., Any] | None,
    num_classes: int,
    channels_last: bool,
    repeats: int,
) -> tuple[float, float]:
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type != "cpu":
        raise ValueError(f"the precision probe times CPU models; this one is on {device}")
    with torch.random.fork_rng(devices=[]):
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(shape, generator=gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        probe = _probe_copy(model, loss_fn is not None, channels_last)
        if loss_fn is not None:
            m = (torch.rand(shape, generator=gen) > 0.7).float()
            y = torch.arange(shape[0]) % num_classes

            def run(amp: AmpSettings) -> None:
                with torch.enable_grad():
                    with autocast(device, amp):
                        out = probe(x, labels=y)
                    loss, _ = loss_fn(out, m, y)
                    if loss.requires_grad:
                        loss.backward()
                probe.zero_grad(set_to_none=True)
        else:

            def run(amp: AmpSettings) -> None:
                with torch.inference_mode(), autocast(device, amp):
                    probe(x)

        return time_steps(run, repeats=repeats)


def _cached(key: str, folder: Path | None) -> tuple[float, float] | None:
    if key in _MEMORY:
        return _MEMORY[key]
    if folder is None:
        return None
    try:
        data = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
        times = float(data["fp32_s"]), float(data["bf16_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not all(t > 0 for t in times):
        return None
    _MEMORY[key] = times
    return times


def _store(key: str, times: tuple[float, float], folder: Path | None) -> None:
    _MEMORY[key] = times
    if folder is None:
        return
    record = {"fp32_s": times[0], "bf16_s": times[1], "cpu": cpu_name(), "torch": torch.__version__}
    try:
        write_json_atomic(folder / f"{key}.json", record)
    except OSError as exc:  # a read-only cache costs a re-measurement next time, never the run
        warnings.warn(f"could not cache the precision probe in {folder}: {exc}", RuntimeWarning, stacklevel=3)


def default_cache() -> Path:
    """``<data cache>/precision``."""
    from trainables.data.cache import cache_dir

    return cache_dir() / "precision"


def choose_cpu_amp(
    model: nn.Module,
    shape: tuple[int, ...],
    *,
    model_id: Mapping[str, Any] | str,
    loss_fn: Callable[..., Any] | None = None,
    num_classes: int = 3,
    channels_last: bool = True,
    repeats: int = 3,
    cache: Path | bool | None = True,
) -> PrecisionChoice:
    """Measure (or read back) the faster CPU precision for ``model`` on inputs of ``shape`` ``[B, 1, H, W]``.

    With ``loss_fn`` it times a training step (forward with labels, ``loss_fn(out, masks, labels)``,
    backward), without it an eval-mode forward, both on a copy. ``model_id`` names the architecture for
    the cache key (the model config dict, see :func:`architecture`). ``cache``: True for
    :func:`default_cache`, a folder, or False / None for memory only.
    """
    from trainables.data.cache import file_lock

    train = loss_fn is not None
    key = probe_key(model_id, tuple(int(s) for s in shape), train, channels_last)
    folder = default_cache() if cache is True else (Path(cache) if cache else None)
    times = _cached(key, folder)
    if times is not None:
        return PrecisionChoice.from_times(*times, "cache")
    with contextlib.ExitStack() as stack:
        if folder is not None:
            try:
                stack.enter_context(file_lock(folder / f"{key}.lock"))
            except OSError as exc:  # an unwritable cache: measure unlocked, never fail the run
                warnings.warn(f"precision probe: no lock in {folder}: {exc}", RuntimeWarning, stacklevel=2)
        times = _cached(key, folder)  # another process may have measured while this one waited
        if times is not None:
            return PrecisionChoice.from_times(*times, "cache")
        times = _measure(model, shape, loss_fn, num_classes, channels_last, repeats)
        _store(key, times, folder)
    return PrecisionChoice.from_times(*times, "measured")


def choose_inference_amp(
    model: nn.Module,
    size: tuple[int, int],
    *,
    model_id: Mapping[str, Any] | str,
    channels_last: bool = True,
    cache: Path | bool | None = True,
) -> PrecisionChoice:
    """The faster inference precision of ``model`` on ``size`` (H, W) images, timed at :data:`INFER_BATCH`
    whatever the caller's batch, so that the loop's validation, ``evaluate`` and ``predict`` of one
    architecture run in one precision on a machine."""
    shape = (INFER_BATCH, 1, int(size[0]), int(size[1]))
    return choose_cpu_amp(model, shape, model_id=model_id, channels_last=channels_last, cache=cache)


def needs_probe(device: torch.device, amp: str) -> bool:
    """Whether ``train.amp`` = ``amp`` on ``device`` is decided by measuring: ``auto`` on a CPU with bf16
    hardware (elsewhere :func:`trainables.device.amp_settings` decides alone)."""
    return amp == "auto" and device.type == "cpu" and torch_device.cpu_bf16_native()
