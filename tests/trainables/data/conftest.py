"""Helpers that write small BUSI-format folders with Pillow into ``tmp_path``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

CLASSES = ("normal", "benign", "malignant")


def texture(seed: int, height: int = 48, width: int = 56, sigma: float = 3.0) -> np.ndarray:
    """A distinct ultrasound-like gray picture: smooth random echoes over a depth gradient, uint8."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(height, width)), sigma=sigma)
    field = (field - field.mean()) / (field.std() + 1e-9)
    depth = np.linspace(1.0, 0.4, height)[:, None]
    return np.clip(128 + 55 * field * depth + 40 * (depth - 0.7), 0, 255).astype(np.uint8)


def blob(height: int, width: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """Boolean ellipse mask."""
    yy, xx = np.mgrid[:height, :width]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def write_image(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Save ``array`` with Pillow (format from the suffix), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path)
    return path


def write_mask(path: Path, mask: np.ndarray) -> Path:
    """Save a boolean mask as 8-bit 0/255."""
    return write_image(path, (np.asarray(mask) > 0).astype(np.uint8) * 255)


def make_folder(
    root: Path,
    counts: dict[str, int] | tuple[int, int, int] = (2, 3, 3),
    height: int = 48,
    width: int = 56,
    seed: int = 0,
) -> Path:
    """A BUSI folder: ``<class>/<class> (i).png`` with ``_mask.png`` (empty for normal, an ellipse else)."""
    if not isinstance(counts, dict):
        counts = dict(zip(CLASSES, counts))
    for c, (name, n) in enumerate(counts.items()):
        for i in range(1, n + 1):
            image = texture(seed * 1000 + c * 100 + i, height, width)
            write_image(root / name / f"{name} ({i}).png", image)
            mask = np.zeros((height, width), bool)
            if name != "normal":
                mask = blob(
                    height, width, height / 2, width / 2 + (i % 3) - 1, height / 5, width / (4 + i % 2)
                )
            write_mask(root / name / f"{name} ({i})_mask.png", mask)
    return root


@pytest.fixture
def busi_dir(tmp_path: Path) -> Path:
    """A clean 2 / 3 / 3 image BUSI folder."""
    return make_folder(tmp_path / "data")
