"""Fixtures of the analysis tests: fake experiment folders (see fake_experiment.py), one backed by the
real synthetic dataset and split (for refit), and a tiny model bundle (for predict)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.analysis.fake_experiment import CLASSES, SPEC, write_fake_experiment

TINY_MODEL = {"encoder": "tu-test_efficientnet", "encoder_weights": None, "decoder": "unet"}


@pytest.fixture
def fake_exp(tmp_path: Path) -> Path:
    """An experiment folder as the search leaves it (8 trials: completed, ASHA-stopped, failed)."""
    return write_fake_experiment(tmp_path)


@pytest.fixture(scope="session")
def _data_exp_template(tmp_path_factory: pytest.TempPathFactory, _private_cache_dir: Path) -> Path:
    import torch

    from trainables.data.cache import load_dataset
    from trainables.data.splits import make_splits, split_indices
    from trainables.loop import CrossValLoop
    from trainables.spec import spec_from_dict

    spec = spec_from_dict({k: SPEC[k] for k in ("name", "data", "model", "train")})
    dataset = load_dataset(spec.data, progress=False)
    splits = make_splits(dataset, spec.data.folds, spec.data.test_fraction, spec.data.seed)
    exp = write_fake_experiment(tmp_path_factory.mktemp("data-exp"), splits=splits)
    data = json.loads((exp / "data.json").read_text(encoding="utf-8"))
    data["fingerprint"] = dataset.fingerprint
    (exp / "data.json").write_text(json.dumps(data), encoding="utf-8")
    # A real loop state in the best trial's newest checkpoint, for --ensemble-folds.
    best_spec = spec_from_dict(
        {**{k: SPEC[k] for k in ("name", "data", "model")}, "train": {**SPEC["train"], "epochs": 1}}
    )
    loop = CrossValLoop(best_spec, dataset, split_indices(splits, dataset), "cpu")
    loop.step()
    torch.save(loop.state_dict(), exp / "train_trial_abc12_00000" / "checkpoint_000003" / "loop.pt")
    return exp


@pytest.fixture
def data_exp(_data_exp_template: Path, tmp_path: Path) -> Path:
    """A fake experiment whose spec, split and fingerprint match the real synthetic set (a fresh copy)."""
    return Path(shutil.copytree(_data_exp_template, tmp_path / "exp"))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model saved as a bundle with letterbox preprocessing at 64 px."""
    import torch

    from model_zoo import build_model, save_bundle

    torch.manual_seed(0)
    model = build_model(TINY_MODEL, class_names=CLASSES)
    meta = {
        "class_names": list(CLASSES),
        "input_size": 64,
        "min_area": 10,
        "preprocessing": {"image_size": 64, "resize": "letterbox"},
    }
    return save_bundle(tmp_path_factory.mktemp("bundle") / "model.safetensors", model.eval(), meta)
