"""The report's data section names the images left out for conflicting labels, never silently."""

from __future__ import annotations

from analysis.report import _data_section

AUDIT = {
    "duplicate_groups": [["benign/b (1).png", "malignant/m (2).png"]],
    "cross_class_duplicates": [["benign/b (1).png", "malignant/m (2).png"]],
    "conflicting_labels": ["benign/b (1).png", "malignant/m (2).png"],
}


def _text(audit: dict) -> str:
    return "\n".join(_data_section({"n_images": 10, "audit": audit}, {}))


def test_dropped_conflicting_images_are_listed() -> None:
    text = _text(AUDIT | {"conflicting_policy": "drop", "dropped_conflicting": AUDIT["conflicting_labels"]})
    assert "2 image(s) dropped" in text and "`benign/b (1).png`" in text and "`malignant/m (2).png`" in text


def test_kept_conflicting_images_are_listed_as_kept() -> None:
    text = _text(AUDIT | {"conflicting_policy": "keep", "dropped_conflicting": []})
    assert "kept (`data.conflicting_labels: keep`)" in text and "`malignant/m (2).png`" in text


def test_no_conflict_no_line() -> None:
    assert "conflicting" not in _text({"duplicate_groups": [], "cross_class_duplicates": []})
