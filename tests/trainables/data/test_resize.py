"""Resizing to the working square (stretch / letterbox), binary masks, and the way back."""

from __future__ import annotations

import numpy as np
import pytest

from tests.trainables.data.conftest import blob, texture
from trainables.data.resize import ResizeInfo, resize_image, resize_pair, undo_resize


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_letterbox_keeps_aspect_and_pads_black() -> None:
    image = np.full((60, 120), 200, np.uint8)
    mask = blob(60, 120, 30, 60, 10, 30)
    out, out_mask, info = resize_pair(image, mask, 64, "letterbox")
    assert out.shape == out_mask.shape == (64, 64) and out.dtype == out_mask.dtype == np.uint8
    assert (info.new_w, info.new_h, info.pad_left, info.pad_top) == (64, 32, 0, 16)
    assert (out[:16] == 0).all() and (out[48:] == 0).all() and (out[16:48] == 200).all()
    assert set(np.unique(out_mask)) == {0, 1}
    ys, xs = np.nonzero(out_mask)
    # the ellipse is three times wider than tall before and after
    assert 2.5 < (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1) < 3.5
    assert info.scale_x == pytest.approx(info.scale_y, rel=0.02)


def test_stretch_fills_the_square() -> None:
    image = np.full((50, 80), 90, np.uint8)
    out, mask, info = resize_pair(image, blob(50, 80, 25, 40, 10, 10), 32, "stretch")
    assert out.shape == (32, 32) and (info.new_w, info.new_h, info.pad_left, info.pad_top) == (32, 32, 0, 0)
    assert (out == 90).all()  # no padding
    assert set(np.unique(mask)) <= {0, 1}


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
@pytest.mark.parametrize("shape", [(90, 140), (140, 90), (40, 30)])
def test_round_trip_back_to_original_size(mode: str, shape: tuple[int, int]) -> None:
    h, w = shape
    mask = blob(h, w, h * 0.45, w * 0.55, h * 0.2, w * 0.25)
    _, small, info = resize_pair(texture(2, h, w), mask, 64, mode)
    back = undo_resize(small, info)
    assert back.shape == (h, w) and back.dtype == np.uint8 and set(np.unique(back)) <= {0, 1}
    assert _iou(back.astype(bool), mask) > 0.9
    probs = undo_resize(small.astype(np.float32), info)
    assert probs.dtype == np.float32 and probs.shape == (h, w) and 0.0 <= probs.min() <= probs.max() <= 1.0
    bools = undo_resize(small.astype(bool), info)
    assert bools.dtype == bool and _iou(bools, mask) > 0.9
    stacked = undo_resize(np.stack([small, small]), info)
    assert stacked.shape == (2, h, w)


def test_tiny_lesion_survives_downscaling() -> None:
    mask = np.zeros((400, 400), bool)
    mask[200:203, 200:203] = True
    _, small, _ = resize_pair(np.zeros((400, 400), np.uint8), mask, 32, "letterbox")
    assert small.sum() >= 1


def test_same_size_is_identity_and_errors() -> None:
    image = texture(3, 32, 32)
    out, info = resize_image(image, 32, "letterbox")
    assert (out == image).all() and info == ResizeInfo(32, 32, 32, "letterbox", 32, 32, 0, 0)
    with pytest.raises(ValueError, match="stretch, letterbox"):
        resize_image(image, 16, "crop")
    with pytest.raises(ValueError, match="mask shape"):
        resize_pair(image, np.zeros((3, 3), bool), 16)
    with pytest.raises(ValueError, match="expected"):
        undo_resize(np.zeros((8, 8)), info)
    assert ResizeInfo.compute(100, 50, 64, "letterbox").to_dict()["pad_top"] == 16
