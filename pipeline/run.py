"""The thesis study as one resumable command: stage searches chained by inheritance, analysis of each
stage, refit of the final winner, ``pipeline.json`` and ``pipeline_report.md``.

Layout under ``<storage>/<name>/``: one experiment folder per stage (``<stage>/``, exactly what
``launch.py search`` writes, with its ``analysis/`` and, for the refit stage, ``refit/``), ``pipeline.json``
(what each stage ran with and chose, see :mod:`pipeline.state`) and ``pipeline_report.md``.

A stage's spec is built from its file, then ``--smoke`` (:mod:`pipeline.smoke`), then ``--data``
(``data.root`` of every stage), then the inherited fields, taken from the winner's complete config
(``best_config.yaml`` of the stage named by ``inherit.from``), and validated as a search spec before
Ray starts. Stages run in order in one Ray session; the search and analysis are the ``search`` and
``analysis`` packages' own functions.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import (
    INHERITABLE_SECTIONS,
    Pipeline,
    PipelineError,
    PipelineInputError,
    Stage,
    load_pipeline,
    stage_dict,
)
from pipeline.records import (
    AnalysisFiles,
    RefitRecord,
    RefitResult,
    StageRecord,
    StageResult,
    TrialSummary,
    Winner,
)
from pipeline.smoke import ShrinkInfo, shrink_stage
from pipeline.state import (
    RERUN,
    RESUME,
    RUN,
    SKIP,
    PipelineState,
    normalise,
    now,
    plan_stage,
)
from trainables.schema import SpecError
from trainables.spec import flatten, set_data_root, set_dotted, spec_from_dict, spec_hash

Log = Callable[[str], None]
N_EXAMPLES_PER_CLASS = 1


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ stage specs


def own_spec_dict(
    stage: Stage, smoke: Any = None, data_root: str | None = None
) -> tuple[dict[str, Any], ShrinkInfo | None]:
    """The stage's spec before inheritance: its file, shrunk by ``smoke`` (a SmokeConfig) if given,
    with ``data.root`` = ``data_root`` if given."""
    d, info = shrink_stage(stage.raw, smoke) if smoke is not None else (stage_dict(stage), None)
    if data_root is not None:
        set_data_root(d, data_root)
    return d, info


def winner_config(spec: Any) -> dict[str, Any]:
    """The flat ``model.*`` / ``train.*`` fields of a winner's spec (what later stages can inherit)."""
    return {k: v for k, v in flatten(spec).items() if k.split(".")[0] in INHERITABLE_SECTIONS}


