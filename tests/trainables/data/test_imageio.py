"""Reading images and masks in every mode real data comes in, and failing clearly on bad files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.trainables.data.conftest import blob, texture, write_image
from trainables.data.errors import DataError
from trainables.data.imageio import (
    DEFAULT_MAX_PIXELS,
    centre_crop_mask,
    gray_with_depth,
    image_size,
    load_image,
    read_gray,
    read_gray_with_depth,
    read_mask,
    read_mask_file,
)

H, W = 24, 32


def _lesion() -> np.ndarray:
    return blob(H, W, 12, 16, 5, 7)


def test_gray_modes(tmp_path: Path) -> None:
    gray = texture(1, H, W)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    cases = {
        "l.png": Image.fromarray(gray),
        "rgb.png": Image.fromarray(rgb),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full((H, W), 7, np.uint8)])),
        "la.png": Image.fromarray(np.dstack([gray, np.full((H, W), 200, np.uint8)]), mode="LA"),
        "p.png": Image.fromarray(rgb).quantize(256),
        "rgb.bmp": Image.fromarray(rgb),
        "l.tif": Image.fromarray(gray),
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        out = read_gray(tmp_path / name)
        assert out.dtype == np.uint8 and out.shape == (H, W), name
        tolerance = 8 if name.startswith("p.") else 1  # quantisation to a palette
        assert np.abs(out.astype(int) - gray).max() <= tolerance, name
    jpeg = write_image(tmp_path / "x.JPG", rgb)
    assert np.abs(read_gray(jpeg).astype(int) - gray).mean() < 4


def test_gray_one_bit_and_sixteen_bit(tmp_path: Path) -> None:
    bits = _lesion()
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    assert set(np.unique(read_gray(tmp_path / "b.png"))) == {0, 255}

    wide = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 85).astype(np.uint16)  # up to ~65k
    Image.fromarray(wide).save(tmp_path / "w.png")
    assert Image.open(tmp_path / "w.png").mode == "I;16"
    out = read_gray(tmp_path / "w.png")
    expected = np.rint(wide.astype(float) * 255 / 65535)
    assert out.dtype == np.uint8 and np.abs(out - expected).max() <= 1
    assert out.max() > 250  # the full 16-bit range maps to the full 8-bit range

    small = np.full((H, W), 200, np.uint16)  # 8-bit data stored in 16 bits stays as it is
    Image.fromarray(small).save(tmp_path / "s.png")
    assert (read_gray(tmp_path / "s.png") == 200).all()


def test_sixteen_bit_scaled_by_bit_depth_not_by_each_maximum(tmp_path: Path) -> None:
    ramp = np.linspace(0, 1, H * W).reshape(H, W)
    for bits, top in [(12, 4095), (12, 3000), (10, 1023), (14, 16383)]:
        values = np.rint(ramp * top).astype(np.uint16)  # raw 10/12/14-bit values in a 16-bit PNG
        Image.fromarray(values).save(tmp_path / f"d{bits}.png")
        assert Image.open(tmp_path / f"d{bits}.png").mode == "I;16"
        out, found = read_gray_with_depth(tmp_path / f"d{bits}.png")
        expected = np.rint(values * 255.0 / (2**bits - 1))
        assert found == bits and np.abs(out.astype(int) - expected).max() <= 1, (bits, top)
        assert out.max() == round(top * 255 / (2**bits - 1))  # 12-bit max 4095 -> 255, not 16
    assert read_gray_with_depth(write_image(tmp_path / "l.png", texture(2, H, W)))[1] is None
    signed = np.array([[-5, 0, 2048, 4095]], np.int32)  # mode "I" (32-bit): negatives become 0
    gray, bits = gray_with_depth(Image.fromarray(signed))
    assert bits == 12 and gray.tolist() == [[0, 0, 128, 255]]


def _png_header(path: Path, width: int, height: int, bit_depth: int = 8) -> Path:
    """A gray PNG of a few dozen bytes whose header claims ``width`` x ``height`` (no real pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_decode_limit_from_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUS_MAX_PIXELS", raising=False)
    bomb = _png_header(tmp_path / "bomb.png", 8000, 8000, bit_depth=16)  # decoded: GBs in predict
    assert bomb.stat().st_size < 100 and image_size(bomb) == (8000, 8000)
    for read in (read_gray, read_mask_file):
        with pytest.raises(
            DataError, match=r"8000x8000 pixels \(64\.0 megapixels\) exceed the limit"
        ) as info:
            read(bomb)
        assert info.value.path == str(bomb) and str(DEFAULT_MAX_PIXELS) in str(info.value)
        assert "BUS_MAX_PIXELS" in str(info.value)
    beyond_pillow = _png_header(tmp_path / "huge.png", 20000, 20000)  # over Pillow's own 179 MP
    with pytest.raises(DataError, match=r"huge\.png.*cannot lift it"):
        read_gray(beyond_pillow)
    small = write_image(tmp_path / "s.png", texture(5, 30, 40))  # 1200 pixels
    monkeypatch.setenv("BUS_MAX_PIXELS", "1000")
    with pytest.raises(DataError, match=r"s\.png: 40x30 pixels .* limit of 1000 pixels"):
        read_gray(small)
    assert load_image(small, max_pixels=1200).size == (40, 30)
    monkeypatch.setenv("BUS_MAX_PIXELS", "1200")
    assert read_gray(small).shape == (30, 40)
    monkeypatch.setenv("BUS_MAX_PIXELS", "lots")
    with pytest.raises(DataError, match=r"BUS_MAX_PIXELS='lots': expected a positive whole number"):
        read_gray(small)


def test_masks_any_channel_alpha_ignored(tmp_path: Path) -> None:
    lesion = _lesion()
    zeros = np.zeros((H, W), np.uint8)
    on = lesion.astype(np.uint8) * 255
    cases = {
        "gray.png": Image.fromarray(on),
        "onebit.png": Image.fromarray(lesion).convert("1"),
        "blue_only.png": Image.fromarray(np.dstack([zeros, zeros, on])),
        "rgba.png": Image.fromarray(np.dstack([on, zeros, zeros, np.full((H, W), 255, np.uint8)])),
        "rgba_alpha0.png": Image.fromarray(np.dstack([on, on, on, zeros])),  # alpha aside: still lesion
        "la.png": Image.fromarray(np.dstack([lesion.astype(np.uint8), zeros]), mode="LA"),
        "sixteen.png": Image.fromarray(lesion.astype(np.uint16) * 1),
    }
    palette = Image.fromarray(lesion.astype(np.uint8), mode="L").convert("P")
    palette.putpalette([0, 0, 0, 0, 90, 0] + [0] * 762)  # index 1 = dark green
    cases["palette.png"] = palette
    for name, image in cases.items():
        image.save(tmp_path / name)
        out = read_mask_file(tmp_path / name)
        assert out.dtype == bool and (out == lesion).all(), name
    # a mask drawn only in alpha (RGB all zero) is no lesion: alpha is not a colour channel
    Image.fromarray(np.dstack([zeros, zeros, zeros, on])).save(tmp_path / "alpha_only.png")
    assert not read_mask_file(tmp_path / "alpha_only.png").any()


def test_read_mask_merges_and_checks_sizes(tmp_path: Path) -> None:
    a = blob(H, W, 6, 8, 3, 3)
    b = blob(H, W, 16, 24, 3, 3)
    write_image(tmp_path / "a_mask.png", a.astype(np.uint8) * 255)
    write_image(tmp_path / "a_mask_1.png", b.astype(np.uint8), "RGB")
    merged = read_mask([tmp_path / "a_mask.png", tmp_path / "a_mask_1.png"])
    assert (merged == (a | b)).all()
    write_image(tmp_path / "a_mask_2.png", np.zeros((H + 1, W), np.uint8))
    with pytest.raises(DataError, match=r"a_mask_2\.png.*32x25.*a_mask\.png.*32x24"):
        read_mask([tmp_path / "a_mask.png", tmp_path / "a_mask_2.png"])


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.png", texture(3, 64, 64))
    data = good.read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    for name, reason in [
        ("truncated.png", "cannot read"),
        ("empty.png", "0 bytes"),
        ("text.png", "cannot read"),
    ]:
        with pytest.raises(DataError, match=reason) as info:
            read_gray(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and info.value.path == str(tmp_path / name)
        with pytest.raises(DataError):
            read_mask_file(tmp_path / name)
    with pytest.raises(DataError, match="not found"):
        read_gray(tmp_path / "missing.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # nothing global was switched on


def test_image_size_reads_header_only(tmp_path: Path) -> None:
    path = write_image(tmp_path / "x.png", texture(4, 30, 40))
    assert image_size(path) == (40, 30)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.png"):
        image_size(tmp_path / "empty.png")


def test_centre_crop_mask_only_when_no_lesion_is_lost() -> None:
    big = np.zeros((30, 40), bool)
    big[12:16, 18:22] = True
    cut = centre_crop_mask(big, 20, 20)
    assert cut is not None and cut.shape == (20, 20) and cut.sum() == big.sum()
    big[0, 0] = True  # lesion outside the centred window
    assert centre_crop_mask(big, 20, 20) is None
    assert centre_crop_mask(np.zeros((10, 10), bool), 20, 20) is None  # smaller: cannot be repaired
