"""The pipeline runner's bookkeeping with the search, analysis and refit replaced by fakes (no Ray): the
chain passes winners on, finished stages are skipped, an interrupted stage resumes, a changed stage is
refused unless --rerun-stage names it, and a changed winner re-runs the stages that inherit from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import launch
import pipeline.run as P
from pipeline.records import RefitRecord, StageResult
from pipeline.state import PipelineState, StageChangedError
from tests.pipeline.helpers import spec, stage_result, write_pipeline
from trainables.spec import flatten


class Fakes:
    """Stand-ins for search_stage / analyse_stage / run_final_refit; the winner of a stage takes the
    last value of each searched choice/grid (so it differs from the stage's own fixed values)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        self.specs: dict[str, Any] = {}
        self.interrupt_at: str | None = None
        self.refits = 0
        monkeypatch.setattr(P, "search_stage", self.search)
        monkeypatch.setattr(P, "analyse_stage", self.analyse)
        monkeypatch.setattr(P, "run_final_refit", self.refit)

    def search(self, spec: Any, folder: Path, name: str, action: str, address: Any, log: Any = None) -> None:
        self.calls.append((name, action))
        self.specs[name] = spec
        (folder / name).mkdir(parents=True, exist_ok=True)
        if name == self.interrupt_at:
            raise KeyboardInterrupt

    def analyse(self, exp: Path, rank_by: str | None = None) -> StageResult:
        spec = self.specs[exp.name]
        params = {
            k: (v.get("grid") or v.get("choice"))[-1]
            for k, v in spec.search.space.items()
            if "grid" in v or "choice" in v
        }
        config = {k: v for k, v in flatten(spec).items() if k.split(".")[0] in ("model", "train")}
        config.update(params)
        return stage_result(f"{exp.name}_1", params, config, metric=rank_by or "score")

    def refit(self, pipeline: Any, state: PipelineState, smoke: bool, log: Any = None) -> RefitRecord:
        self.refits += 1
        state.refit = RefitRecord(status="running", key={})
        return state.refit


def _run(path: Path, storage: Path, **kwargs: Any) -> P.PipelineRun:
    return P.run_pipeline(path, storage=storage, log=lambda m: None, **kwargs)


def test_chain_skip_resume_change_and_cascade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch)
    path = write_pipeline(tmp_path / "p")
    runs = tmp_path / "runs"

    run = _run(path, runs)
    assert run.folder == runs / "tiny"
    assert fakes.calls == [("enc", "run"), ("dec", "run"), ("att", "run")]
    assert fakes.specs["dec"].model.encoder == "tu-test_resnet"  # the enc winner, not dec.yaml's own
    assert (fakes.specs["att"].model.encoder, fakes.specs["att"].model.decoder) == ("tu-test_resnet", "fpn")
    state = PipelineState.load(run.folder)
    att, enc = state.stage("att"), state.stage("enc")
    assert att and enc and att.inherited == {"model.encoder": "tu-test_resnet", "model.decoder": "fpn"}
    assert att.inherited_from == "dec" and enc.rank_by == "macro_f1"
    assert enc.result and enc.result.winner.trial_id == "enc_1" and enc.result.metric == "macro_f1"
    report = run.report.read_text(encoding="utf-8")
    assert (
        "Inherited from `dec`'s winner: `model.encoder` = `tu-test_resnet`, `model.decoder` = `fpn`" in report
    )
    assert "| `model.decoder` | `fpn` | `fpn` | yes | dec |" in report
    assert "| `model.encoder` | `efficientnet-b6` | `tu-test_resnet` | no | enc |" in report

    fakes.calls.clear()
    _run(path, runs)
    assert fakes.calls == [] and fakes.refits == 2  # all stages done; the refit decides for itself

    changed = spec("dec")
    changed["train"]["epochs"] = 3
    (path.parent / "dec.yaml").write_text(yaml.safe_dump(changed), encoding="utf-8")
    with pytest.raises(StageChangedError, match=r"(?s)stage dec: its spec changed.*train\.epochs: 2 -> 3"):
        _run(path, runs)
    assert fakes.calls == []

    # Re-running dec with the same winner leaves att alone ...
    _run(path, runs, rerun_stages=["dec"])
    assert fakes.calls == [("dec", "rerun")]
    # ... a different winner re-runs att, which inherits from it.
    changed["search"]["space"]["model.decoder"]["grid"] = ["fpn", "unet"]
    (path.parent / "dec.yaml").write_text(yaml.safe_dump(changed), encoding="utf-8")
    fakes.calls.clear()
    _run(path, runs, rerun_stages=["dec"])
    assert fakes.calls == [("dec", "rerun"), ("att", "rerun")]
    assert fakes.specs["att"].model.decoder == "unet"


