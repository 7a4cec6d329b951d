"""The data of a run (trainables/data/run_data.py): dataset + splits, checked against the run's files."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.trainables.data.conftest import make_folder
from trainables.data.config import DataConfig
from trainables.data.errors import DataError
from trainables.data.run_data import DataChangedError, data_summary, load_run_data


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataConfig:
    monkeypatch.setenv("BUS_CACHE_DIR", str(tmp_path / "cache"))
    root = make_folder(tmp_path / "d", (6, 9, 7))
    return DataConfig(root=str(root), image_size=32, folds=2, seed=5)


def test_new_splits_are_made_from_the_seed_and_a_saved_split_is_used_as_given(cfg: DataConfig) -> None:
    dataset, splits = load_run_data(cfg, progress=False)
    assert splits["seed"] == 5 and len(splits["folds"]) == 2 and splits["fingerprint"] == dataset.fingerprint
    saved = copy.deepcopy(splits)
    saved["folds"] = saved["folds"][::-1]  # another valid split than the seed gives: kept, not remade
    assert load_run_data(cfg, saved, dataset.fingerprint, progress=False)[1] == saved


def test_other_images_than_the_run_recorded_are_refused_with_the_callers_hint(cfg: DataConfig) -> None:
    with pytest.raises(DataChangedError, match=r"differs from the data the run used.*resume with the same"):
        load_run_data(cfg, fingerprint="0123abcd", hint="resume with the same --data", progress=False)


def test_a_saved_split_that_does_not_fit_the_images_is_refused(cfg: DataConfig) -> None:
    _, splits = load_run_data(cfg, progress=False)
    broken = copy.deepcopy(splits)
    broken["test"] = [*broken["test"], "benign/not-there.png"]
    with pytest.raises(DataError):
        load_run_data(cfg, broken, progress=False)


def test_data_summary_is_json_and_says_what_was_trained_on(cfg: DataConfig) -> None:
    dataset, _ = load_run_data(cfg, progress=False)
    summary = json.loads(json.dumps(data_summary(dataset)))  # plain JSON, nothing str()-ed
    assert summary["fingerprint"] == dataset.fingerprint and summary["n_images"] == 22
    assert summary["class_counts"] == [6, 9, 7] and summary["image_size"] == 32
