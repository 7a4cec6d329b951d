"""`launch.py predict`: single image and folder, bad files, bad bundles, --gpu, --tta, determinism."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import launch
from analysis.predict import Predictor, consistency_flag, forward_probs, list_images


def _image(path: Path, w: int, h: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), mode="L").save(path)
    return path


def test_single_image(tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    img = _image(tmp_path / "in" / "scan.png", 90, 50)
    viz = tmp_path / "viz.png"
    code = launch.main(
        [
            "predict",
            "--model",
            str(tiny_bundle),
            "--image",
            str(img),
            "--out",
            str(viz),
            "--out-dir",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.index("normal") < printed.index("benign") < printed.index("malignant")  # class order
    assert "->" in printed and str(viz) in printed
    with Image.open(tmp_path / "o" / "scan_mask.png") as mask:
        assert mask.size == (90, 50)  # the original size: the letterbox was undone
        assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 255}
    with Image.open(viz) as v:
        assert v.size == (1100, 500) and viz.stat().st_size > 10_000


def test_single_image_mask_goes_beside_out_and_never_over_ground_truth(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "busi").mkdir()
    img = _image(tmp_path / "busi" / "benign (1).png", 64, 64)
    truth = img.with_name("benign (1)_mask.png")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(truth)
    before = truth.read_bytes()
    code = launch.main(
        ["predict", "--model", str(tiny_bundle), "--image", str(img), "--out", str(img.with_name("v.png"))]
    )
    assert code == 2 and "pass --out-dir" in capsys.readouterr().err
    assert truth.read_bytes() == before  # the expert mask is untouched
    viz = tmp_path / "out" / "v.png"
    assert launch.main(["predict", "--model", str(tiny_bundle), "--image", str(img), "--out", str(viz)]) == 0
    assert (tmp_path / "out" / "benign (1)_mask.png").is_file()


def test_same_image_twice_gives_identical_output(tiny_bundle: Path, tmp_path: Path) -> None:
    predictor = Predictor(tiny_bundle, "cpu")
    gray = np.asarray(Image.open(_image(tmp_path / "a.png", 70, 64)))
    a, b = predictor.predict_gray(gray), predictor.predict_gray(gray.copy())
    assert np.array_equal(a.probs, b.probs) and np.array_equal(a.prob_map, b.prob_map)
    assert a.prob_map.shape == (64, 70) and np.isclose(a.probs.sum(), 1.0)


def test_tta_averages_the_flipped_prediction(tiny_bundle: Path) -> None:
    predictor = Predictor(tiny_bundle, "cpu")
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    seg, cls = forward_probs([predictor.model], x, tta=True, amp="off")  # float32, like the reference
    with torch.inference_mode():
        s0, c0 = predictor.model(x)
        s1, c1 = predictor.model(torch.flip(x, dims=[-1]))
    expected_seg = (torch.sigmoid(s0) + torch.flip(torch.sigmoid(s1), dims=[-1])) / 2
    expected_cls = (torch.softmax(c0, 1) + torch.softmax(c1, 1)) / 2
    assert torch.allclose(seg, expected_seg, atol=1e-6) and torch.allclose(cls, expected_cls, atol=1e-6)
    # an image symmetric under the flip gets a symmetric lesion map with TTA
    sym = torch.cat([x[..., :32], torch.flip(x[..., :32], dims=[-1])], dim=-1)
    seg_sym, _ = forward_probs([predictor.model], sym, tta=True, amp="off")
    assert torch.allclose(seg_sym, torch.flip(seg_sym, dims=[-1]), atol=1e-6)


def test_folder_with_a_corrupt_file(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    _image(src / "a.png", 64, 64)
    _image(src / "sub" / "b.jpg", 80, 60, seed=1)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(src / "a_mask.png")  # a mask: left out
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "notes.txt").write_text("ignored", encoding="utf-8")
    out = tmp_path / "out"
    code = launch.main(
        ["predict", "--model", str(tiny_bundle), "--input-dir", str(src), "--out-dir", str(out), "--tta"]
    )
    assert code == 1  # some failed, the rest went on
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "2 image(s) predicted" in captured.out
    with (out / "predictions.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == ["a.png", "sub/b.jpg"]
    for r in rows:
        probs = [float(r[f"prob_{c}"]) for c in ("normal", "benign", "malignant")]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert r["predicted_class"] in ("normal", "benign", "malignant") and int(r["lesion_area_px"]) >= 0
        assert r["flag"] == consistency_flag(
            r["predicted_class"], int(r["lesion_area_px"]), 10, ("normal", "benign", "malignant")
        )
        assert (out / r["mask"]).is_file() and (out / r["overlay"]).is_file()
    with Image.open(out / "masks" / "sub" / "b_mask.png") as m:
        assert m.size == (80, 60)
    failures = (out / "failures.csv").read_text(encoding="utf-8")
    assert "broken.png" in failures


def test_unreadable_paths_exit_2(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert launch.main(["predict", "--model", str(tiny_bundle), "--image", str(tmp_path / "nope.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert (
        launch.main(
            [
                "predict",
                "--model",
                str(tiny_bundle),
                "--input-dir",
                str(tmp_path / "nodir"),
                "--out-dir",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "not a folder" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    assert launch.main(["predict", "--model", str(tiny_bundle), "--image", str(bad)]) == 2
    assert "empty file" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"not a model at all", None])
def test_non_bundle_model_is_refused(
    tmp_path: Path, content: bytes | None, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.safetensors"
    if content is None:  # a real safetensors file, but not a bundle
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, str(model))
    else:
        model.write_bytes(content)
    img = _image(tmp_path / "x.png", 64, 64)
    assert launch.main(["predict", "--model", str(model), "--image", str(img)]) == 2
    err = capsys.readouterr().err
    assert "not a model bundle" in err or "not a readable safetensors file" in err
    assert (
        launch.main(["predict", "--model", str(tmp_path / "missing.safetensors"), "--image", str(img)]) == 2
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_gpu_alias_fails_clearly_without_cuda(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = _image(tmp_path / "x.png", 64, 64)
    assert launch.main(["predict", "--model", str(tiny_bundle), "--image", str(img), "--gpu"]) == 2
    err = capsys.readouterr().err
    assert "--gpu" in err and "CUDA is not available" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_prediction_matches_the_cpu(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], precision_probe: Callable
) -> None:
    precision_probe(1.0, 0.5)  # the CPU side in bf16 like the GPU's (fp32 vs bf16 differ by up to 2e-3)
    gray = np.asarray(Image.open(_image(tmp_path / "a.png", 90, 70)))
    cpu, gpu = (
        Predictor(tiny_bundle, "cpu").predict_gray(gray),
        Predictor(tiny_bundle, "cuda").predict_gray(gray),
    )
    assert next(Predictor(tiny_bundle, "cuda").model.parameters()).device.type == "cuda"
    assert np.allclose(cpu.probs, gpu.probs, atol=1e-4)
    assert np.abs(cpu.prob_map - gpu.prob_map).max() < 1e-3
    (tmp_path / "in").mkdir()
    img = _image(tmp_path / "in" / "x.png", 64, 64)
    out = tmp_path / "x_overlay.png"  # outside the input's folder (issue 14's guard)
    assert (
        launch.main(["predict", "--model", str(tiny_bundle), "--image", str(img), "--gpu", "--out", str(out)])
        == 0
    )
    assert out.exists()


def test_folder_needs_out_dir_and_lists_images(tmp_path: Path, tiny_bundle: Path) -> None:
    assert launch.main(["predict", "--model", str(tiny_bundle), "--input-dir", str(tmp_path)]) == 2
    _image(tmp_path / "x (1).PNG", 32, 32)
    _image(tmp_path / "x (1)_mask_1.png", 32, 32)
    images, masks = list_images(tmp_path)
    assert [p.name for p in images] == ["x (1).PNG"] and [p.name for p in masks] == ["x (1)_mask_1.png"]
