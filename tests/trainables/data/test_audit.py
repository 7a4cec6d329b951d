"""The audit report: its exact JSON contract, each kind of problem, and the usable verdict."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.trainables.data.conftest import make_folder, texture, write_image, write_mask
from trainables.data.audit import audit_folder, format_audit, format_report, run_audit
from trainables.data.errors import DataError

KEYS = [
    "root",
    "images",
    "classes",
    "multi_mask_images",
    "orphan_masks",
    "missing_masks",
    "unreadable",
    "size_mismatch",
    "ignored_files",
    "duplicate_groups",
    "cross_class_duplicates",
    "conflicting_labels",
    "sixteen_bit_images",
    "image_size",
]


def test_clean_folder_report_contract(busi_dir: Path) -> None:
    write_image(busi_dir / "malignant" / "malignant (3).png", texture(77, 60, 90))  # another size
    write_mask(busi_dir / "malignant" / "malignant (3)_mask.png", np.zeros((60, 90), bool))
    audit = run_audit(busi_dir)
    report = audit.report
    assert list(report) == KEYS
    assert report["root"] == str(busi_dir)
    assert report["images"] == 8 and report["classes"] == {"normal": 2, "benign": 3, "malignant": 3}
    assert report["image_size"] == {"min": [56, 48], "median": [56, 48], "max": [90, 60]}
    for key in KEYS[3:13]:
        assert report[key] == [], key
    assert audit.usable and audit.groups.tolist() == list(range(8))
    assert format_report(report).splitlines()[-1] == "usable"


def test_every_kind_of_finding(busi_dir: Path) -> None:
    shutil.copy(busi_dir / "benign" / "benign (1).png", busi_dir / "malignant" / "zz copy.png")  # cross-class
    shutil.copy(busi_dir / "benign" / "benign (1)_mask.png", busi_dir / "malignant" / "zz copy_mask.png")
    write_mask(busi_dir / "benign" / "benign (2)_mask_1.png", np.zeros((48, 56), bool))
    write_mask(busi_dir / "normal" / "lost_mask.png", np.zeros((48, 56), bool))
    (busi_dir / "normal" / ".DS_Store").write_bytes(b"x")
    write_image(busi_dir / "normal" / "no mask.png", texture(50))
    report = audit_folder(busi_dir, missing_mask="empty")
    assert report["images"] == 10
    assert report["multi_mask_images"] == ["benign/benign (2).png"]
    assert report["orphan_masks"] == ["normal/lost_mask.png"]
    assert report["missing_masks"] == ["normal/no mask.png"]
    assert report["ignored_files"] == ["normal/.DS_Store"]
    assert report["duplicate_groups"] == [["benign/benign (1).png", "malignant/zz copy.png"]]
    assert report["cross_class_duplicates"] == report["duplicate_groups"]
    assert report["conflicting_labels"] == ["benign/benign (1).png", "malignant/zz copy.png"]
    assert "conflicting labels" in format_report(report)
    assert run_audit(busi_dir, missing_mask="empty").usable
    strict = run_audit(busi_dir)  # missing_mask=error
    assert (
        not strict.usable and "without a mask" in strict.problems[0] and "no mask.png" in strict.problems[0]
    )
    assert run_audit(busi_dir, missing_mask="skip").usable


def test_unreadable_and_mismatched_files_make_it_unusable(busi_dir: Path) -> None:
    data = (busi_dir / "benign" / "benign (1).png").read_bytes()
    (busi_dir / "benign" / "benign (1).png").write_bytes(data[: len(data) // 2])
    (busi_dir / "malignant" / "malignant (1)_mask.png").write_bytes(b"")
    write_mask(busi_dir / "normal" / "normal (1)_mask.png", np.zeros((30, 30), bool))  # smaller: not fixable
    audit = run_audit(busi_dir)
    report = audit.report
    assert [u["path"] for u in report["unreadable"]] == [
        "benign/benign (1).png",
        "malignant/malignant (1)_mask.png",
    ]
    assert "0 bytes" in report["unreadable"][1]["error"]
    assert report["size_mismatch"] == [
        {"image": "normal/normal (1).png", "mask": "normal/normal (1)_mask.png"}
    ]
    assert not audit.usable
    text = "\n".join(audit.problems)
    assert (
        "2 unreadable" in text
        and "normal/normal (1)_mask.png is 30x30 but normal/normal (1).png is 56x48" in text
    )
    rendered = format_audit(audit)
    assert "NOT USABLE" in rendered and "cannot be aligned" in rendered


def test_larger_mask_with_lesion_inside_centre_is_repaired(busi_dir: Path) -> None:
    big = np.zeros((60, 70), bool)
    big[25:30, 30:35] = True  # inside the centred 56x48 window
    write_mask(busi_dir / "benign" / "benign (1)_mask_1.png", big)
    audit = run_audit(busi_dir)
    assert audit.report["size_mismatch"] == [
        {"image": "benign/benign (1).png", "mask": "benign/benign (1)_mask_1.png"}
    ]
    assert audit.usable
    assert "centre-cropped to fit" in format_audit(audit)
    big[0, 0] = True
    write_mask(busi_dir / "benign" / "benign (1)_mask_1.png", big)
    assert not run_audit(busi_dir).usable


def test_process_runs_once_per_good_record(busi_dir: Path) -> None:
    (busi_dir / "benign" / "benign (2).png").write_bytes(b"broken")
    seen: dict[int, tuple] = {}

    def process(i: int, gray: np.ndarray, mask: np.ndarray) -> int:
        seen[i] = (gray.shape, mask.dtype, int(mask.sum()))
        return i * 10

    audit = run_audit(busi_dir, process=process, workers=2)
    assert sorted(seen) == [0, 1, 2, 4, 5, 6, 7]
    assert all(shape == (48, 56) and dtype is np.dtype(bool) for shape, dtype, _ in seen.values())
    assert seen[0][2] == 0 and seen[2][2] > 0  # normal: empty mask, benign: lesion
    assert [f.result for f in audit.inspections] == [0, 10, 20, None, 40, 50, 60, 70]


def test_sixteen_bit_images_are_listed_with_their_depth(busi_dir: Path) -> None:
    twelve = (texture(11).astype(np.uint16) * 16).astype(np.uint16)  # 12-bit values, max ~4000
    Image.fromarray(twelve).save(busi_dir / "benign" / "benign (1).png")
    Image.fromarray((texture(12).astype(np.uint16) * 257).astype(np.uint16)).save(
        busi_dir / "malignant" / "malignant (2).png"
    )
    seen: dict[int, int] = {}
    audit = run_audit(busi_dir, process=lambda i, gray, mask: seen.setdefault(i, int(gray.max())))
    assert audit.report["sixteen_bit_images"] == [
        {"path": "benign/benign (1).png", "bits": 12},
        {"path": "malignant/malignant (2).png", "bits": 16},
    ]
    assert seen[2] == round(int(twelve.max()) * 255 / 4095) > 200  # not nearly black (old: max 16)
    text = format_audit(audit)
    assert "16-bit images" in text and "several depths: 12, 16 bits" in text
    assert "benign/benign (1).png: 12 bits" in text and audit.usable


def test_decode_limit_makes_a_file_unreadable(busi_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUS_MAX_PIXELS", str(48 * 56 - 1))
    audit = run_audit(busi_dir)
    assert len(audit.report["unreadable"]) == 16 and not audit.usable
    assert "56x48 pixels" in audit.report["unreadable"][0]["error"] and "BUS_MAX_PIXELS" in audit.problems[0]


def test_names_with_newlines_are_printed_with_repr(busi_dir: Path) -> None:
    benign = busi_dir / "benign"
    shutil.copy(benign / "benign (1).png", benign / "two\nlines.png")
    for mask in ("two\nlines_mask.png", "two\nlines_mask_1.png"):
        shutil.copy(benign / "benign (1)_mask.png", benign / mask)
    (busi_dir / "normal" / "odd\tnote.txt").write_text("x")
    audit = run_audit(busi_dir)
    assert audit.report["multi_mask_images"] == ["benign/two\nlines.png"]
    assert audit.report["duplicate_groups"] == [["benign/benign (1).png", "benign/two\nlines.png"]]
    text = format_audit(audit)
    assert "    'benign/two\\nlines.png'\n" in text  # one line, quoted
    assert "benign/benign (1).png = 'benign/two\\nlines.png'" in text
    assert "    'normal/odd\\tnote.txt'\n" in text
    assert "two\nlines" not in text and "\t" not in text


def test_folder_level_problems_raise(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", (1, 1, 1))
    shutil.rmtree(root / "normal")
    with pytest.raises(DataError, match="missing class folder"):
        audit_folder(root)
