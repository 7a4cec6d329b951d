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
from analysis.refit import (
    RefitError,
    choose,
    fold_weights,
    load_data,
    load_fold_models,
    refit_spec,
    run_refit,
)
from analysis.results import load_results
from analysis.selection import choose_trial, refit_epochs
from trainables.data.run_data import DataChangedError
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
    # the trial was scored at a later epoch whose checkpoint is gone: the report says what was used
    assert report["scored_epoch"] > 1 and report["weights_are_scored"] is False
    assert [w["weights_epoch"] for w in report["weights"]] == [1, 1]
    assert (ens / "fold0.safetensors").is_file() and (ens / "fold1.safetensors").is_file()
    assert not (ens / "model.safetensors").exists()


def test_ensemble_folds_loads_the_weights_of_the_scored_epoch(data_exp: Path) -> None:
    """Checkpoints of epochs 1 and 2 on disk and the trial scored at epoch 1: the fold models are epoch
    1's, not the newest checkpoint's; scored at an epoch that is not on disk, the newest is loaded and
    the record says so."""
    import torch

    from trainables.loop import CrossValLoop

    chosen = choose(data_exp)
    assert chosen.scored_epoch == build_leaderboard(load_results(data_exp)).iloc[0]["best_epoch"]
    dataset, split, _ = load_data(chosen)
    loop = CrossValLoop(chosen.spec, dataset, split, "cpu")
    assert chosen.trial_dir is not None
    for name in ("checkpoint_000010", "checkpoint_000011"):
        loop.step()
        (chosen.trial_dir / name).mkdir()
        torch.save(loop.state_dict(), chosen.trial_dir / name / "loop.pt")
    epoch1 = torch.load(chosen.trial_dir / "checkpoint_000010" / "loop.pt", weights_only=True)

    chosen.scored_epoch = 1
    models, info = load_fold_models(chosen, dataset, split, "cpu")
    assert info["checkpoint_epoch"] == 1 and info["weights_are_scored"] is True
    assert info["checkpoint"] == "train_trial_abc12_00000/checkpoint_000010/loop.pt"
    for model, saved in zip(models, epoch1["folds"], strict=True):
        assert all(torch.equal(v, saved["model"][k]) for k, v in model.state_dict().items())

    chosen.scored_epoch = 3
    _, info = load_fold_models(chosen, dataset, split, "cpu")
    assert info["checkpoint_epoch"] == 2 and info["weights_are_scored"] is False
    assert info["weights"] == [
        {"fold": k, "weights_epoch": 2, "scored_epoch": None, "exact": False} for k in range(2)
    ]


def test_fold_weights_follow_stopped_folds() -> None:
    """A fold stopped at epoch 2 holds epoch 2's weights in every later checkpoint, so they are the
    scored ones for any scored epoch from 2 on; a live fold's are the checkpoint epoch's."""
    history = [{"epoch": e, "fold0/stopped": float(e >= 2), "fold1/stopped": 0.0} for e in (1, 2, 3)]
    state = {"epoch": 3, "history": history, "folds": [{}, {}]}
    assert fold_weights(state, 2) == [
        {"fold": 0, "weights_epoch": 2, "scored_epoch": 2, "exact": True},
        {"fold": 1, "weights_epoch": 3, "scored_epoch": 2, "exact": False},
    ]
    assert all(w["exact"] for w in fold_weights(state, 3))
    assert [w["scored_epoch"] for w in fold_weights(state, 1)] == [1, 1]


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


def test_refit_spec_keeps_the_cv_schedule() -> None:
    """The refit trains N epochs inside the CV's LR schedule (the weights the CV scored at epoch N), unless
    told to anneal over N, or N reaches past the CV's schedule."""
    from tests.trainables.test_loop import tiny_spec

    spec = tiny_spec(epochs=100, patience=5)
    refit = refit_spec(spec, 62)
    assert (refit.train.epochs, refit.train.schedule_epochs, refit.train.patience) == (62, 100, None)
    assert refit_spec(spec, 62, full_schedule=True).train.schedule_epochs is None
    assert refit_spec(spec, 100).train.schedule_epochs is None
    assert refit_spec(spec, 120).train.schedule_epochs is None
    assert refit_spec(tiny_spec(epochs=40, schedule_epochs=150), 62).train.schedule_epochs == 150
    assert refit.model == spec.model and refit.data == spec.data


def test_refit_refuses_data_that_differs_from_the_search(data_exp: Path, tmp_path: Path) -> None:
    data = json.loads((data_exp / "data.json").read_text(encoding="utf-8"))
    data["fingerprint"] = "0" * 16
    (data_exp / "data.json").write_text(json.dumps(data), encoding="utf-8")
    chosen = choose(data_exp)
    with pytest.raises(DataChangedError, match=r"differs from the data the run used.*pass --data"):
        load_data(chosen)
    with pytest.raises(DataChangedError):
        run_refit(chosen, tmp_path / "out", epochs=1)
    assert not (tmp_path / "out").exists()


def test_refit_from_a_train_run_uses_its_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``launch.py train`` then ``refit RUN_DIR --epochs auto``: the run's spec and split files, its best
    common epoch, outputs under RUN_DIR/refit; --trial makes no sense there."""
    from tests.trainables.test_loop import tiny_spec
    from trainables.train import run_train

    run = tmp_path / "run"
    summary = run_train(tiny_spec(epochs=2), run, device="cpu", progress=False)
    chosen = choose(run)
    assert chosen.exp_dir == run and chosen.trial_id is None
    assert chosen.auto_epochs == summary["best_epoch"] == chosen.scored_epoch
    assert chosen.splits == json.loads((run / "splits.json").read_text(encoding="utf-8"))
    assert chosen.spec == load_spec(run / "spec.yaml")
    with pytest.raises(RefitError, match="one train run"):
        choose(run, trial="abc")

    assert launch.main(["refit", str(run), "--epochs", "auto", "--device", "cpu"]) == 0
    report = _report(run / "refit")
    assert report["epochs"] == summary["best_epoch"] and report["kind"] == "refit"
    assert report["schedule_epochs"] == 2  # the CV's schedule span, whichever epoch was best
    assert {r["path"] for r in report["per_image"]} == set(chosen.splits["test"])
    assert "dice_benign" in report["metrics"] and "dice_malignant" in report["metrics"]
    assert (run / "test_evaluations.jsonl").is_file()


def test_a_learning_curve_run_trains_on_its_fraction_and_its_refit_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``data.train_fraction``: the run's splits.json holds the thinned training lists the loop trained on;
    a refit trains on every development image and warns that the CV did not."""
    from tests.trainables.test_loop import tiny_spec_dict
    from trainables.spec import spec_from_dict
    from trainables.train import run_train

    d = tiny_spec_dict(epochs=1)
    d["data"]["train_fraction"] = 0.5
    run = tmp_path / "run"
    run_train(spec_from_dict(d), run, device="cpu", progress=False)
    splits = json.loads((run / "splits.json").read_text(encoding="utf-8"))
    assert splits["train_fraction"] == 0.5
    dev = {p for fold in splits["folds"] for p in fold["val"]}  # every dev image is in one val fold
    for fold in splits["folds"]:
        assert 0 < len(fold["train"]) < len(dev - set(fold["val"]))
    capsys.readouterr()
    assert launch.main(["refit", str(run), "--epochs", "1", "--device", "cpu"]) == 0
    assert "CV trained on 0.5 of each fold's training images" in capsys.readouterr().err
    assert _report(run / "refit")["dev_images"] == len(dev)
    assert load_spec(run / "refit" / "spec.yaml").data.train_fraction == 1.0  # what the refit trained on
