"""`launch.py analyze`: every output file, --where, the report's contents, the W&B summary run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import launch
from analysis.commands import analyze
from tests.analysis.fake_experiment import SPEC, FakeTrial, write_fake_experiment
from tests.search.wandb_records import read_run
from trainables.spec import load_spec


def test_analyze_writes_everything(fake_exp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert launch.main(["analyze", str(fake_exp)]) == 0
    out = fake_exp / "analysis"
    for name in (
        "trials.csv",
        "leaderboard.csv",
        "leaderboard.md",
        "best_config.yaml",
        "report.md",
        "analysis.json",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    # learning curves, 3 x score by choice, parallel coordinates, importance, intermediate values, folds
    assert len(list((out / "plots").glob("*.png"))) == 8
    printed = capsys.readouterr().out
    assert "best trial: abc12_00000" in printed and str(out / "report.md") in printed
    assert printed.index("abc12_00000") < printed.index("abc12_00006")  # printed in leaderboard order
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 25 and {"model.encoder", "val/dice", "fold0/val/dice", "status"} <= set(
        trials.columns
    )
    load_spec(out / "best_config.yaml")  # valid as `train` reads it


def test_report_contents(fake_exp: Path) -> None:
    result = analyze(fake_exp, wandb=False)
    text = result.report.read_text(encoding="utf-8")
    for section in (
        "## Data",
        "## Split protocol",
        "## Search",
        "## Leaderboard",
        "## Figures",
        "## Chosen configuration",
        "## Reproduce",
    ):
        assert section in text, section
    assert "fake0123456789abcdef" in text  # data fingerprint
    assert "Git commit of the code: `" in text and "torch " in text and "train.seed 0" in text
    assert '`model.latent_aug.sigma` | uniform [0.01, 0.2] | model.latent_aug.mode in ["noise"]' in text
    for link in [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]:
        assert (result.out_dir / link).is_file(), link
    assert "```yaml\n# best trial: abc12_00000" in text


def test_report_tells_time_budget_stops_from_the_schedulers(tmp_path: Path) -> None:
    search = {**SPEC["search"], "scheduler": {"type": "asha", "grace_period": 4, "reduction_factor": 3}}
    spec = {**SPEC, "train": {**SPEC["train"], "epochs": 18}, "search": {**search, "time_budget": "75m"}}
    trials = [
        FakeTrial({"model.encoder": enc, "train.lr": 1e-4 * (i + 1)}, e, quality=0.3 + 0.1 * i)
        for i, (e, enc) in enumerate(
            [(18, "tu-test_resnet"), (4, "tu-test_efficientnet"), (8, "tu-test_resnet")]
        )
    ]
    exp = write_fake_experiment(tmp_path, trials=trials, spec=spec)
    text = analyze(exp, wandb=False).report.read_text(encoding="utf-8")
    counts = text.split("Trials: 3 (", 1)[1].split(")", 1)[0].split(", ")
    assert sorted(counts) == ["1 budget stopped", "1 completed", "1 scheduler stopped"]
    assert "- Time budget 75m: the trials it stopped are `budget stopped`" in text
    assert "| budget stopped |" in text  # the leaderboard's status column


def test_where_restricts_leaderboard_and_choice(fake_exp: Path, tmp_path: Path) -> None:
    assert (
        launch.main(
            [
                "analyze",
                str(fake_exp),
                "--out",
                str(tmp_path / "a"),
                "--where",
                "model.encoder=tu-test_resnet",
            ]
        )
        == 0
    )
    board = pd.read_csv(tmp_path / "a" / "leaderboard.csv")
    assert set(board["model.encoder"]) == {"tu-test_resnet"}
    chosen = json.loads((tmp_path / "a" / "analysis.json").read_text(encoding="utf-8"))
    assert chosen["trial_id"] == "abc12_00001" and chosen["where"] == ["model.encoder=tu-test_resnet"]
    assert load_spec(tmp_path / "a" / "best_config.yaml").model.encoder == "tu-test_resnet"


def test_bad_input_exits_2(tmp_path: Path, fake_exp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert launch.main(["analyze", str(tmp_path / "missing")]) == 2
    assert "experiment folder not found" in capsys.readouterr().err
    assert launch.main(["analyze", str(fake_exp), "--where", "model.encoder=nope"]) == 2
    assert "no trial matches" in capsys.readouterr().err


def test_wandb_summary_run_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.analysis.fake_experiment import SPEC, write_fake_experiment

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    exp = write_fake_experiment(tmp_path, spec={**SPEC, "wandb": {"mode": "offline", "project": "t"}})
    result = analyze(exp)
    assert result.wandb_dir is not None
    run_dir = Path(result.wandb_dir)
    assert run_dir.is_dir() and exp in run_dir.parents
    (run_file,) = run_dir.glob("*.wandb")
    run = read_run(run_file)
    assert run["group"] == exp.name and run["project"] == "t"
    assert run["config"]["chosen_trial"] == "abc12_00000"
    images = {p.name.rsplit("_", 2)[0] for p in (run_dir / "files" / "media" / "images").glob("*.png")}
    assert {"learning_curves", "fold_spread", "param_importance", "intermediate_values"} <= images
    assert list((run_dir / "files" / "media" / "table").glob("leaderboard_*.table.json"))
