"""``pipeline_report.md``: per stage its leaderboard's top rows, a figure, what it inherited and chose; then
the final test results with confidence intervals and the data's choices side by side with the thesis's.

Written from ``pipeline.json`` and the stage folders alone, so it can be rebuilt at any time.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.config import Pipeline
from pipeline.records import RefitRecord, StageRecord
from pipeline.state import PipelineState, now

REPORT_NAME = "pipeline_report.md"
TOP_ROWS = 5
TEST_METRICS = (
    "dice",
    "iou",
    "hd95",
    "nsd",
    "normal_fp_rate",
    "auc",
    "macro_f1",
    "balanced_acc",
    "acc",
    "recall_malignant",
)


def _num(x: Any, digits: int = 3) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(v) else f"{v:.{digits}f}"


def _pm(mean: Any, std: Any) -> str:
    text = _num(mean)
    return text if text == "-" or _num(std) == "-" else f"{text} ± {_num(std)}"


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"`{k}` = {_value(v)}" for k, v in params.items()) or "-"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return f"`{json.dumps(v) if isinstance(v, dict | list) else v}`"


def _rel(path: str | Path, folder: Path) -> str:
    return os.path.relpath(Path(path), folder).replace(os.sep, "/")


def searched_keys(record: StageRecord | None) -> list[str]:
    """The keys a stage searched (from its recorded spec)."""
    return list((record.own_spec.get("search.space") or {}) if record else {})


def decided_by(key: str, pipeline: Pipeline, state: PipelineState) -> str | None:
    """The last stage whose search covered ``key`` (the field itself or a section above it)."""
    found = None
    for name in pipeline.config.stage_names:
        for s in searched_keys(state.stage(name)):
            if s == key or key.startswith(s + ".") or s.startswith(key + "."):
                found = name
    return found


def _leaderboard_rows(exp: Path, metric: str) -> str:
    from analysis.leaderboard import build_leaderboard, display_frame, to_markdown
    from analysis.results import load_results

    try:
        board = build_leaderboard(load_results(exp), metric)
    except (ValueError, OSError) as exc:
        return f"(leaderboard not available: {exc})\n"
    return to_markdown(display_frame(board, top=TOP_ROWS, compact=True))


def _figures(record: StageRecord, exp: Path, folder: Path) -> list[str]:
    metric = record.result.metric if record.result else "score"
    plots = record.result.analysis.plots if record.result else {}
    wanted = [f"score_by_{k}" for k in searched_keys(record) if f"score_by_{k}" in plots]
    if not wanted:
        wanted = [k for k in ("param_importance", "learning_curves") if k in plots][:1]
    out = []
    for key in wanted:
        title = key.replace("score_by_", "score by ").replace("_", " ")
        out += [f"![{metric} {title}]({_rel(exp / plots[key], folder)})", ""]
    return out


def stage_section(index: int, name: str, record: StageRecord | None, folder: Path) -> list[str]:
    """The report section of one stage."""
    exp = Path(record.exp_dir if record and record.exp_dir else folder / name)
    lines = [f"## {index}. `{name}`", ""]
    if record and record.description:
        lines += [str(record.description), ""]
    if record is None or record.status != "done" or record.result is None:
        return [*lines, f"Not finished (status: {record.status if record else 'not started'}).", ""]
    result = record.result
    statuses = ", ".join(f"{v} {k}" for k, v in result.trial_status.items())
    times = f"search {_num(record.search_s, 0)} s, analysis {_num(record.analysis_s, 0)} s"
    lines += [
        f"- Spec: `{record.spec_file}`; experiment folder `{_rel(exp, folder)}/` "
        f"([analysis report]({_rel(exp / result.analysis.report, folder)}), "
        f"[full leaderboard]({_rel(exp / result.analysis.leaderboard, folder)}))",
        f"- Searched: {', '.join(f'`{k}`' for k in searched_keys(record)) or '-'}; "
        f"{result.n_trials} trials ({statuses}); {times}",
    ]
    inherited = record.inherited
    if inherited:
        lines.append(f"- Inherited from `{record.inherited_from}`'s winner: {_params(inherited)}")
    smoke = record.smoke or {}
    if smoke:
        groups: dict[str, list[str]] = {}
        if "model.encoder" not in inherited:  # an inherited encoder replaces the stage's own
            for original, stand_in in (smoke.get("stand_ins") or {}).items():
                groups.setdefault(stand_in, []).append(original)
        if groups:
            lines.append(
                "- Smoke stand-ins: "
                + "; ".join(
                    f"`{b}` for {', '.join(f'`{a}`' for a in originals)}" for b, originals in groups.items()
                )
            )
        dropped = smoke.get("dropped_values") or {}
        if dropped:
            lines.append(
                "- Smoke grid subset, left out: "
                + "; ".join(f"`{k}`: {', '.join(map(str, v))}" for k, v in dropped.items())
            )
        if smoke.get("num_samples"):
            lines.append(f"- Smoke trials: {smoke['num_samples'][1]} (of {smoke['num_samples'][0]})")
    metric = result.metric
    direction = "lower" if result.lower_is_better else "higher"
    lines += [
        "",
        f"Ranked by the CV mean of `{metric}` ({direction} is better) at each trial's best epoch; "
        "mean ± std over folds. Top rows:",
        "",
        _leaderboard_rows(exp, metric).rstrip(),
        "",
    ]
    w, r = result.winner, result.runner_up
    choice = (
        f"**Chosen:** trial `{w.trial_id}`: {_params(w.params)}: "
        f"{metric} {_pm(w.score, w.score_std)}, Dice {_pm(w.dice, w.dice_std)}, "
        f"macro-F1 {_pm(w.macro_f1, w.macro_f1_std)}."
    )
    lines.append(choice)
    if r:
        margin = abs(float(w.score) - float(r.score))
        std = float(w.score_std) if w.score_std is not None else math.nan
        verdict = (
            "within one fold standard deviation of the winner, so the data does not separate them"
            if not math.isnan(std) and margin < std
            else "a clearer gap than the winner's fold spread"
        )
        lines.append(
            f"Runner-up: trial `{r.trial_id}` ({_params(r.params)}): "
            f"{_pm(r.score, r.score_std)}; margin {_num(margin)}, {verdict}."
        )
    lines += ["", *_figures(record, exp, folder)]
    return lines


def refit_section(refit: RefitRecord | None, folder: Path) -> list[str]:
    """The final model's test results with 95% bootstrap confidence intervals."""
    lines = ["## Final model: refit and test", ""]
    if refit is None or refit.status != "done" or refit.result is None:
        return [*lines, f"Not finished (status: {refit.status if refit else 'not started'}).", ""]
    r = refit.result
    lines += [
        f"Trial `{r.trial_id}` of `{r.stage}` (CV score {_num(r.cv_score)}) "
        f"trained on all {r.dev_images} development images for {r.epochs} epochs "
        f"({r.epochs_rule}), then evaluated once on the {r.n_test} held-out "
        "test images "
        f"([test_report.json]({_rel(r.outputs['report'], folder)}), "
        f"[model bundle]({_rel(r.outputs['bundle'], folder)})).",
        "",
        "| metric | test value | 95% CI (cluster bootstrap over duplicate groups) |",
        "|---|---|---|",
    ]
    metrics = r.metrics
    for name in [m for m in TEST_METRICS if m in metrics] + [m for m in metrics if m not in TEST_METRICS]:
        m = metrics[name]
        ci = m.get("ci95") or [None, None]
        lines.append(f"| {name} | {_num(m.get('value'))} | [{_num(ci[0])}, {_num(ci[1])}] |")
    lines.append("")
    for key in ("confusion_matrix", "roc", "gallery"):
        if key in r.outputs:
            lines += [f"![{key}]({_rel(r.outputs[key], folder)})", ""]
    if r.examples:
        lines += [
            "Held-out images predicted from their files with the bundle (as `launch.py predict` does):",
            "",
            "| image | label | predicted | probabilities | lesion px | flag |",
            "|---|---|---|---|---|---|",
        ]
        for e in r.examples:
            probs = ", ".join(f"{p:.2f}" for p in e["probs"])
            viz = _rel(e["visualization"], folder)
            lines.append(
                f"| [{e['path']}]({viz}) | {e['label']} | {e['predicted']} | {probs} | "
                f"{e['lesion_area_px']} | {e['flag'] or '-'} |"
            )
        lines.append("")
    return lines


