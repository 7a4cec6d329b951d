"""`launch.py refit`: train on all development images of the synthetic set at 64 px with a tiny encoder,
evaluate once on the test part, write a bundle that predict takes; the fold ensemble; the test-set log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import launch
from analysis.leaderboard import build_leaderboard
from analysis.predict import Predictor
from analysis.refit import RefitError, choose, load_data, run_refit
from analysis.results import load_results
from analysis.selection import choose_trial, refit_epochs
from trainables.spec import load_spec


def _report(out: Path) -> dict:
    return json.loads((out / "test_report.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_refit_from_experiment_then_predict(data_exp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert launch.main(["refit", str(data_exp), "--epochs", "1", "--device", "cpu"]) == 0
    out = data_exp / "refit"
    for name in (
        "model.safetensors",
        "test_report.json",
        "spec.yaml",
        "refit_history.csv",
        "confusion_matrix.png",
        "roc.png",
        "gallery.png",
    ):
        assert (out / name).is_file(), name
    report = _report(out)
    splits = json.loads((data_exp / "splits.json").read_text(encoding="utf-8"))
    assert report["kind"] == "refit" and report["trial_id"] == "abc12_00000" and report["epochs"] == 1
    assert report["n_images"] == len(splits["test"]) and report["previous_evaluations_of_this_test_set"] == 0
    assert report["dev_images"] == sum(len(f["val"]) for f in splits["folds"])  # every fold's train + val
    assert {r["path"] for r in report["per_image"]} == set(splits["test"])
    for name in ("dice", "iou", "hd95", "nsd", "auc", "macro_f1", "balanced_acc", "recall_malignant"):
        m = report["metrics"][name]
        assert m["value"] is not None and len(m["ci95"]) == 2, name
    assert load_spec(out / "spec.yaml").train.epochs == 1
    assert "model bundle:" in capsys.readouterr().out

    # the bundle is what predict takes, with the refit's preprocessing
    predictor = Predictor(out / "model.safetensors", "cpu")
    assert predictor.image_size == 64 and predictor.resize == "letterbox"
    assert predictor.class_names == ("normal", "benign", "malignant")
    assert predictor.meta["source"]["trial_id"] == "abc12_00000"
    pred = predictor.predict_gray(np.full((50, 80), 120, np.uint8))
    assert pred.mask.shape == (50, 80)

    # a second look at the same test set is recorded and warned about; outputs are never overwritten
    assert launch.main(["refit", str(data_exp), "--epochs", "1", "--device", "cpu"]) == 2
    assert "already holds" in capsys.readouterr().err
    assert launch.main(["refit", str(data_exp), "--epochs", "1", "--out", str(data_exp / "refit2")]) == 0
    assert "has been evaluated 1 time(s) before" in capsys.readouterr().err
    log = (data_exp / "test_evaluations.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(log) == 2 and _report(data_exp / "refit2")["previous_evaluations_of_this_test_set"] == 1


@pytest.mark.slow
def test_refit_from_best_config_and_ensemble(data_exp: Path, tmp_path: Path) -> None:
    assert launch.main(["analyze", str(data_exp)]) == 0
    best = data_exp / "analysis" / "best_config.yaml"
    out = tmp_path / "from_spec"
    assert launch.main(["refit", str(best), "--epochs", "1", "--out", str(out)]) == 0
    report = _report(out)
    assert report["experiment"] is None and report["epochs"] == 1
    assert (out / "test_evaluations.jsonl").is_file()  # no experiment folder: logged beside the outputs

    assert launch.main(["refit", str(data_exp), "--ensemble-folds"]) == 0
    ens = data_exp / "ensemble"
    report = _report(ens)
    assert report["kind"] == "ensemble_folds" and report["folds"] == 2 and report["checkpoint_epoch"] == 1
    assert (ens / "fold0.safetensors").is_file() and (ens / "fold1.safetensors").is_file()
    assert not (ens / "model.safetensors").exists()


def test_auto_epochs_and_source_errors(data_exp: Path, tmp_path: Path) -> None:
    chosen = choose(data_exp)
    row = choose_trial(build_leaderboard(load_results(data_exp)))
    assert chosen.trial_id == "abc12_00000" and chosen.auto_epochs == refit_epochs(row)
    assert chosen.spec.train.lr == pytest.approx(1e-3)
    assert choose(data_exp, trial="abc12_00006").spec.model.decoder == "fpn"
    assert choose(data_exp, where=["model.encoder=tu-test_resnet"]).trial_id == "abc12_00001"
    with pytest.raises(RefitError, match="neither an experiment folder nor a spec file"):
        choose(tmp_path / "nothing")
    assert launch.main(["refit", str(data_exp), "--epochs", "zero"]) == 2
    assert launch.main(["refit", str(data_exp), "--trial", "nope"]) == 2


def test_refit_refuses_data_that_differs_from_the_search(data_exp: Path, tmp_path: Path) -> None:
    data = json.loads((data_exp / "data.json").read_text(encoding="utf-8"))
    data["fingerprint"] = "0" * 16
    (data_exp / "data.json").write_text(json.dumps(data), encoding="utf-8")
    chosen = choose(data_exp)
    with pytest.raises(RefitError, match="differs from the data the search used"):
        load_data(chosen)
    with pytest.raises(RefitError):
        run_refit(chosen, tmp_path / "out", epochs=1)
    assert not (tmp_path / "out").exists()
