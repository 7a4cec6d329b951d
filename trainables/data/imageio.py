"""Reading ultrasound images and lesion masks in whatever mode they were saved.

Every failure (zero-byte, truncated, not an image, corrupt) becomes a :class:`DataError` naming the file,
raised where the file is opened, so a problem never surfaces as a crash deep inside a worker. Nothing
global is changed (no ``ImageFile.LOAD_TRUNCATED_IMAGES``): a truncated file is an error, not half an image.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from trainables.data.errors import DataError, file_error

_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def load_image(path: str | Path, data: bytes | None = None) -> Image.Image:
    """Open and fully decode one image file (``data``: its bytes, when already read)."""
    path = Path(path)
    try:
        if data is None and os.stat(path).st_size == 0:
            raise file_error(path, "empty file (0 bytes)")
        if data is not None and not data:
            raise file_error(path, "empty file (0 bytes)")
        image = Image.open(io.BytesIO(data) if data is not None else path)
        image.load()
    except DataError:
        raise
    except FileNotFoundError:
        raise file_error(path, "file not found") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, EOFError, zlib.error, ...
        raise file_error(path, f"cannot read image ({type(exc).__name__}: {exc})") from exc
    return image


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the file header only, without decoding pixels."""
    path = Path(path)
    try:
        if os.stat(path).st_size == 0:
            raise file_error(path, "empty file (0 bytes)")
        with Image.open(path) as image:
            return image.size
    except DataError:
        raise
    except FileNotFoundError:
        raise file_error(path, "file not found") from None
    except Exception as exc:
        raise file_error(path, f"cannot read image header ({type(exc).__name__}: {exc})") from exc


def _wide_to_uint8(values: np.ndarray) -> np.ndarray:
    """16/32-bit or float gray to uint8: values that already fit 0..255 are kept, others scaled.

    Integer data above 255 is taken as 16-bit and scaled by 255/65535 (values beyond are clipped);
    float data in [0, 1] is scaled by 255, other float data is clipped to 0..255.
    """
    values = np.asarray(values)
    if values.dtype.kind == "f":
        finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            finite = finite * 255.0
        return np.clip(np.rint(finite), 0, 255).astype(np.uint8)
    wide = values.astype(np.int64)
    if wide.size and (wide.max() > 255 or wide.min() < 0):
        wide = np.rint(np.clip(wide, 0, 65535) * (255.0 / 65535.0)).astype(np.int64)
    return np.clip(wide, 0, 255).astype(np.uint8)


def gray_from_pil(image: Image.Image) -> np.ndarray:
    """One gray ``uint8[H, W]`` channel from a decoded image of any mode (colour by ITU-R 601 luma)."""
    mode = image.mode
    if mode == "L":
        return np.array(image, dtype=np.uint8)
    if mode == "1":
        return np.array(image, dtype=np.uint8) * np.uint8(255)
    if mode == "LA":
        return np.array(image.getchannel("L"), dtype=np.uint8)
    if mode in _SIXTEEN_BIT or mode == "F":
        return _wide_to_uint8(np.asarray(image))
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
    return np.array(image.convert("L"), dtype=np.uint8)


def mask_from_pil(image: Image.Image) -> np.ndarray:
    """``bool[H, W]``: lesion where the pixel is non-zero in any colour channel (alpha ignored)."""
    mode = image.mode
    if mode in ("1", "L", "F") or mode in _SIXTEEN_BIT:
        return np.asarray(image) != 0
    if mode == "LA":
        return np.asarray(image.getchannel("L")) != 0
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
    elif mode not in ("RGB", "RGBA", "RGBX"):
        image = image.convert("RGB")
    channels = np.asarray(image)
    return (channels[..., 0] | channels[..., 1] | channels[..., 2]) != 0  # 10x faster than .any(axis=-1)


def read_gray(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """The image at ``path`` as gray ``uint8[H, W]``; raises :class:`DataError` naming the file."""
    image = load_image(path, data)
    try:
        return gray_from_pil(image)
    except Exception as exc:
        raise file_error(path, f"cannot convert mode {image.mode!r} to gray ({exc})") from exc


def read_mask_file(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """One mask file as ``bool[H, W]`` (non-zero in any channel, alpha aside)."""
    image = load_image(path, data)
    try:
        return mask_from_pil(image)
    except Exception as exc:
        raise file_error(path, f"cannot read mode {image.mode!r} as a mask ({exc})") from exc


def read_mask(paths: Sequence[str | Path]) -> np.ndarray:
    """Pixel-wise OR of one or more mask files of one image, ``bool[H, W]``.

    Masks of one image must share a size; otherwise the error names both files and both sizes.
    """
    if not paths:
        raise DataError("read_mask: no mask files given")
    merged: np.ndarray | None = None
    first = Path(paths[0])
    for path in paths:
        mask = read_mask_file(path)
        if merged is None:
            merged = mask.copy()
        elif mask.shape != merged.shape:
            raise DataError(
                f"{path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from {first} "
                f"({merged.shape[1]}x{merged.shape[0]}); masks of one image must have its size",
                path=path,
                reason="mask size differs from the other masks of its image",
            )
        else:
            merged |= mask
    assert merged is not None
    return merged


def centre_crop_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray | None:
    """A larger mask cut to ``width`` x ``height`` around its centre, or None when that would lose lesion.

    Real case: BUSI's ``benign (4)_mask_1.png`` is 555x465 while its image is 416x416; the image was
    centre-cropped from the frame the mask was drawn on, and the centred cut puts the lesion exactly on
    it. Only that case is repaired: a smaller mask, or one with lesion pixels outside the centred window,
    returns None and stays an error.
    """
    h, w = mask.shape
    if w < width or h < height:
        return None
    top, left = (h - height) // 2, (w - width) // 2
    window = mask[top : top + height, left : left + width]
    if np.count_nonzero(window) != np.count_nonzero(mask):
        return None
    return np.ascontiguousarray(window)
