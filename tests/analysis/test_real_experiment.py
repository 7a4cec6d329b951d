"""Analysis of a real experiment folder: a tiny Optuna + ASHA search run by `launch.py search` in a
subprocess (its own local Ray), then `analyze` and `refit --ensemble-folds` on what it left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import launch
from analysis.results import load_results
from tests.search.helpers import write_spec
from trainables.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SEARCH = {
    "name": "real",
    "search": {
        "algorithm": "optuna",
        "num_samples": 4,
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "space": {"model.decoder": {"choice": ["unet", "fpn"]}, "train.lr": {"loguniform": [5.0e-4, 3.0e-3]}},
    },
    "train": {"epochs": 2},
    "failure": {"max_failures": 0},
}


@pytest.fixture(scope="module")
def real_exp(tmp_path_factory: pytest.TempPathFactory, _private_cache_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("real-search")
    spec = write_spec(folder, SEARCH)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_DEDUP_LOGS": "0"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "search", str(spec), "--storage", str(folder / "runs")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return folder / "runs" / "real"


@pytest.mark.slow
def test_analyze_a_real_search(real_exp: Path) -> None:
    results = load_results(real_exp)
    assert len(results.trials) == 4
    assert set(results.trials["status"]) <= {"completed", "scheduler_stopped"}
    assert results.param_names == ["model.decoder", "train.lr"]

    assert launch.main(["analyze", str(real_exp)]) == 0
    out = real_exp / "analysis"
    board = pd.read_csv(out / "leaderboard.csv")
    scores = list(board["score"])
    assert scores == sorted(scores, reverse=True)  # val/score_best -> ranked by the CV mean of score
    for row in board.itertuples():
        frame = results.epochs[results.epochs["trial_id"] == row.trial_id]
        assert row.score == pytest.approx(frame["val/score"].max())
    best = load_spec(out / "best_config.yaml")
    chosen = json.loads((out / "analysis.json").read_text(encoding="utf-8"))
    params = results.params[chosen["trial_id"]]
    assert best.model.decoder == params["model.decoder"] and best.train.lr == pytest.approx(
        params["train.lr"]
    )
    assert best.data.image_size == 32 and best.train.epochs == 2
    assert (out / "report.md").is_file() and len(list((out / "plots").glob("*.png"))) >= 5


@pytest.mark.slow
def test_ensemble_of_a_real_trials_fold_models(real_exp: Path) -> None:
    assert launch.main(["refit", str(real_exp), "--ensemble-folds", "--out", str(real_exp / "ens")]) == 0
    report = json.loads((real_exp / "ens" / "test_report.json").read_text(encoding="utf-8"))
    assert report["kind"] == "ensemble_folds" and report["folds"] == 2 and report["checkpoint_epoch"] >= 1
