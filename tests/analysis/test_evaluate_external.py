"""`launch.py evaluate`: a bundle on a labelled folder (external validation): a clean folder of mixed
sizes and modes, a folder with a broken file, class folders that are not the bundle's, and (slow, real
data) a bundle refitted on the BUSI subset evaluated on all of BUSI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import launch
from analysis.predict import Predictor
from analysis.refit import choose, run_refit
from tests.analysis.conftest import TINY_MODEL
from tests.analysis.fake_experiment import SPEC
from tests.trainables.data.conftest import blob, make_folder, texture, write_image, write_mask
from trainables.spec import save_spec, spec_from_dict


@pytest.fixture
def bundle(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle: the evaluation log is written beside it."""
    return Path(shutil.copy(tiny_bundle, tmp_path / "model.safetensors"))


def _folder(root: Path) -> Path:
    """8 images at 56 x 48 (one class folder in other case), an RGB JPEG of another size, a 16-bit
    image with two lesion masks, a near copy of a normal image, and a stray file."""
    make_folder(root, {"normal": 2, "benign": 3, "Malignant": 3})
    write_image(root / "benign" / "wide.jpg", np.stack([texture(7, 70, 90)] * 3, axis=-1))
    write_mask(root / "benign" / "wide_mask.png", blob(70, 90, 35, 45, 12, 20))
    deep = texture(8, 60, 40).astype(np.uint16) * 257
    Image.fromarray(deep).save(root / "Malignant" / "deep.png")
    write_mask(root / "Malignant" / "deep_mask.png", blob(60, 40, 20, 20, 6, 8))
    write_mask(root / "Malignant" / "deep_mask_1.png", blob(60, 40, 42, 20, 6, 8))
    near = np.asarray(Image.open(root / "normal" / "normal (1).png")).astype(int) + 5
    write_image(root / "normal" / "copy.png", np.clip(near, 0, 255).astype(np.uint8))
    write_mask(root / "normal" / "copy_mask.png", np.zeros((48, 56), bool))
    (root / "notes.txt").write_text("not an image", encoding="utf-8")
    return root


