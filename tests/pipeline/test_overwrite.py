"""The pipeline replaces under the same rules as ``search --overwrite``: ``--name`` is a folder name inside
the storage, and an outdated refit is kept aside until the new one is done (back if it fails)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import analysis.refit
import launch
import pipeline.run as P
from pipeline.config import load_pipeline
from pipeline.records import StageRecord
from pipeline.state import PipelineState
from tests.pipeline.helpers import stage_result, write_pipeline
from tests.pipeline.test_run import Fakes


@pytest.mark.parametrize("name", ["..", ".", "../elsewhere", "a/b"])
def test_pipeline_name_stays_inside_the_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    Fakes(monkeypatch)
    path = write_pipeline(tmp_path / "p")
    storage = tmp_path / "runs"
    storage.mkdir()
    assert launch.main(["pipeline", str(path), "--storage", str(storage), "--name", name]) == 2
    assert "is not a valid name" in capsys.readouterr().err
    assert not list(tmp_path.rglob("pipeline.json"))


OLD_REFIT = {"model.safetensors": "old bundle", "test_report.json": "{}", "examples/a_viz.png": "png"}


def _refit_setup(tmp_path: Path, recorded: str | None = None) -> tuple[Any, PipelineState, Path]:
    """A pipeline whose refit stage is done, with an earlier refit in its folder; ``recorded`` is the
    ``exp_dir`` in pipeline.json (default: the stage folder itself)."""
    pipeline = load_pipeline(write_pipeline(tmp_path / "p"))
    state = PipelineState(tmp_path / "runs" / "tiny")
    name = pipeline.config.refit_stage
    exp_dir = recorded or str(state.folder / name)
    state.stages[name] = StageRecord(
        status="done",
        own_hash="o",
        own_spec={},
        exp_dir=exp_dir,
        resolved_hash="h",
        result=stage_result("t1"),
    )
    out = state.folder / name / "refit"
    for rel, text in OLD_REFIT.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text, encoding="utf-8")
    return pipeline, state, out


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


class Chosen:
    trial_id = "t1"


def test_a_failed_refit_gives_the_old_one_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline, state, out = _refit_setup(tmp_path)

    def failing_refit(chosen: Any, out_dir: Path, *args: Any, **kwargs: Any) -> dict:
        (out_dir / "partial.csv").parent.mkdir(parents=True, exist_ok=True)
        (out_dir / "partial.csv").write_text("half", encoding="utf-8")
        raise RuntimeError("out of memory")

    monkeypatch.setattr(analysis.refit, "choose", lambda exp, metric=None: Chosen())
    monkeypatch.setattr(analysis.refit, "run_refit", failing_refit)
    with pytest.raises(RuntimeError, match="out of memory"):
        P.run_final_refit(pipeline, state, False, log=lambda m: None)
    assert _files(out) == OLD_REFIT and not list(out.parent.glob(".refit.replaced-*"))


def test_a_finished_refit_replaces_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline, state, out = _refit_setup(tmp_path, recorded="/moved/away")  # the pipeline folder was moved
    seen: dict[str, Any] = {}

    def refit(chosen: Any, out_dir: Path, *args: Any, **kwargs: Any) -> dict:
        seen["aside"] = [_files(p) for p in out.parent.glob(".refit.replaced-*")]
        out_dir.mkdir(parents=True)
        (out_dir / "model.safetensors").write_text("new bundle", encoding="utf-8")
        return {"outputs": {"bundle": str(out_dir / "model.safetensors")}, "metrics": {}}

    monkeypatch.setattr(analysis.refit, "choose", lambda exp, metric=None: Chosen())
    monkeypatch.setattr(analysis.refit, "run_refit", refit)
    monkeypatch.setattr(P, "predict_examples", lambda *args: [])
    P.run_final_refit(pipeline, state, False, log=lambda m: None)
    assert seen["aside"] == [OLD_REFIT]  # the stage's own folder, not the recorded /moved/away
    assert _files(out) == {"model.safetensors": "new bundle"}
    assert not list(out.parent.glob(".refit.replaced-*")) and state.refit and state.refit.status == "done"


def test_rerun_stage_never_replaces_a_foreign_folder(tmp_path: Path) -> None:
    from search.config import load_search_spec
    from search.tuner import ExperimentError
    from tests.search.helpers import write_spec

    folder = tmp_path / "runs" / "tiny"
    (folder / "enc" / "benign").mkdir(parents=True)
    (folder / "enc" / "benign" / "benign (1).png").write_bytes(b"png")  # data someone keeps there
    spec = load_search_spec(write_spec(tmp_path))
    with pytest.raises(ExperimentError, match="not an experiment folder"):
        P.search_stage(spec, folder, "enc", "rerun", None, log=lambda m: None)
    assert (folder / "enc" / "benign" / "benign (1).png").read_bytes() == b"png"
