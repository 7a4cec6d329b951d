"""Scanning BUSI-format folders: names, cases, masks, orphans, ignored files, policies, fingerprints."""

from __future__ import annotations

import os
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from tests.trainables.data.conftest import make_folder, texture, write_image, write_mask
from trainables.data.errors import DataError
from trainables.data.scan import data_fingerprint, scan_folder


def test_basic_layout(busi_dir: Path) -> None:
    scan = scan_folder(busi_dir)
    assert scan.classes == ("normal", "benign", "malignant")
    assert scan.class_counts == {"normal": 2, "benign": 3, "malignant": 3}
    assert [r.label for r in scan.records] == [0, 0, 1, 1, 1, 2, 2, 2]
    first = scan.records[0]
    assert first.path == "normal/normal (1).png" and first.mask_paths == ("normal/normal (1)_mask.png",)
    assert scan.orphan_masks == scan.missing_masks == scan.ignored_files == []


def test_names_cases_extensions_and_multi_masks(tmp_path: Path) -> None:
    root = tmp_path / "d"
    image, mask = texture(1, 20, 20), np.ones((20, 20), bool)
    names = {
        "Normal": ["n 1.PNG", "n (2).Jpg"],
        "BENIGN": ["bénin (3).tif", "乳腺 1.jpeg", "b.BMP", "b2.TIFF"],
        "malignant": ["m (1).png"],
    }
    for folder, files in names.items():
        for name in files:
            write_image(root / folder / name, image)
            write_mask(root / folder / f"{os.path.splitext(name)[0]}_mask.png", mask)
    write_mask(root / "malignant" / "m (1)_mask_2.png", mask)
    write_mask(root / "malignant" / "m (1)_mask_1.png", mask)
    write_mask(root / "malignant" / "m (1)_mask_10.png", mask)
    scan = scan_folder(root)
    assert scan.class_folders == {"normal": "Normal", "benign": "BENIGN", "malignant": "malignant"}
    paths = {r.path: r for r in scan.records}
    assert set(paths) == {f"{folder}/{n}" for folder, files in names.items() for n in files}
    assert paths["BENIGN/乳腺 1.jpeg"].mask_paths == ("BENIGN/乳腺 1_mask.png",)
    assert paths["malignant/m (1).png"].mask_paths == (
        "malignant/m (1)_mask.png",
        "malignant/m (1)_mask_1.png",
        "malignant/m (1)_mask_2.png",
        "malignant/m (1)_mask_10.png",
    )
    assert scan.multi_mask_images == ["malignant/m (1).png"]


