"""``launch.py pipeline spaces/thesis.yaml --smoke`` end to end with Ray, on the synthetic set and on the
real BUSI subset: the stages chain, inherit, are analysed, the final winner is refit and its bundle
predicts held-out images; a repeated command skips everything; a changed spec is refused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.pipeline.helpers import THESIS

SMOKE_BUDGET_S = 15 * 60  # the bound for the synthetic smoke run on 2 CPU cores
STAGES = ["stage1_encoders", "stage2_decoders", "stage3_attention", "stage4_imbalance", "final"]


def _pipeline(storage: Path, data: Path | None = None) -> int:
    """``launch.py pipeline THESIS --smoke --storage STORAGE [--data DATA]``; its exit status, and Ray
    must not be left running by it."""
    import ray

    import launch

    argv = ["pipeline", str(THESIS), "--smoke", "--storage", str(storage)]
    status = launch.main([*argv, "--data", str(data)] if data else argv)
    assert not ray.is_initialized(), "the pipeline left Ray running"
    return status


def _check_chain(folder: Path) -> dict[str, Any]:
    state = json.loads((folder / "pipeline.json").read_text(encoding="utf-8"))
    stages = state["stages"]
    assert list(stages) == STAGES and all(stages[s]["status"] == "done" for s in STAGES)
    for name in STAGES[1:]:
        record = stages[name]
        source = stages[record["inherited_from"]]["winner"]["config"]
        assert record["inherited"] and all(source[k] == v for k, v in record["inherited"].items())
        saved = (folder / name / "spec.yaml").read_text(encoding="utf-8")
        assert (
            f"encoder: {record['inherited']['model.encoder']}" in saved
        )  # the search ran what was inherited
    assert stages["stage1_encoders"]["metric"] == "macro_f1"
    for name in STAGES:
        w = stages[name]["winner"]
        assert w["score"] is not None and (folder / name / "analysis" / "leaderboard.md").is_file()
        assert stages[name]["n_trials"] >= 2
    assert stages["stage4_imbalance"]["n_trials"] == 3 and stages["final"]["n_trials"] == 3
    refit = state["refit"]
    assert refit["status"] == "done" and refit["trial_id"] == stages["final"]["winner"]["trial_id"]
    assert refit["metrics"]["dice"]["ci95"][0] is not None and Path(refit["outputs"]["bundle"]).is_file()
    assert len(refit["examples"]) == 3 and {e["label"] for e in refit["examples"]} == {
        "normal",
        "benign",
        "malignant",
    }
    report = (folder / "pipeline_report.md").read_text(encoding="utf-8")
    assert "Does the data pick the thesis's architecture?" in report and "95% CI" in report
    assert "`tu-test_efficientnet` for `efficientnet-b0`" in report  # stage 1's stand-ins are named
    return state


@pytest.mark.slow
def test_smoke_pipeline_on_the_synthetic_set(
    tmp_path: Path, no_ray: None, capsys: pytest.CaptureFixture
) -> None:
    start = time.monotonic()
    assert _pipeline(tmp_path / "runs") == 0
    wall = time.monotonic() - start
    with capsys.disabled():
        print(f"smoke pipeline on the synthetic set: {wall:.0f} s")
    assert wall < SMOKE_BUDGET_S
    folder = tmp_path / "runs" / "thesis-smoke"
    state = _check_chain(folder)

    # The same command again: nothing is re-run, the report is rebuilt.
    capsys.readouterr()
    assert _pipeline(tmp_path / "runs") == 0
    again = json.loads((folder / "pipeline.json").read_text(encoding="utf-8"))
    assert {s: again["stages"][s]["finished"] for s in STAGES} == {
        s: state["stages"][s]["finished"] for s in STAGES
    }
    assert again["refit"]["finished"] == state["refit"]["finished"]
    assert "stage1_encoders: skip (done)" in capsys.readouterr().err

    # Other data changes every stage's spec: refused, nothing touched.
    other = tmp_path / "other"
    other.mkdir()
    assert _pipeline(tmp_path / "runs", data=other) == 2
    err = capsys.readouterr().err
    assert "stage stage1_encoders: its spec changed" in err and "data.root: null ->" in err
    assert "--rerun-stage stage1_encoders" in err


@pytest.mark.slow
def test_smoke_pipeline_on_real_busi(busi_subset: Path, tmp_path: Path, no_ray: None) -> None:
    from analysis.predict import Predictor

    start = time.monotonic()
    assert _pipeline(tmp_path / "runs", data=busi_subset) == 0
    print(f"smoke pipeline on the real BUSI subset: {time.monotonic() - start:.0f} s")
    state = _check_chain(tmp_path / "runs" / "thesis-smoke")
    assert state["data_root"] == str(busi_subset.resolve())
    # The delivered bundle predicts a held-out real image at its original size.
    refit = state["refit"]
    example = refit["examples"][0]
    predictor = Predictor(refit["outputs"]["bundle"], "cpu")
    pred, gray = predictor.predict_file(busi_subset / example["path"])
    assert pred.mask.shape == gray.shape and len(pred.probs) == 3
    assert pred.predicted == example["predicted"]
    splits = json.loads((tmp_path / "runs" / "thesis-smoke" / "final" / "splits.json").read_text())
    assert all(e["path"] in splits["test"] for e in refit["examples"])