def comparison_section(pipeline: Pipeline, state: PipelineState) -> list[str]:
    """The thesis's final architecture beside what the data chose (with smoke stand-ins applied)."""
    reference = pipeline.config.reference
    final = state.stage(pipeline.config.refit_stage)
    config = final.result.winner.config if final and final.result else {}
    if not reference or not config:
        return []
    stand_ins = pipeline.config.smoke.encoder_stand_ins if state.data.get("smoke") else {}
    lines = [
        "## Does the data pick the thesis's architecture?",
        "",
        "| field | thesis | this pipeline | same | decided by |",
        "|---|---|---|---|---|",
    ]
    for key, thesis in reference.items():
        compare = stand_ins.get(thesis, thesis) if key == "model.encoder" else thesis
        shown = f"`{thesis}`" + (f" (smoke stand-in `{compare}`)" if compare != thesis else "")
        picked = config.get(key)
        same = "yes" if picked == compare else "no"
        lines.append(
            f"| `{key}` | {shown} | `{picked}` | {same} | {decided_by(key, pipeline, state) or '-'} |"
        )
    lines.append("")
    return lines


def write_pipeline_report(pipeline: Pipeline, state: PipelineState, folder: str | Path) -> Path:
    """Write ``<folder>/pipeline_report.md`` and return its path."""
    from analysis.report import git_commit

    folder = Path(folder)
    smoke = bool(state.data.get("smoke"))
    data = state.data.get("data_root") or "the built-in synthetic set"
    lines = [
        f"# Pipeline `{folder.name}`: {pipeline.name}",
        "",
        f"- Pipeline file: `{pipeline.path}`; data: `{data}`; mode: {'smoke' if smoke else 'full'}",
        f"- Code: git `{git_commit()}`; written {now()}; last run {_num(state.data.get('last_run_s'), 0)} s",
        "- Machine-readable record: `pipeline.json`",
        "",
    ]
    if smoke:
        lines += [
            "> **Smoke run.** Every stage was shrunk (tiny images, 1-2 epochs, a subset of each grid, tiny "
            "stand-in encoders with random weights) to check that the stages chain, inherit, analyse and "
            "refit. The numbers below say nothing about the methods compared.",
            "",
        ]
    lines += [
        "## Stages",
        "",
        "| stage | searched | trials | ranked by | winner | CV score | Dice | macro-F1 | time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in pipeline.config.stage_names:
        r = state.stage(name)
        seconds = (r.search_s or 0.0) + (r.analysis_s or 0.0) if r else 0.0
        result = r.result if r else None
        cells = ["-"] * 6
        if result:
            w = result.winner
            cells = [
                str(result.n_trials),
                result.metric,
                _params(w.params),
                _pm(w.score, w.score_std),
                _pm(w.dice, w.dice_std),
                _pm(w.macro_f1, w.macro_f1_std),
            ]
        lines.append(
            f"| `{name}` | {', '.join(searched_keys(r)) or '-'} | {' | '.join(cells)} | {_num(seconds, 0)} |"
        )
    refit = state.refit
    refit_s = refit.result.refit_s if refit and refit.result else None
    lines += [
        "",
        f"Times are this folder's search + analysis seconds per stage (a resumed stage counts its last "
        f"session); refit {_num(refit_s, 0)} s.",
        "",
    ]
    for i, name in enumerate(pipeline.config.stage_names, 1):
        lines += stage_section(i, name, state.stage(name), folder)
    lines += refit_section(refit, folder)
    lines += comparison_section(pipeline, state)
    path = folder / REPORT_NAME
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path