def test_interrupted_stage_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = Fakes(monkeypatch)
    path = write_pipeline(tmp_path / "p")
    fakes.interrupt_at = "dec"
    with pytest.raises(KeyboardInterrupt):
        _run(path, tmp_path / "runs")
    state = PipelineState.load(tmp_path / "runs" / "tiny")
    assert state.stages["enc"].status == "done" and state.stages["dec"].status == "running"
    assert state.stages["dec"].result is None and "search_s" not in state.stages["dec"].to_json()
    fakes.interrupt_at = None
    fakes.calls.clear()
    _run(path, tmp_path / "runs")
    assert fakes.calls == [("dec", "resume"), ("att", "run")]


def test_smoke_run_has_its_own_folder_and_maps_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes = Fakes(monkeypatch)
    path = write_pipeline(tmp_path / "p")
    run = _run(path, tmp_path / "runs", smoke=True)
    assert run.folder.name == "tiny-smoke"
    assert [c for c, _ in fakes.calls] == ["enc", "dec", "att"]
    assert fakes.specs["enc"].train.epochs == 1 and fakes.specs["enc"].search.space["model.encoder"][
        "grid"
    ] == ["tu-test_efficientnet"]  # grid_values: 1
    report = run.report.read_text(encoding="utf-8")
    assert "**Smoke run.**" in report
    assert (
        "`efficientnet-b6` (smoke stand-in `tu-test_efficientnet`) | `tu-test_efficientnet` | yes" in report
    )


def test_cli_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    Fakes(monkeypatch)
    path = write_pipeline(tmp_path / "p")

    def pipeline(*argv: str) -> int:
        storage = () if "--storage" in argv else ("--storage", str(tmp_path / "runs"))
        return launch.main(["pipeline", str(path), *storage, *argv])

    assert pipeline("--rerun-stage", "nope") == 2
    assert "--rerun-stage nope: no such stage; stages: enc, dec, att" in capsys.readouterr().err
    assert pipeline("--data", str(tmp_path / "missing")) == 2
    assert pipeline("--storage", "s3://bucket/runs") == 2
    assert "needs a local or mounted path" in capsys.readouterr().err
    assert pipeline("--name", "named") == 0
    assert (
        "pipeline_report.md" in capsys.readouterr().out
        and (tmp_path / "runs" / "named" / "pipeline.json").is_file()
    )
    (tmp_path / "runs" / "other" / "enc").mkdir(parents=True)
    assert pipeline("--name", "other") == 2  # a folder the pipeline has no record of
    assert "no record of it" in capsys.readouterr().err


def test_inherited_values_expand_sections() -> None:
    config = {
        "model.latent_aug.mode": "noise",
        "model.latent_aug.sigma": 0.1,
        "model.encoder": "x",
        "train.augment.scale": (0.9, 1.1),
    }
    got = P.inherited_values(["model.latent_aug", "train.augment.scale"], config, "s4")
    assert got == {
        "model.latent_aug.mode": "noise",
        "model.latent_aug.sigma": 0.1,
        "train.augment.scale": [0.9, 1.1],
    }
    with pytest.raises(P.PipelineError, match=r"model\.attention: not in the winner's config of stage s4"):
        P.inherited_values(["model.attention"], config, "s4")
