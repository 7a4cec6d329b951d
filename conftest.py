"""Test-session settings shared by every test: small thread pools (CI has 2 cores), offline W&B,
a private dataset cache, and the real-data location from BUS_REAL_DATA."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a hard requirement, but keep collection readable
    pass


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point the dataset cache at a per-session folder so tests never see a user's cache."""
    path = tmp_path_factory.mktemp("bus-cache")
    os.environ["BUS_CACHE_DIR"] = str(path)
    return path


def _real_root(name: str) -> Path:
    base = os.environ.get("BUS_REAL_DATA")
    if not base:
        pytest.skip("BUS_REAL_DATA is not set: real BUSI samples unavailable (see README, 'Real data')")
    path = Path(base) / name
    if not path.is_dir():
        pytest.skip(f"BUS_REAL_DATA={base} has no {name}/ folder")
    return path


@pytest.fixture(scope="session")
def busi() -> Path:
    """The full BUSI set (658 images: 118 normal, 360 benign, 180 malignant), read-only."""
    return _real_root("busi")


@pytest.fixture
def busi_subset() -> Path:
    """The 105-image BUSI subset (35 per class), read-only."""
    return _real_root("busi_subset")


@pytest.fixture
def seed_sample() -> Path:
    """The thesis sample (PACE images), with its orphan mask, read-only."""
    return _real_root("seed_sample")


# ------------------------------------------------------------------------------------------------ Ray


@pytest.fixture
def no_ray() -> Iterator[None]:
    """For code that starts Ray itself (a search, the pipeline, a benchmark): none may be running before,
    and none is left after (a search keeps its Ray for the analysis that follows; stopped here)."""
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized(), "another test left Ray running"
    yield
    ray.shutdown()


@pytest.fixture
def local_ray() -> Iterator[Callable[..., None]]:
    """``start(env=None, **resources)``: a private local Ray with the resources (``num_cpus``,
    ``num_gpus``) and worker environment variables a test asks for; stopped after the test."""
    ray = pytest.importorskip("ray")
    from search.tuner import local_runtime_env

    def start(env: dict[str, str] | None = None, **resources: float) -> None:
        assert not ray.is_initialized(), "another test left Ray running"
        ray.init(include_dashboard=False, runtime_env=local_runtime_env(env), **resources)

    yield start
    ray.shutdown()


@pytest.fixture
def precision_probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[float, float], None]:
    """``set(fp32_s, bf16_s)``: the CPU precision probe (``trainables.cpu_precision``) sees these step
    times, on a CPU with bf16 hardware, with an empty memory and disk cache of its own."""
    from trainables import cpu_precision, device

    def set_times(fp32_s: float, bf16_s: float) -> None:
        monkeypatch.setattr(device, "cpu_bf16_native", lambda: True)
        monkeypatch.setattr(cpu_precision, "_MEMORY", {})
        monkeypatch.setenv("BUS_CACHE_DIR", str(tmp_path / "bus-cache"))
        monkeypatch.setattr(cpu_precision, "time_steps", lambda run, **kw: (fp32_s, bf16_s))

    return set_times
