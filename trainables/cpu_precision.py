"""``train.amp: auto`` on a CPU with bf16 hardware: time both precisions on the real model, keep the faster.

Why measure instead of detect: the same instruction set does not give the same speed. UNet + ResNet-18 at
128 px, batch 16, 2 threads (``benchmarks/cpu_speed.py``): on an AMD EPYC VM with AVX-512 BF16, bf16
autocast trains 1.9x as fast as fp32; on an Intel Xeon VM that also reports AVX-512 BF16 (no AMX exposed),
bf16 trains 1.15-1.5x *slower* (11.5-13.8 vs 15.9-17.2 images/s) and infers 1.2x slower. A CPU without bf16
hardware is not measured: oneDNN emulates bf16 there and it is 2-10x slower
(:func:`trainables.device.cpu_bf16_native`).

The probe runs a few steps of the model as it will be used (training: forward under autocast, the real
loss, backward; inference: the eval-mode forward) on a random batch of the real shape, both precisions
interleaved so that a change of load hits both, and picks bf16 only when its median step is at least
:data:`BF16_MARGIN` faster: fp32 is the numerically safer choice, so a tie goes to it. It trains a deep
copy under :func:`torch.random.fork_rng`, so the caller's weights, batch-norm statistics and random
streams are exactly as before (a seeded run stays repeatable). A training probe costs about 10 steps
(about 10 s for the README recipe on the slower machine, against an hour of training).

The answer is cached in memory and in ``<cache>/precision/<key>.json`` (the data cache's folder,
:func:`trainables.data.cache.cache_dir`), keyed by the model's config, the input shape, training or
inference, channels_last, torch's thread count and version and the CPU's name, so the folds of a run, a
search's trials of one architecture and every later run on the machine share one measurement. Delete the
folder to measure again; pass ``train.amp: bf16`` or ``off`` to skip the probe. The loop records its
choice in its state (a resumed run keeps it) and in its summary.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
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
PROBE_VERSION = 1

_MEMORY: dict[str, PrecisionChoice] = {}


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """The chosen ``train.amp`` (``bf16`` or ``off``), the median seconds per step of each precision and
    whether this process ``measured`` it or read it from the ``cache``."""

    amp: str
    fp32_s: float
    bf16_s: float
    source: str = "measured"

    @property
    def speedup(self) -> float:
        """fp32 step time / bf16 step time (> 1: bf16 faster)."""
        return self.fp32_s / self.bf16_s if self.bf16_s > 0 else float("nan")

    def describe(self) -> str:
        return (
            f"{self.amp} ({self.source}: bf16 {self.speedup:.2f}x the speed of fp32, "
            f"{self.bf16_s * 1e3:.0f} vs {self.fp32_s * 1e3:.0f} ms per step)"
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def probe_key(
    model_id: Mapping[str, Any] | str, shape: tuple[int, ...], train: bool, channels_last: bool
) -> str:
    """The cache key of one measurement: everything that changes which precision is faster."""
    fields = {
        "version": PROBE_VERSION,
        "model": model_id,
        "shape": list(shape),
        "mode": "train" if train else "infer",
        "channels_last": bool(channels_last),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "capability": torch.backends.cpu.get_cpu_capability(),
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


def _train_step(
    model: nn.Module, loss_fn: Callable[..., Any], x: torch.Tensor, m: torch.Tensor, y: torch.Tensor
) -> Callable[[AmpSettings], None]:
    def run(amp: AmpSettings) -> None:
        with autocast(x.device, amp):
            out = model(x, labels=y)
        loss, _ = loss_fn(out, m, y)
        loss.backward()
        model.zero_grad(set_to_none=True)

    return run


def _infer_step(model: nn.Module, x: torch.Tensor) -> Callable[[AmpSettings], None]:
    def run(amp: AmpSettings) -> None:
        with torch.inference_mode(), autocast(x.device, amp):
            model(x)

    return run


def _cached(key: str, cache: Path | None) -> PrecisionChoice | None:
    if key in _MEMORY:
        return _MEMORY[key]
    if cache is None:
        return None
    path = cache / f"{key}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        choice = PrecisionChoice(str(data["amp"]), float(data["fp32_s"]), float(data["bf16_s"]), "cache")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if choice.amp not in ("bf16", "off"):
        return None
    _MEMORY[key] = choice
    return choice


def _store(key: str, choice: PrecisionChoice, cache: Path | None) -> None:
    _MEMORY[key] = choice
    if cache is None:
        return
    try:
        record = {**choice.as_dict(), "cpu": cpu_name(), "torch": torch.__version__}
        write_json_atomic(cache / f"{key}.json", record)
    except OSError as exc:  # a read-only cache costs a re-measurement next time, never the run
        warnings.warn(f"could not cache the precision probe in {cache}: {exc}", RuntimeWarning, stacklevel=3)


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
    backward) on a deep copy in train mode; without, an eval-mode forward of ``model`` itself (inference
    changes nothing). ``model_id`` names the architecture for the cache key (the model config dict).
    ``cache``: True for :func:`default_cache`, a folder, or False / None for memory only.
    """
    train = loss_fn is not None
    key = probe_key(model_id, tuple(int(s) for s in shape), train, channels_last)
    folder = default_cache() if cache is True else (Path(cache) if cache else None)
    found = _cached(key, folder)
    if found is not None:
        return found
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.random.fork_rng(devices=[]):
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(shape, generator=gen).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if train:
            probe = copy.deepcopy(model).train()
            if channels_last:
                probe = to_channels_last(probe)
            m = (torch.rand(shape, generator=gen) > 0.7).float().to(device)
            y = (torch.arange(shape[0]) % num_classes).to(device)
            run = _train_step(probe, loss_fn, x, m, y)
        else:
            was_training = model.training
            probe = (to_channels_last(model) if channels_last else model).eval()
            run = _infer_step(probe, x)
        try:
            fp32_s, bf16_s = time_steps(run, repeats=repeats)
        finally:
            if not train:
                model.train(was_training)
    amp = "bf16" if bf16_s <= (1.0 - BF16_MARGIN) * fp32_s else "off"
    choice = PrecisionChoice(amp, fp32_s, bf16_s, "measured")
    _store(key, choice, folder)
    return choice


def needs_probe(device: torch.device, amp: str) -> bool:
    """Whether ``train.amp`` = ``amp`` on ``device`` is decided by measuring: ``auto`` on a CPU with bf16
    hardware (elsewhere :func:`trainables.device.amp_settings` decides alone)."""
    return amp == "auto" and device.type == "cpu" and torch_device.cpu_bf16_native()