def test_evaluate_a_clean_folder(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _folder(tmp_path / "external")
    args = ["evaluate", "--model", str(bundle), "--data", str(data), "--device", "cpu", "--n-boot", "30"]
    assert launch.main(args) == 0
    out, err = capsys.readouterr()
    for name in ("dice ", "dice_orig", "hd95_orig", "nsd_orig", "auc", "macro_f1", "recall_malignant"):
        assert name in out, name
    assert "near-identical" in err and "notes.txt" in err  # the audit's warnings

    folder = tmp_path / "evaluations" / "model-external"
    report = json.loads((folder / "test_report.json").read_text(encoding="utf-8"))
    assert report["kind"] == "external" and report["tta"] is False and report["n_images"] == 11
    assert report["n_per_class"] == [3, 4, 4] and report["bootstrap"]["n_groups"] == 10
    rows = {r["path"]: r for r in report["per_image"]}
    assert rows["benign/wide.jpg"]["original_size"] == [90, 70]  # RGB JPEG of another size
    assert rows["Malignant/deep.png"]["original_size"] == [40, 60]  # 16-bit, two masks, folder in caps
    assert rows["Malignant/deep.png"]["label"] == "malignant"
    predictor = Predictor(bundle, "cpu")  # the original-size figures score the masks predict writes
    for path in ("benign/wide.jpg", "Malignant/deep.png", "normal/copy.png"):
        area = predictor.predict_file(data / path)[0].area_px  # batch vs single image: float noise aside
        assert abs(rows[path]["lesion_area_px_orig"] - area) <= 1, path
    for name in ("dice", "hd95", "dice_orig", "iou_orig", "hd95_orig", "nsd_orig", "dice_benign", "auc"):
        metric = report["metrics"][name]
        assert metric["value"] is not None and len(metric["ci95"]) == 2, name
    assert report["confusion"] and sum(map(sum, report["confusion"])) == 11
    assert any("near-identical" in w for w in report["warnings"])
    markdown = (folder / "test_report.md").read_text(encoding="utf-8")
    assert "## Segmentation at the original image size" in markdown and "## Warnings" in markdown
    for name in ("confusion_matrix.png", "roc.png", "gallery.png"):
        assert (folder / name).stat().st_size > 5_000, name

    # one line per run in the log beside the bundle; a second run goes to a new folder
    assert launch.main([*args, "--tta"]) == 0
    second = json.loads((tmp_path / "evaluations" / "model-external-2" / "test_report.json").read_text())
    assert second["tta"] is True
    log = [json.loads(line) for line in (tmp_path / "model.evaluations.jsonl").read_text().splitlines()]
    assert len(log) == 2 and log[0]["n_images"] == 11
    assert log[0]["data_fingerprint"] == report["data_fingerprint"] and log[0]["data_root"] == str(data)
    assert "--tta" in log[1]["command"] and set(log[0]["metrics"]) >= {"dice", "hd95_orig", "auc"}
    assert launch.main(["evaluate", "--model", str(bundle), "--data", str(data), "--out", str(folder)]) == 2
    assert "already holds" in capsys.readouterr().err


def test_evaluate_refuses_a_folder_with_a_broken_file(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_folder(tmp_path / "external")
    (data / "benign" / "benign (7).png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_mask(data / "benign" / "benign (7)_mask.png", np.zeros((48, 56), bool))
    assert launch.main(["evaluate", "--model", str(bundle), "--data", str(data), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "cannot be used" in err and "benign/benign (7).png" in err
    assert not (tmp_path / "evaluations").exists() and not (tmp_path / "model.evaluations.jsonl").exists()


def test_evaluate_refuses_classes_that_differ_from_the_bundle(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_folder(tmp_path / "external", {"benign": 2, "malignant": 2, "cyst": 2})
    (data / "empty").mkdir()  # a folder without images is no class: ignored
    assert launch.main(["evaluate", "--model", str(bundle), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "differ from the bundle's classes (normal, benign, malignant)" in err
    assert "no folder for normal" in err and "cyst is not a class of the bundle" in err
    assert launch.main(["evaluate", "--model", str(bundle), "--data", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_a_refit_bundle_on_busi(
    busi_subset: Path, busi: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {k: SPEC[k] for k in ("name", "data", "model", "train")}
    spec["data"] = {**spec["data"], "root": str(busi_subset), "test_fraction": 0.2}
    spec["model"] = {**TINY_MODEL, "decoder_options": {"decoder_channels": [16, 8, 8, 4, 4]}}  # fast
    spec["train"] = {**spec["train"], "epochs": 1, "batch_size": 16}
    path = save_spec(spec_from_dict(spec), tmp_path / "spec.yaml")
    refit = run_refit(choose(path), tmp_path / "refit", epochs=1, device="cpu", n_boot=20, progress=False)
    assert refit["metrics"]["hd95_orig"]["value"] is not None  # the refit's test report, at original size too
    assert (tmp_path / "refit" / "test_report.md").is_file()

    args = ["evaluate", "--model", refit["outputs"]["bundle"], "--data", str(busi), "--device", "cpu"]
    assert launch.main([*args, "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "refit" / "evaluations" / "model-busi" / "test_report.json").read_text())
    dropped = report["audit"].get("dropped_conflicting") or []  # near copies filed under two classes
    assert report["n_images"] + len(dropped) == 658 and report["bootstrap"]["n_groups"] < report["n_images"]
    assert f"{report['n_images']} images ({report['n_per_class'][0]} normal" in out
    assert any("span classes" in w for w in report["warnings"])  # BUSI has cross-class near copies
    for name in ("dice_orig", "hd95_orig", "nsd_orig", "dice_benign", "dice_malignant", "auc"):
        lo, hi = report["metrics"][name]["ci95"]
        assert lo is not None and lo <= hi, name
    assert len((tmp_path / "refit" / "model.evaluations.jsonl").read_text().splitlines()) == 1
