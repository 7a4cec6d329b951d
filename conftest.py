"""Test-session settings shared by every test: small thread pools (CI has 2 cores), offline W&B,
a private dataset cache, and the real-data location from BUS_REAL_DATA."""

from __future__ import annotations

import os
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
