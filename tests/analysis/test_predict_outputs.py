"""`launch.py predict` never destroys or pollutes its inputs (ground-truth masks, the images, the input
folder), gives every input its own output files, keeps the rows of an interrupted folder run, and draws
overlays of a huge image at a capped size while writing its mask at full size."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import launch
from analysis.predict import (
    Predictor,
    fit_for_display,
    is_own_output,
    output_stems,
    predict_folder,
    save_mask,
)


def _image(path: Path, w: int, h: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), mode="L").save(path)
    return path


def _busi_case(root: Path) -> tuple[Path, Path, bytes]:
    """``root/benign/benign (1).png`` with its expert mask; returns (image, mask, mask bytes)."""
    img = _image(root / "benign" / "benign (1).png", 64, 48)
    truth = img.with_name("benign (1)_mask.png")
    Image.fromarray(np.full((48, 64), 255, np.uint8)).save(truth)
    return img, truth, truth.read_bytes()


def _predict(bundle: Path, *args: str) -> int:
    return launch.main(["predict", "--model", str(bundle), *args])


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_out_dir_at_a_class_folder_keeps_the_ground_truth(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img, truth, before = _busi_case(tmp_path / "busi")
    listing = sorted(p.name for p in img.parent.iterdir())
    assert _predict(tiny_bundle, "--image", str(img), "--out-dir", str(img.parent)) == 2
    err = capsys.readouterr().err
    assert "into the input folder" in err and "--force" in err
    assert truth.read_bytes() == before
    assert sorted(p.name for p in img.parent.iterdir()) == listing  # no _viz.png left for the audit
    # --force writes there, replacing the mask (the user asked for it)
    assert _predict(tiny_bundle, "--image", str(img), "--out-dir", str(img.parent), "--force") == 0
    assert is_own_output(truth)


def test_out_never_replaces_a_foreign_mask_or_the_input(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img, _, _ = _busi_case(tmp_path / "busi")
    other = tmp_path / "other" / "case (3)_mask.png"  # another set's ground truth
    other.parent.mkdir()
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(other)
    other_bytes, img_bytes = other.read_bytes(), img.read_bytes()
    out_dir = str(tmp_path / "preds")
    assert _predict(tiny_bundle, "--image", str(img), "--out", str(other), "--out-dir", out_dir) == 2
    assert "existing mask(s) that predict did not write" in capsys.readouterr().err
    assert other.read_bytes() == other_bytes
    for extra in ([], ["--force"]):  # the input itself: never, not even with --force
        assert (
            _predict(tiny_bundle, "--image", str(img), "--out", str(img), "--out-dir", out_dir, *extra) == 2
        )
        assert "would overwrite input file(s)" in capsys.readouterr().err
        assert img.read_bytes() == img_bytes
    # an earlier prediction of predict's own is replaced without --force
    viz = tmp_path / "preds" / "v.png"
    assert _predict(tiny_bundle, "--image", str(img), "--out", str(viz)) == 0
    assert _predict(tiny_bundle, "--image", str(img), "--out", str(viz)) == 0
    assert is_own_output(tmp_path / "preds" / "benign (1)_mask.png") and is_own_output(viz)


def test_folder_out_dir_inside_the_input(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    _image(src / "a.png", 64, 64)
    _image(src / "sub" / "b.png", 40, 50, seed=1)
    out = src / "pred"
    assert _predict(tiny_bundle, "--input-dir", str(src), "--out-dir", str(out)) == 2
    assert "inside --input-dir" in capsys.readouterr().err and not out.exists()
    for _ in range(2):  # the second run does not predict the first run's overlays and masks
        assert _predict(tiny_bundle, "--input-dir", str(src), "--out-dir", str(out), "--force") == 0
        assert [r["path"] for r in _rows(out / "predictions.csv")] == ["a.png", "sub/b.png"]
    # the input folder itself as the output: its masks/ and overlays/ are left out of the input
    assert _predict(tiny_bundle, "--input-dir", str(src), "--out-dir", str(src), "--force") == 0
    assert _predict(tiny_bundle, "--input-dir", str(src), "--out-dir", str(src), "--force") == 0
    paths = [r["path"] for r in _rows(src / "predictions.csv")]
    assert paths == ["a.png", "pred/overlays/a_overlay.png", "pred/overlays/sub/b_overlay.png", "sub/b.png"]


def test_folder_refuses_to_overwrite_foreign_masks(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _image(tmp_path / "in" / "a.png", 64, 64)
    foreign = tmp_path / "out" / "masks" / "a_mask.png"
    foreign.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(foreign)
    before = foreign.read_bytes()
    args = ["--input-dir", str(tmp_path / "in"), "--out-dir", str(tmp_path / "out")]
    assert _predict(tiny_bundle, *args) == 2
    assert "a_mask.png" in capsys.readouterr().err and foreign.read_bytes() == before
    assert not (tmp_path / "out" / "predictions.csv").exists()
    assert _predict(tiny_bundle, *args, "--force") == 0 and is_own_output(foreign)
    assert _predict(tiny_bundle, *args) == 0  # now it is predict's own: a rerun replaces it


def test_same_stem_different_extension_get_their_own_files(tiny_bundle: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _image(src / "x.png", 64, 40)
    _image(src / "x.jpg", 50, 70, seed=1)
    _image(src / "y.png", 30, 30, seed=2)
    out = tmp_path / "out"
    assert _predict(tiny_bundle, "--input-dir", str(src), "--out-dir", str(out)) == 0
    rows = {r["path"]: r for r in _rows(out / "predictions.csv")}
    assert rows["x.jpg"]["mask"] == "masks/x_jpg_mask.png" and rows["x.png"]["mask"] == "masks/x_png_mask.png"
    assert rows["y.png"]["mask"] == "masks/y_mask.png"
    assert len({r["mask"] for r in rows.values()}) == 3 and len({r["overlay"] for r in rows.values()}) == 3
    for path, size in (("x.png", (64, 40)), ("x.jpg", (50, 70)), ("y.png", (30, 30))):
        with Image.open(out / rows[path]["mask"]) as m:
            assert m.size == size  # each row's mask is its own image's


def test_output_stems_are_unique_on_any_file_system() -> None:
    rels = [Path(p) for p in ("X.png", "a/x.png", "x.jpg", "x.png", "x_png.png", "x_png.tif")]
    stems = [s.as_posix() for s in output_stems(rels)]
    assert len({s.casefold() for s in stems}) == len(stems)
    assert stems[1] == "a/x"  # another folder: no clash, its own stem


def test_interrupted_folder_run_keeps_its_rows(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "in"
    for i in range(4):
        _image(src / f"{i}.png", 32, 32, seed=i)
    predictor = Predictor(tiny_bundle, "cpu")
    real = predictor.predict_file
    done: list[str] = []

    def flaky(path: str | Path) -> object:
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(str(path))
        return real(path)

    monkeypatch.setattr(predictor, "predict_file", flaky)
    with pytest.raises(KeyboardInterrupt):
        predict_folder(predictor, src, tmp_path / "out", progress=False)
    rows = _rows(tmp_path / "out" / "predictions.csv")
    assert [r["path"] for r in rows] == ["0.png", "1.png"]
    assert all((tmp_path / "out" / r["mask"]).is_file() for r in rows)


def test_huge_image_overlay_is_capped_mask_is_full_size(tiny_bundle: Path, tmp_path: Path) -> None:
    _image(tmp_path / "in" / "big.png", 2600, 1300)
    out = tmp_path / "out"
    assert _predict(tiny_bundle, "--input-dir", str(tmp_path / "in"), "--out-dir", str(out)) == 0
    with (
        Image.open(out / "masks" / "big_mask.png") as m,
        Image.open(out / "overlays" / "big_overlay.png") as o,
    ):
        assert m.size == (2600, 1300) and o.size == (1024, 512)
    args = [
        "--input-dir",
        str(tmp_path / "in"),
        "--out-dir",
        str(tmp_path / "full"),
        "--overlay-max-side",
        "0",
    ]
    assert _predict(tiny_bundle, *args) == 0
    with Image.open(tmp_path / "full" / "overlays" / "big_overlay.png") as o:
        assert o.size == (2600, 1300)


def test_display_shrink_keeps_a_one_pixel_lesion() -> None:
    gray = np.zeros((3000, 2000), np.uint8)
    mask = np.zeros((3000, 2000), bool)
    mask[1234, 567] = True
    probs = mask.astype(np.float32)
    small, p, m = fit_for_display(gray, probs, mask, 1000)
    assert small.shape == p.shape == m.shape == (1000, 667) and m.sum() >= 1 and p.max() > 0
    assert fit_for_display(gray[:10, :10], None, None, 1000)[0].shape == (10, 10)


def test_own_masks_are_tagged(tmp_path: Path) -> None:
    ours = save_mask(np.ones((4, 4), bool), tmp_path / "a_mask.png")
    Image.fromarray(np.ones((4, 4), np.uint8)).save(tmp_path / "b_mask.png")
    assert is_own_output(ours) and not is_own_output(tmp_path / "b_mask.png")
    assert not is_own_output(tmp_path / "missing.png")
