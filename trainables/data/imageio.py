"""Reading ultrasound images and lesion masks in whatever mode they were saved.

Every failure (zero-byte, truncated, not an image, corrupt, too large) becomes a :class:`DataError` naming
the file, raised where the file is opened, so a problem never surfaces as a crash deep inside a worker.
Nothing global is changed (no ``ImageFile.LOAD_TRUNCATED_IMAGES``, no ``Image.MAX_IMAGE_PIXELS``): a
truncated file is an error, not half an image.

Decode limit: a few hundred kilobytes of PNG can claim 12000x12000 16-bit pixels, which Pillow decodes
(its own bomb limit is 179 megapixels) into gigabytes. :func:`load_image` reads the size from the header
and refuses more than :func:`pixel_limit` pixels before decoding anything: :data:`DEFAULT_MAX_PIXELS`
(50 megapixels, 25 times a large ultrasound frame), or ``$BUS_MAX_PIXELS``. Pillow's own limit still
applies above 179 megapixels.

16-bit images: see :func:`source_bits`.
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
STANDARD_DEPTHS = (8, 10, 12, 14, 16)
DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "BUS_MAX_PIXELS"


def pixel_limit() -> int:
    """Most pixels (width x height) one image may have: ``$BUS_MAX_PIXELS``, else
    :data:`DEFAULT_MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise DataError(
            f"{MAX_PIXELS_ENV}={raw!r}: expected a positive whole number of pixels, e.g. 50000000"
        )
    return value


def _check_pixels(path: str | Path, size: tuple[int, int], limit: int | None) -> None:
    """Refuse an image whose header claims more than ``limit`` pixels (default :func:`pixel_limit`)."""
    limit = pixel_limit() if limit is None else limit
    width, height = size
    if width * height > limit:
        raise file_error(
            path,
            f"{width}x{height} pixels ({width * height / 1e6:.1f} megapixels) exceed the limit of {limit} "
            f"pixels read before decoding; set {MAX_PIXELS_ENV} to allow larger images",
        )


def load_image(path: str | Path, data: bytes | None = None, max_pixels: int | None = None) -> Image.Image:
    """Open and fully decode one image file (``data``: its bytes, when already read).

    The pixel count from the header is checked against ``max_pixels`` (default :func:`pixel_limit`)
    before any pixel is decoded.
    """
    path = Path(path)
    image = None
    try:
        if data is None and os.stat(path).st_size == 0:
            raise file_error(path, "empty file (0 bytes)")
        if data is not None and not data:
            raise file_error(path, "empty file (0 bytes)")
        image = Image.open(io.BytesIO(data) if data is not None else path)
        _check_pixels(path, image.size, max_pixels)
        image.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, EOFError, zlib.error, ...
        if image is not None:
            image.close()
        if isinstance(exc, DataError):
            raise
        if isinstance(exc, FileNotFoundError):
            raise file_error(path, "file not found") from None
        if isinstance(exc, Image.DecompressionBombError):  # over Pillow's own limit, found at open
            raise file_error(
                path, f"{exc} (refused before decoding; {MAX_PIXELS_ENV} cannot lift it)"
            ) from None
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


def source_bits(values: np.ndarray) -> int:
    """The bit depth that wide integer gray ``values`` are scaled from to reach 0..255.

    The smallest standard depth (8, 10, 12, 14, 16 bits) that holds the image's maximum; beyond 16 bits
    (32-bit files) the maximum's own bit length. Why: a 16-bit container says nothing about the data;
    scanners and converters store 10-, 12- or 14-bit values in it unscaled (a 12-bit frame scaled by the
    16-bit range comes out at 1/16 brightness, nearly black), while 8-bit data copied into 16 bits keeps
    its values. A PNG ``sBIT`` chunk would not help: by the PNG rules it describes data already scaled to
    the full 16 bits, which this rule scales by 16 bits too. An ultrasound frame almost always has
    pixels near its depth's top (speckle highlights, overlay text), so its maximum finds the depth; only
    a frame darker than 1/4 of its depth's range would be scaled from a smaller depth (brighter). The
    audit lists every such image with the depth used.
    """
    top = int(values.max()) if values.size else 0
    need = max(top, 0).bit_length()
    return next((bits for bits in STANDARD_DEPTHS if bits >= need), need)


def _wide_to_uint8(values: np.ndarray) -> tuple[np.ndarray, int | None]:
    """16/32-bit or float gray to uint8, and the bit depth integer data was scaled from (None for float).

    Integer data is scaled by ``255 / (2**bits - 1)`` with ``bits`` from :func:`source_bits` (negative
    values become 0); float data in [0, 1] is scaled by 255, other float data is clipped to 0..255.
    """
    values = np.asarray(values)
    if values.dtype.kind == "f":
        finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            finite = finite * 255.0
        return np.clip(np.rint(finite), 0, 255).astype(np.uint8), None
    bits = source_bits(values)
    if values.dtype.kind == "i" and values.size and values.min() < 0:
        values = np.maximum(values, 0)
    if bits <= 8:
        return values.astype(np.uint8), bits
    scaled = values.astype(np.float32) * np.float32(255.0 / ((1 << bits) - 1))
    return np.rint(scaled, out=scaled).astype(np.uint8), bits


def gray_with_depth(image: Image.Image) -> tuple[np.ndarray, int | None]:
    """:func:`gray_from_pil` and, for 16/32-bit integer images, the bit depth they were scaled from."""
    mode = image.mode
    if mode in _SIXTEEN_BIT or mode == "F":
        gray, bits = _wide_to_uint8(np.asarray(image))
        return gray, (bits if mode in _SIXTEEN_BIT else None)
    if mode == "L":
        return np.array(image, dtype=np.uint8), None
    if mode == "1":
        return np.array(image, dtype=np.uint8) * np.uint8(255), None
    if mode == "LA":
        return np.array(image.getchannel("L"), dtype=np.uint8), None
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
    return np.array(image.convert("L"), dtype=np.uint8), None


def gray_from_pil(image: Image.Image) -> np.ndarray:
    """One gray ``uint8[H, W]`` channel from a decoded image of any mode (colour by ITU-R 601 luma)."""
    return gray_with_depth(image)[0]


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


def read_gray_with_depth(path: str | Path, data: bytes | None = None) -> tuple[np.ndarray, int | None]:
    """:func:`read_gray` and the bit depth a 16/32-bit integer image was scaled from (else None)."""
    image = load_image(path, data)
    try:
        return gray_with_depth(image)
    except Exception as exc:
        raise file_error(path, f"cannot convert mode {image.mode!r} to gray ({exc})") from exc


def read_gray(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """The image at ``path`` as gray ``uint8[H, W]``; raises :class:`DataError` naming the file."""
    return read_gray_with_depth(path, data)[0]


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
