"""``augment-preview``: a spec's augmentation drawn on its development images, never the test part."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analysis.augment_preview import augment_preview, preview_rows
from model_zoo.errors import UserError
from trainables.spec import spec_from_dict

ROOT = Path(__file__).resolve().parents[2]
SPEC = {
    "name": "tinyaug",
    "data": {"image_size": 32, "folds": 2, "synthetic": {"n_per_class": [6, 8, 6], "size": 48}},
    "model": {"encoder": "tu-test_efficientnet", "encoder_weights": None},
    "train": {"augment": {"rotate": 20.0, "lesion_paste": 1.0}},
}


def test_preview_rows_take_each_class_from_the_candidates_only() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    candidates = np.array([0, 1, 3, 5, 6, 7, 8])  # 2, 4 and 9 are "test"
    rows = preview_rows(labels, candidates, per_class=2, seed=0)
    assert set(rows) <= set(candidates)
    assert [int((labels[rows] == k).sum()) for k in (0, 1, 2)] == [2, 1, 2]  # class 1 has one candidate
    assert list(labels[rows]) == sorted(labels[rows])  # class by class
    assert np.array_equal(rows, preview_rows(labels, candidates, per_class=2, seed=0))
    with pytest.raises(UserError, match="per-class"):
        preview_rows(labels, candidates, per_class=0, seed=0)


def test_preview_draws_development_images_of_every_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import analysis.augment_preview as module
    from trainables.data.splits import split_indices

    seen = {}
    real = module.preview_rows

    def spy(labels: np.ndarray, candidates: np.ndarray, per_class: int, seed: int) -> np.ndarray:
        seen["rows"] = real(labels, candidates, per_class, seed)
        return seen["rows"]

    monkeypatch.setattr(module, "preview_rows", spy)
    spec = spec_from_dict(SPEC)
    out = augment_preview(spec, tmp_path / "p.png", per_class=2, draws=2, progress=False)
    from trainables.data.run_data import load_run_data

    dataset, splits = load_run_data(spec.data, progress=False)
    parts = split_indices(splits, dataset)
    assert not set(seen["rows"]) & set(parts.test) and set(seen["rows"]) <= set(parts.dev)
    assert sorted(set(dataset.labels[seen["rows"]])) == [0, 1, 2]
    width, height = Image.open(out).size
    assert width > height  # 6 columns (2 per class)
    one_draw = augment_preview(spec, tmp_path / "one.png", per_class=2, draws=1, progress=False)
    assert Image.open(one_draw).size[1] < height  # one row fewer: as loaded + 1 draw
    with pytest.raises(UserError, match="draws"):
        augment_preview(spec, tmp_path / "q.png", draws=0, progress=False)


def test_cli_writes_the_figure_and_refuses_bad_counts(tmp_path: Path) -> None:
    import subprocess

    import yaml

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    out = tmp_path / "preview.png"
    cmd = [sys.executable, str(ROOT / "launch.py"), "augment-preview", str(spec), "--out", str(out)]
    done = subprocess.run(
        [*cmd, "--per-class", "1", "--set", "train.augment.rotate=0"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file() and f"figure: {out}" in done.stdout
    bad = subprocess.run([*cmd, "--draws", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "draws" in bad.stderr