def test_unicode_normalisation_and_case_of_mask_names(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", (1, 1, 1))
    nfc, nfd = unicodedata.normalize("NFC", "lésion"), unicodedata.normalize("NFD", "lésion")
    write_image(root / "benign" / f"{nfc}.png", texture(9, 20, 20))
    write_mask(root / "benign" / f"{nfd.upper()}_MASK.png", np.ones((20, 20), bool))  # macOS-style name
    scan = scan_folder(root)
    record = next(r for r in scan.records if r.path == f"benign/{nfc}.png")
    assert record.mask_paths == (f"benign/{nfd.upper()}_MASK.png",)


def test_names_with_newlines_match_their_masks(busi_dir: Path) -> None:
    image, mask = texture(3), np.ones((48, 56), bool)
    write_image(busi_dir / "benign" / "two\nlines.png", image)
    write_mask(busi_dir / "benign" / "two\nlines_mask.png", mask)
    write_mask(busi_dir / "benign" / "two\nlines_mask_1.png", mask)
    write_image(busi_dir / "benign" / "end\n.png", image)
    write_mask(busi_dir / "benign" / "end_mask\n.png", mask)  # stem ends in a newline, not "_mask": an image
    scan = scan_folder(busi_dir, missing_mask="empty")
    paths = {r.path: r.mask_paths for r in scan.records}
    assert paths["benign/two\nlines.png"] == ("benign/two\nlines_mask.png", "benign/two\nlines_mask_1.png")
    assert paths["benign/end\n.png"] == () and paths["benign/end_mask\n.png"] == ()
    assert "benign/two\nlines_mask.png" not in paths and scan.orphan_masks == []
    with pytest.raises(DataError, match=r"'benign/end\\n\.png'") as info:  # listed with repr: one line
        scan_folder(busi_dir)
    assert "end\n" not in str(info.value)


def test_orphans_hidden_and_non_image_files(busi_dir: Path) -> None:
    for name in (".DS_Store", "Thumbs.db", "notes.txt", "labels.csv", ".hidden.png"):
        (busi_dir / "benign" / name).write_bytes(b"x")
    (busi_dir / "README.md").write_text("x")
    (busi_dir / "extra").mkdir()
    (busi_dir / "benign" / "sub").mkdir()
    write_mask(busi_dir / "normal" / "ghost_mask.png", np.zeros((8, 8), bool))
    scan = scan_folder(busi_dir)
    assert scan.orphan_masks == ["normal/ghost_mask.png"]
    assert scan.ignored_files == sorted(
        [
            "README.md",
            "extra/",
            "benign/.DS_Store",
            "benign/.hidden.png",
            "benign/Thumbs.db",
            "benign/labels.csv",
            "benign/notes.txt",
            "benign/sub/",
        ]
    )
    assert all("ghost" not in r.path and "ghost" not in "".join(r.mask_paths) for r in scan.records)
    assert len(scan.records) == 8


def test_missing_mask_policies(busi_dir: Path) -> None:
    (busi_dir / "normal" / "normal (2)_mask.png").unlink()
    with pytest.raises(DataError, match=r"normal/normal \(2\)\.png.*missing_mask"):
        scan_folder(busi_dir)
    empty = scan_folder(busi_dir, missing_mask="empty")
    assert empty.missing_masks == ["normal/normal (2).png"]
    assert next(r for r in empty.records if r.path == "normal/normal (2).png").mask_paths == ()
    skip = scan_folder(busi_dir, missing_mask="skip")
    assert len(skip.records) == 7 and skip.missing_masks == ["normal/normal (2).png"]
    assert skip.class_counts["normal"] == 2  # files found, whatever the policy
    lenient = scan_folder(busi_dir, strict=False)
    assert len(lenient.records) == 8 and lenient.missing_masks == ["normal/normal (2).png"]
    with pytest.raises(DataError, match="error, empty, skip"):
        scan_folder(busi_dir, missing_mask="ignore")


def test_empty_class_and_missing_classes_are_clear_errors(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", (1, 1, 1))
    shutil.rmtree(root / "benign")
    (root / "benign").mkdir()
    (root / "benign" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"benign: class folder has no images.*notes\.txt"):
        scan_folder(root)
    other = tmp_path / "other"
    (other / "cats").mkdir(parents=True)
    (other / "dogs").mkdir()
    with pytest.raises(DataError, match=r"missing class folder\(s\) normal, benign, malignant.*cats/, dogs/"):
        scan_folder(other)
    with pytest.raises(DataError, match="not a folder"):
        scan_folder(tmp_path / "nowhere")


def test_ambiguous_folders_and_names(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", (1, 1, 1))
    write_image(root / "benign" / "benign (1).jpg", texture(5, 10, 10))
    with pytest.raises(DataError, match="share the name"):
        scan_folder(root)
    root2 = make_folder(tmp_path / "e", (1, 1, 1))
    (root2 / "Benign").mkdir()
    if (root2 / "benign").samefile(root2 / "Benign"):
        pytest.skip("case-insensitive file system")
    with pytest.raises(DataError, match="two folders match class 'benign'"):
        scan_folder(root2)


def test_custom_classes(busi_dir: Path) -> None:
    scan = scan_folder(busi_dir, classes=["malignant", "benign"])
    assert scan.classes == ("malignant", "benign") and scan.ignored_files == ["normal/"]
    assert {r.label for r in scan.records if r.class_name == "malignant"} == {0}
    with pytest.raises(DataError, match="names must differ"):
        scan_folder(busi_dir, classes=["benign", "Benign"])


def test_fingerprint_follows_content_not_location_or_mtime(busi_dir: Path, tmp_path: Path) -> None:
    base = data_fingerprint(scan_folder(busi_dir))
    copy = tmp_path / "copy"
    shutil.copytree(busi_dir, copy)
    os.utime(copy / "benign" / "benign (1).png", (1, 1))
    assert data_fingerprint(scan_folder(copy)) == base
    mask = copy / "benign" / "benign (1)_mask.png"
    write_mask(mask, np.ones((48, 56), bool))
    assert data_fingerprint(scan_folder(copy)) != base
    shutil.rmtree(copy)
    shutil.copytree(busi_dir, copy)
    os.rename(copy / "benign" / "benign (1).png", copy / "benign" / "benign (9).png")
    os.rename(copy / "benign" / "benign (1)_mask.png", copy / "benign" / "benign (9)_mask.png")
    assert data_fingerprint(scan_folder(copy)) != base
    assert data_fingerprint(scan_folder(busi_dir, classes=["normal", "malignant", "benign"])) != base
