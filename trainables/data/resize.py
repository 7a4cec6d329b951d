"""Resizing an image and its mask to the square working size, and back.

``stretch`` scales each side to ``size`` (aspect ratio changes); ``letterbox`` scales the longer side to
``size``, keeps the aspect ratio (lesion shape matters in ultrasound: taller-than-wide is a malignancy
sign) and pads the rest with black, centred. Images use Pillow's antialiased bilinear filter (area-like
when shrinking). Masks are resized the same way as 0/1 coverage and thresholded at one half, so they stay
binary with smooth edges; a lesion smaller than that would vanish is kept as the pixels it touches.
:func:`undo_resize` maps a working-size mask or probability map back to the original image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from PIL import Image

ResizeMode = Literal["stretch", "letterbox"]
RESIZE_MODES = ("stretch", "letterbox")


@dataclass(frozen=True)
class ResizeInfo:
    """How one image was placed in the ``size`` x ``size`` square (all in pixels)."""

    orig_w: int
    orig_h: int
    size: int
    mode: str
    new_w: int
    new_h: int
    pad_left: int
    pad_top: int

    @property
    def scale_x(self) -> float:
        return self.new_w / self.orig_w

    @property
    def scale_y(self) -> float:
        return self.new_h / self.orig_h

    @classmethod
    def compute(cls, orig_w: int, orig_h: int, size: int, mode: str) -> ResizeInfo:
        """The placement of an ``orig_w`` x ``orig_h`` image for ``mode``."""
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize: expected one of {', '.join(RESIZE_MODES)}, got {mode!r}")
        if orig_w < 1 or orig_h < 1 or size < 1:
            raise ValueError(f"resize: sizes must be positive, got {orig_w}x{orig_h} -> {size}")
        if mode == "stretch":
            return cls(orig_w, orig_h, size, mode, size, size, 0, 0)
        scale = size / max(orig_w, orig_h)
        new_w = min(size, max(1, round(orig_w * scale)))
        new_h = min(size, max(1, round(orig_h * scale)))
        return cls(orig_w, orig_h, size, mode, new_w, new_h, (size - new_w) // 2, (size - new_h) // 2)

    def to_dict(self) -> dict:
        return asdict(self)


def _resample(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear (antialiased) resize of a 2-D float array to ``height`` x ``width``."""
    if values.shape == (height, width):
        return values.astype(np.float32, copy=True)
    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def _place(info: ResizeInfo, content: np.ndarray) -> np.ndarray:
    canvas = np.zeros((info.size, info.size), dtype=content.dtype)
    canvas[info.pad_top : info.pad_top + info.new_h, info.pad_left : info.pad_left + info.new_w] = content
    return canvas


def _mask_to(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Binary ``uint8`` mask at ``height`` x ``width``: coverage >= 1/2, or any coverage if that is empty."""
    coverage = _resample(np.asarray(mask) > 0, width, height)
    out = coverage >= 0.5
    if not out.any() and np.any(mask):
        out = coverage > 0.0
    return out.astype(np.uint8)


def resize_image(image: np.ndarray, size: int, mode: str = "letterbox") -> tuple[np.ndarray, ResizeInfo]:
    """Gray ``uint8[H, W]`` to ``uint8[size, size]`` and the :class:`ResizeInfo` to undo it."""
    h, w = image.shape
    info = ResizeInfo.compute(w, h, size, mode)
    if (h, w) == (info.new_h, info.new_w):
        content = np.asarray(image, dtype=np.uint8)
    else:
        pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L")
        content = np.asarray(pil.resize((info.new_w, info.new_h), Image.Resampling.BILINEAR))
    return _place(info, content), info


def resize_pair(
    image: np.ndarray, mask: np.ndarray | None, size: int, mode: str = "letterbox"
) -> tuple[np.ndarray, np.ndarray | None, ResizeInfo]:
    """Resize an image and its mask (same ``H x W``) together: ``(uint8 image, uint8 0/1 mask, info)``."""
    if mask is not None and np.shape(mask) != np.shape(image):
        raise ValueError(
            f"resize_pair: mask shape {np.shape(mask)} differs from image shape {np.shape(image)}"
        )
    out_image, info = resize_image(image, size, mode)
    if mask is None:
        return out_image, None, info
    return out_image, _place(info, _mask_to(mask, info.new_w, info.new_h)), info


def undo_resize(values: np.ndarray, info: ResizeInfo) -> np.ndarray:
    """Map a working-size ``[size, size]`` (or ``[C, size, size]``) array back to ``[orig_h, orig_w]``.

    Boolean and integer arrays (masks, label maps) come back in their dtype, thresholded / rounded, so a
    0/1 mask stays 0/1; float arrays (probabilities, logits) are interpolated bilinearly.
    """
    values = np.asarray(values)
    if values.shape[-2:] != (info.size, info.size):
        raise ValueError(f"undo_resize: expected [..., {info.size}, {info.size}], got {values.shape}")
    if values.ndim == 3:
        return np.stack([undo_resize(v, info) for v in values])
    if values.ndim != 2:
        raise ValueError(f"undo_resize: expected a 2-D or 3-D array, got shape {values.shape}")
    crop = values[info.pad_top : info.pad_top + info.new_h, info.pad_left : info.pad_left + info.new_w]
    if values.dtype == bool:
        return _resample(crop, info.orig_w, info.orig_h) >= 0.5
    back = _resample(crop, info.orig_w, info.orig_h)
    if values.dtype.kind in "iu":
        limits = np.iinfo(values.dtype)
        return np.clip(np.rint(back), limits.min, limits.max).astype(values.dtype)
    return back.astype(values.dtype if values.dtype.kind == "f" else np.float32)