def inherited_values(fields: Sequence[str], config: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """The values of ``fields`` in a winner's flat ``config``; a section name takes every field under it."""
    out: dict[str, Any] = {}
    for key in fields:
        if key in config:
            out[key] = copy.deepcopy(config[key])
            continue
        under = {k: copy.deepcopy(v) for k, v in config.items() if k.startswith(key + ".")}
        if not under:
            raise PipelineError(f"{key}: not in the winner's config of stage {source or '?'}")
        out.update(under)
    return normalise(out)


def resolve_stage(stage: Stage, own: Mapping[str, Any], inherited: Mapping[str, Any]) -> Any:
    """``own`` with the ``inherited`` values set, validated as a :class:`search.config.SearchSpec`."""
    from search.config import SearchSpec

    d = copy.deepcopy(dict(own))
    for key, value in inherited.items():
        set_dotted(d, key, copy.deepcopy(value))
    try:
        return spec_from_dict(d, SearchSpec)
    except SpecError as exc:
        got = ", ".join(f"{k}={v}" for k, v in inherited.items())
        head = f"stage {stage.name} ({stage.path})" + (f" with inherited {got}" if got else "")
        raise SpecError([f"{head}:", *exc.errors], source=str(stage.path)) from None


# ---------------------------------------------------------------------------------------- running


@dataclass
class PipelineRun:
    """Where a pipeline run left its results."""

    folder: Path
    state: PipelineState
    report: Path


def pipeline_folder(pipeline: Pipeline, storage: str | Path, name: str | None, smoke: bool) -> Path:
    """``<storage>/<name>``; the default name is the pipeline's, with ``-smoke`` for a smoke run, so a smoke
    run never meets the results of a full one."""
    from trainables.spec import check_name

    text = str(storage)
    if "://" in text:
        raise PipelineInputError(
            f"--storage {text}: the pipeline analyses each stage from its folder, so it needs a local or "
            "mounted path (on a cluster: a shared file system path such as /mnt/shared/runs)"
        )
    if name is not None:
        try:
            check_name(name)  # a folder name, so the pipeline folder lies strictly inside the storage
        except ValueError as exc:
            raise PipelineInputError(f"--name: {exc}") from None
    return Path(text).expanduser().resolve() / (name or (pipeline.name + ("-smoke" if smoke else "")))


def run_pipeline(
    thesis: str | Path,
    *,
    data: str | None = None,
    storage: str | Path = "runs/pipeline",
    name: str | None = None,
    smoke: bool = False,
    rerun_stages: Sequence[str] = (),
    address: str | None = None,
    log: Log = _stderr,
) -> PipelineRun:
    """Run (or continue) every stage, the refit and the report; see the module docstring."""
    pipeline = load_pipeline(thesis)
    unknown = [s for s in rerun_stages if s not in pipeline.config.stage_names]
    if unknown:
        raise PipelineInputError(
            f"--rerun-stage {', '.join(unknown)}: no such stage; "
            f"stages: {', '.join(pipeline.config.stage_names)}"
        )
    if data is not None and not Path(data).expanduser().is_dir():
        raise PipelineInputError(f"--data {data}: not a folder")
    folder = pipeline_folder(pipeline, storage, name, smoke)
    state = PipelineState.load(folder)
    state.data.setdefault("created", now())
    ray_was_up = _ray_up()
    t0 = time.monotonic()
    try:
        for i, stage in enumerate(pipeline.stages, 1):
            run_stage(
                pipeline,
                stage,
                state,
                folder,
                i,
                smoke=smoke,
                data=data,
                allow_rerun=stage.name in rerun_stages,
                address=address,
                log=log,
            )
        run_final_refit(pipeline, state, smoke, log)
        # Recorded once every stage matched this run's settings (a refused run leaves them as they were).
        state.data.update(
            pipeline=pipeline.name,
            thesis_file=str(pipeline.path),
            smoke=smoke,
            data_root=str(Path(data).expanduser().resolve()) if data else None,
        )
    finally:
        state.data["last_run_s"] = round(time.monotonic() - t0, 1)
        state.save()
        if not ray_was_up and _ray_up():
            import ray

            ray.shutdown()
    from pipeline.report import write_pipeline_report

    report = write_pipeline_report(pipeline, state, folder)
    log(f"pipeline report: {report}")
    return PipelineRun(folder, state, report)


def _ray_up() -> bool:
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


def run_stage(
    pipeline: Pipeline,
    stage: Stage,
    state: PipelineState,
    folder: Path,
    index: int,
    *,
    smoke: bool,
    data: str | None,
    allow_rerun: bool,
    address: str | None,
    log: Log = _stderr,
) -> StageRecord:
    """Plan and carry out one stage (search, then analysis); return its record."""
    own, shrink = own_spec_dict(stage, pipeline.config.smoke if smoke else None, data)
    source = stage.entry.inherit_from
    inherited: dict[str, Any] = {}
    if source is not None:
        done = state.stage(source)
        if done is None or done.status != "done" or done.result is None:
            raise PipelineError(f"stage {stage.name} inherits from {source}, which has not finished")
        inherited = inherited_values(stage.entry.inherit_fields, done.result.winner.config, source)
    spec = resolve_stage(stage, own, inherited)
    own_hash = spec_hash(own)
    own_flat = normalise(flatten(own, type(spec)))
    exp = folder / stage.name
    record = state.stage(stage.name)
    decision = plan_stage(stage.name, record, own_hash, own_flat, inherited, exp.exists(), allow_rerun)
    total = len(pipeline.stages)
    got = ", ".join(f"{k}={v}" for k, v in inherited.items() if not isinstance(v, dict | list))
    log(
        f"\n=== pipeline stage {index}/{total} {stage.name}: {decision.action} ({decision.reason})"
        + (f"; inherits {got} from {source}" if got else "")
    )
    if decision.action == SKIP and record is not None:
        return record
    if decision.action in (RUN, RERUN, RESUME):
        planned: dict[str, Any] = dict(
            status="running",
            own_hash=own_hash,
            own_spec=own_flat,
            inherited=inherited,
            inherited_from=source,
            resolved_hash=spec_hash(spec),
            spec_file=str(stage.path),
            exp_dir=str(exp),
            description=stage.entry.description,
            rank_by=stage.entry.rank_by,
            smoke=shrink.to_dict() if shrink else None,
            decision=decision.reason,
        )
        if decision.action == RESUME and record is not None:  # keeps when it first started
            state.set_stage(stage.name, dataclasses.replace(record, **planned))
        else:
            state.set_stage(stage.name, StageRecord(**planned, started=now()))
        t = time.monotonic()
        search_stage(spec, folder, stage.name, decision.action, address, log)
        state.update_stage(stage.name, status="searched", search_s=round(time.monotonic() - t, 1))
    t = time.monotonic()
    result = analyse_stage(exp, stage.entry.rank_by)
    done = state.update_stage(
        stage.name, status="done", analysis_s=round(time.monotonic() - t, 1), finished=now(), result=result
    )
    w = result.winner
    log(
        f"=== {stage.name}: winner {w.trial_id} {result.metric} {_fmt(w.score)} ± {_fmt(w.score_std)} "
        f"({', '.join(f'{k}={v}' for k, v in w.params.items())})"
    )
    return done


def search_stage(
    spec: Any, folder: Path, name: str, action: str, address: str | None, log: Log = _stderr
) -> Any:
    """Run, re-run (replacing the folder) or resume the stage's search with ``search.tuner.run_search``."""
    from search.tuner import ExperimentError, run_search

    if action == RESUME:
        try:
            return run_search(spec, storage=str(folder), name=name, address=address, resume=True)
        except ExperimentError as exc:
            log(f"stage {name}: cannot resume ({exc}); starting its search again")
            action = RERUN
    results = run_search(spec, storage=str(folder), name=name, address=address, overwrite=action == RERUN)
    if len(results) and all(r.error for r in results):
        raise PipelineError(f"stage {name}: every trial failed; see the error.txt files in {folder / name}")
    return results


def _native(value: Any) -> Any:
    item = getattr(value, "item", None)
    value = item() if callable(item) else value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def row_summary(row: Mapping[str, Any], params: Sequence[str]) -> dict[str, Any]:
    """A leaderboard row as plain JSON: trial, searched parameters, score and Dice / macro-F1 (mean, std)."""
    out: dict[str, Any] = {
        "trial_id": str(row["trial_id"]),
        "params": {p: _native(row.get(p)) for p in params if _native(row.get(p)) is not None},
    }
    for key in (
        "score",
        "score_std",
        "dice",
        "dice_std",
        "macro_f1",
        "macro_f1_std",
        "best_epoch",
        "epochs_run",
    ):
        out[key] = _native(row.get(key))
    out["status"] = str(row.get("status"))
    return out


def analyse_stage(exp: Path, rank_by: str | None = None) -> StageResult:
    """``analysis.commands.analyze`` of one stage; its winner, runner-up and the winner's full config."""
    from analysis.commands import analyze
    from trainables.spec import load_spec

    try:
        out = analyze(exp, metric=rank_by)
    except ValueError as exc:  # no trial with a score, or a metric that was not reported
        raise PipelineError(f"stage {exp.name}: analysis: {exc}") from None
    board = out.board
    params = list(board.attrs.get("params", []))
    ok = board[board["score"].notna() & (board["status"] != "error")]
    winner = row_summary(ok.iloc[0].to_dict(), params)
    if winner["trial_id"] != str(out.chosen["trial_id"]):
        raise PipelineError(
            f"stage {exp.name}: the leaderboard's best trial differs from the analysis' choice"
        )
    winner["config"] = winner_config(load_spec(out.best_config))
    winner["refit_epochs"] = _native(out.chosen.get("refit_epochs"))
    runner_up = row_summary(ok.iloc[1].to_dict(), params) if len(ok) > 1 else None
    plots = {k: str(Path(v).relative_to(exp)) for k, v in out.plots.items() if isinstance(v, Path)}
    return StageResult(
        metric=board.attrs["metric"],
        lower_is_better=bool(board.attrs.get("lower_is_better")),
        n_trials=len(board),
        trial_status={str(k): int(v) for k, v in board["status"].value_counts().items()},
        winner=Winner(**normalise(winner)),
        runner_up=TrialSummary(**normalise(runner_up)) if runner_up else None,
        analysis=AnalysisFiles(
            dir=str(out.out_dir.relative_to(exp)),
            report=str(out.report.relative_to(exp)),
            leaderboard=str(out.leaderboard_md.relative_to(exp)),
            best_config=str(out.best_config.relative_to(exp)),
            plots=plots,
        ),
    )


# ------------------------------------------------------------------------------------------ refit


def run_final_refit(pipeline: Pipeline, state: PipelineState, smoke: bool, log: Log = _stderr) -> RefitRecord:
    """Refit the refit stage's winner on all development images, test it once, predict a few held-out
    images from their files with the bundle; skipped when done for the same winner."""
    from analysis.refit import REPORT_NAME, choose, run_refit
    from search.tuner import Location, Replaced

    cfg = pipeline.config
    name = cfg.refit_stage
    record = state.stage(name)
    if record is None or record.result is None:
        raise PipelineError(f"refit: stage {name} has no winner yet")
    exp = state.folder / name  # this pipeline's own stage folder (also after the pipeline folder moved)
    out = exp / "refit"
    n_boot = cfg.smoke.n_boot if smoke else cfg.refit.n_boot
    key = normalise(
        {
            "stage": name,
            "trial_id": record.result.winner.trial_id,
            "resolved_hash": record.resolved_hash,
            "epochs": cfg.refit.epochs,
            "n_boot": n_boot,
        }
    )
    previous = state.refit
    if previous and previous.status == "done" and previous.key == key and (out / REPORT_NAME).is_file():
        log(f"\n=== refit of {name}: done (trial {key['trial_id']})")
        return previous
    log(f"\n=== refit of {name}: trial {key['trial_id']} on all development images, then the test set")
    # An interrupted or outdated refit of this stage is kept aside until the new one is done, and comes
    # back if the new one fails.
    replaced = Replaced.set_aside(Location(str(exp), out.name), kind="refit") if out.exists() else None
    state.refit = RefitRecord(status="running", key=key, started=now())
    state.save()
    t = time.monotonic()
    try:
        chosen = choose(exp, metric=record.rank_by)
        if str(chosen.trial_id) != key["trial_id"]:
            raise PipelineError(
                f"refit: the analysis chose trial {key['trial_id']} but refit picked {chosen.trial_id}"
            )
        report = run_refit(chosen, out, cfg.refit.epochs, cfg.refit.device, n_boot=n_boot)
        bundle = Path(report["outputs"]["bundle"])
        examples = predict_examples(bundle, chosen, out / "examples", cfg.refit.device)
    except BaseException:
        if replaced is not None:
            replaced.restore()
        raise
    if replaced is not None:
        replaced.discard()
    result = {
        "stage": name,
        "trial_id": key["trial_id"],
        "out_dir": str(out),
        "epochs": report.get("epochs"),
        "epochs_rule": report.get("epochs_rule"),
        "dev_images": report.get("dev_images"),
        "n_test": report.get("n_images"),
        "cv_score": report.get("cv_score"),
        "metrics": {k: v for k, v in report["metrics"].items()},
        "outputs": report["outputs"],
        "examples": examples,
        "refit_s": round(time.monotonic() - t, 1),
        "finished": now(),
    }
    refit = RefitRecord(status="done", key=key, result=RefitResult(**normalise(result)))
    state.refit = refit
    state.save()
    return refit


def predict_examples(bundle: Path, chosen: Any, out: Path, device: str = "auto") -> list[dict[str, Any]]:
    """Predict the first held-out test image of each class from its file with the delivered bundle
    (``launch.py predict``'s path: bundle loading, resize and its undoing); write visualizations."""
    from analysis.predict import Predictor, save_visualization
    from trainables.data.cache import synthetic_root

    data = chosen.spec.data
    root = Path(data.root) if data.root else synthetic_root(data.synthetic)
    test = list((chosen.splits or {}).get("test") or [])
    picked: list[str] = []
    for cls in data.classes:
        picked += [p for p in test if p.split("/", 1)[0] == cls][:N_EXAMPLES_PER_CLASS]
    predictor = Predictor(bundle, device)
    rows = []
    for rel in picked:
        pred, gray = predictor.predict_file(root / rel)
        viz = save_visualization(pred, gray, out / (Path(rel).stem.replace(" ", "_") + "_viz.png"))
        rows.append(
            {
                "path": rel,
                "label": rel.split("/", 1)[0],
                "predicted": pred.predicted,
                "probs": [round(float(p), 4) for p in pred.probs],
                "lesion_area_px": pred.area_px,
                "flag": pred.flag,
                "visualization": str(viz),
            }
        )
    return rows


def _fmt(x: Any) -> str:
    try:
        return f"{float(x):.4f}"
    except (TypeError, ValueError):
        return "-"
