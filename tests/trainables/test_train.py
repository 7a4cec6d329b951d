"""``run_train`` / ``launch.py train``: output files, refusal rules, Ctrl-C + resume, W&B, and learning."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.trainables.test_loop import tiny_spec, tiny_spec_dict
from trainables.commands import default_out_dir
from trainables.loop import CrossValLoop
from trainables.schema import SpecError
from trainables.spec import load_spec, spec_from_dict
from trainables.train import TrainError, apply_sweep_params, run_train

ROOT = Path(__file__).resolve().parents[2]


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _launch(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "launch.py", "train", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _write_spec(path: Path, **train: Any) -> Path:
    path.write_text(yaml.safe_dump(tiny_spec_dict(**train)))
    return path


def test_run_train_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = run_train(tiny_spec(epochs=2), out, device="cpu", progress=False)
    for name in (
        "spec.yaml",
        "splits.json",
        "data.json",
        "epochs.csv",
        "summary.json",
        "state.pt",
        "learning_curves.png",
    ):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp"))
    assert load_spec(out / "spec.yaml") == tiny_spec(epochs=2)
    rows = _csv(out / "epochs.csv")
    assert [(r["epoch"], r["fold"]) for r in rows] == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]
    for r in rows:
        for key in ("train/loss", "val/dice", "val/hd95", "val/macro_f1", "val/auc", "val/score", "lr"):
            assert math.isfinite(float(r[key])), key
        assert float(r["time_this_epoch_s"]) > 0 and float(r["samples_per_s"]) > 0
    saved = json.loads((out / "summary.json").read_text())
    assert saved["best_epoch"] in (1, 2) and saved["best_epoch"] == summary["best_epoch"]
    for metric in ("dice", "macro_f1", "score", "hd95"):
        assert math.isfinite(saved["cv"][metric]["mean"]) and math.isfinite(saved["cv"][metric]["std"])
    assert [f["fold"] for f in saved["folds"]] == [0, 1]
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and len(state["folds"]) == 2
    splits = json.loads((out / "splits.json").read_text())
    assert len(splits["folds"]) == 2
    for k in range(2):
        from model_zoo import load_bundle

        _, meta = load_bundle(out / f"fold{k}_best.safetensors")
        assert meta["fold"] == k and meta["epoch"] == saved["folds"][k]["best_epoch"]


def test_out_dir_rules(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(TrainError, match=r"not empty.*--resume"):
        run_train(tiny_spec(epochs=1), used, device="cpu", progress=False)
    assert (used / "notes.txt").read_text() == "mine"
    with pytest.raises(TrainError, match=r"no state\.pt"):
        run_train(tiny_spec(epochs=1), used, device="cpu", resume=True, progress=False)


def test_interrupt_then_resume_equals_a_straight_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight = tmp_path / "straight"
    run_train(tiny_spec(epochs=3), straight, device="cpu", progress=False)

    real_step = CrossValLoop.step
    calls = {"n": 0}

    def interrupted(self: CrossValLoop, *args: Any, **kwargs: Any) -> dict:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    out = tmp_path / "resumed"
    monkeypatch.setattr(CrossValLoop, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_train(tiny_spec(epochs=3), out, device="cpu", progress=False)
    monkeypatch.setattr(CrossValLoop, "step", real_step)
    assert torch.load(out / "state.pt", weights_only=True)["epoch"] == 1
    assert len(_csv(out / "epochs.csv")) == 2

    with pytest.raises(TrainError, match=r"train\.epochs: 3 -> 4"):
        run_train(tiny_spec(epochs=4), out, device="cpu", resume=True, progress=False)
    run_train(tiny_spec(epochs=3), out, device="cpu", resume=True, progress=False)
    a, b = _csv(straight / "epochs.csv"), _csv(out / "epochs.csv")
    assert len(a) == len(b) == 6
    for ra, rb in zip(a, b):
        for key in ra:
            if key.startswith("time") or key == "samples_per_s":
                continue
            assert float(ra[key]) == pytest.approx(float(rb[key]), abs=1e-6, rel=0), key


def test_sweep_parameters_become_validated_overrides() -> None:
    spec = tiny_spec()
    new = apply_sweep_params(spec, {"train.lr": 0.01, "model": {"cls_head": {"dropout": 0.5}}, "_wandb": {}})
    assert new.train.lr == 0.01 and new.model.cls_head.dropout == 0.5
    assert new.train.epochs == spec.train.epochs
    assert apply_sweep_params(spec, {}) is spec
    with pytest.raises(SpecError, match=r"train\.lrr: unknown key, did you mean train\.lr\b"):
        apply_sweep_params(spec, {"train.lrr": 0.01})
    with pytest.raises(SpecError, match=r"train\.lr: expected a positive number"):
        apply_sweep_params(spec, {"train.lr": "fast"})


def test_default_out_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tiny_spec()
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    assert default_out_dir(spec, wandb=True) == Path("runs/train/tiny")
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw1")
    monkeypatch.setenv("WANDB_RUN_ID", "r2")
    assert default_out_dir(spec, wandb=True) == Path("runs/train/tiny/sw1-r2")
    assert default_out_dir(spec, wandb=False) == Path("runs/train/tiny")


@pytest.mark.slow
def test_wandb_offline_run_logs_every_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    run_train(tiny_spec(epochs=2), out, device="cpu", wandb=True, progress=False)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = list(runs[0].glob("*.wandb"))
    assert files and files[0].stat().st_size > 0
    assert (out / "summary.json").is_file()


QUICK = ("--set", "data.synthetic.n_per_class=[10,12,10]", "--set", "train.batch_size=8")


@pytest.mark.slow
def test_launch_train_quickstart_end_to_end(tmp_path: Path) -> None:
    spec = ROOT / "spaces" / "quickstart_train.yaml"
    out = tmp_path / "run"
    proc = _launch(str(spec), "--out", str(out), "--device", "cpu", *QUICK, "--set", "train.epochs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 2/2" in proc.stderr and "CV at best epoch" in proc.stderr
    assert load_spec(out / "spec.yaml").train.epochs == 2
    folds = load_spec(spec).data.folds
    rows = _csv(out / "epochs.csv")
    assert len(rows) == 2 * folds
    for r in rows:
        for key in (
            "train/loss",
            "val/dice",
            "val/iou",
            "val/hd95",
            "val/nsd",
            "val/auc",
            "val/macro_f1",
            "val/score",
        ):
            assert math.isfinite(float(r[key])), key
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["folds"]) == folds
    for metric in ("dice", "macro_f1", "score"):
        assert math.isfinite(summary["cv"][metric]["mean"]), metric
    assert torch.load(out / "state.pt", weights_only=True)["epoch"] == 2

    again = _launch(str(spec), "--out", str(out), "--device", "cpu", *QUICK, "--set", "train.epochs=2")
    assert again.returncode == 2 and "not empty" in again.stderr
    changed = _launch(str(spec), "--out", str(out), "--device", "cpu", "--resume", *QUICK)
    assert changed.returncode == 2 and "train.epochs: 2 -> 8" in changed.stderr
    bad = _launch(str(spec), "--out", str(tmp_path / "x"), "--set", "train.lr=fast")
    assert bad.returncode == 2 and "train.lr: expected a positive number" in bad.stderr
    if not torch.cuda.is_available():
        cuda = _launch(str(spec), "--out", str(tmp_path / "y"), "--device", "cuda")
        assert cuda.returncode == 2 and "CUDA is not available" in cuda.stderr
        assert not (tmp_path / "y").exists()


@pytest.mark.slow
def test_ctrl_c_saves_state_and_exits_130(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path / "tiny.yaml", epochs=200)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "train", str(spec), "--out", str(out), "--device", "cpu"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (out / "epochs.csv").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "continue with --resume" in err
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["epoch"] >= 1 and len(_csv(out / "epochs.csv")) == 2 * state["epoch"]


@pytest.mark.slow
def test_learns_on_the_synthetic_set(tmp_path: Path) -> None:
    """At 64 px, a few epochs give CV Dice and macro-F1 clearly above chance (figures in the README)."""
    spec = spec_from_dict(
        {
            "name": "learn",
            "data": {"image_size": 64, "folds": 3},
            "model": {
                "encoder": "resnet18",
                "encoder_weights": None,
                "decoder_options": {"decoder_channels": [64, 32, 16, 16, 8]},
            },
            "train": {"epochs": 8, "batch_size": 8, "lr": 2e-3, "warmup_epochs": 1, "seed": 0},
        }
    )
    start = time.perf_counter()
    summary = run_train(spec, tmp_path / "run", device="cpu", progress=False)
    took = time.perf_counter() - start
    cv = summary["cv"]
    print(
        f"learning test: {took:.0f} s, best epoch {summary['best_epoch']}: dice {cv['dice']['mean']:.3f} "
        f"± {cv['dice']['std']:.3f}, macro_f1 {cv['macro_f1']['mean']:.3f} ± {cv['macro_f1']['std']:.3f}, "
        f"auc {cv['auc']['mean']:.3f}"
    )
    assert cv["dice"]["mean"] > 0.5
    assert cv["macro_f1"]["mean"] > 0.5
