"""``report.md`` of an analysis, and the optional W&B summary run.

The report is what a reader needs to trust and redo the result without opening any other file: the
data audit, how the data was split, the searched space, the leaderboard, the figures, the chosen config,
and the versions, seeds, data fingerprint and git commit.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.leaderboard import CV_FIGURE_NOTE, display_frame, to_markdown
from analysis.results import ExperimentResults

PACKAGES = (
    "torch",
    "timm",
    "segmentation-models-pytorch",
    "monai",
    "ray",
    "optuna",
    "numpy",
    "scikit-learn",
    "wandb",
)
REPORT_TOP = 20


def versions() -> dict[str, str]:
    """Python and the key packages' installed versions (read from metadata, nothing imported)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(path: str | Path | None = None) -> str:
    """``<sha>`` of the code's repository (``+dirty`` with uncommitted changes), or ``unknown``."""
    where = Path(path) if path else Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or {} when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------------------------ sections


def _data_section(data: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    d = spec.get("data") or {}
    root = data.get("root") or d.get("root")
    synth = d.get("synthetic") or {}
    where = (
        f"`{root}`"
        if root
        else f"built-in synthetic set (n_per_class {synth.get('n_per_class')}, seed {synth.get('seed')})"
    )
    names = data.get("class_names") or d.get("classes") or []
    counts = data.get("class_counts") or []
    lines = ["## Data", "", f"- Source: {where}", f"- Images: {data.get('n_images', '?')}"]
    if names and counts:
        lines.append("- Per class: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts)))
    lines.append(
        f"- Working size: {data.get('image_size', d.get('image_size'))} px, resize "
        f"`{data.get('resize', d.get('resize', 'letterbox'))}`"
    )
    lines.append(f"- Data fingerprint: `{data.get('fingerprint', 'unknown')}`")
    audit = data.get("audit") or {}
    if audit:
        dup = audit.get("duplicate_groups") or []
        cross = audit.get("cross_class_duplicates") or []
        lines += [
            "",
            "Audit summary:",
            "",
            f"- duplicate groups: {len(dup)} (kept inside one split part), cross-class duplicates: "
            f"{len(cross)}",
            f"- images without a mask: {len(audit.get('missing_masks') or [])}, orphan masks: "
            f"{len(audit.get('orphan_masks') or [])}, multi-mask images: "
            f"{len(audit.get('multi_mask_images') or [])}",
            f"- unreadable files: {len(audit.get('unreadable') or [])}, mask/image size mismatches: "
            f"{len(audit.get('size_mismatch') or [])}",
        ]
        size = audit.get("image_size") or {}
        if size:
            lines.append(
                f"- original sizes (w, h): min {size.get('min')}, median {size.get('median')}, "
                f"max {size.get('max')}"
            )
        lines += _conflicting_lines(audit)
    return lines


def _conflicting_lines(audit: Mapping[str, Any]) -> list[str]:
    """Images whose duplicates carry another class: which were dropped (``data.conflicting_labels``)."""
    dropped = list(audit.get("dropped_conflicting") or [])
    conflicting = list(audit.get("conflicting_labels") or [])
    if dropped:
        return [
            f"- conflicting labels: {len(dropped)} image(s) dropped (`data.conflicting_labels: drop`), "
            "their duplicates being filed under another class: " + ", ".join(f"`{p}`" for p in dropped)
        ]
    if conflicting:
        return [
            f"- conflicting labels: {len(conflicting)} image(s) in duplicate groups spanning classes, kept "
            f"(`data.conflicting_labels: {audit.get('conflicting_policy', 'keep')}`): "
            + ", ".join(f"`{p}`" for p in conflicting)
        ]
    return []


def _split_section(splits: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    d = spec.get("data") or {}
    folds = splits.get("folds") or []
    lines = ["## Split protocol", ""]
    if not splits:
        return [*lines, "`splits.json` is missing."]
    lines += [
        f"- Hold-out test set: {len(splits.get('test') or [])} images, never seen by the search "
        "(used once, by `refit`).",
        f"- {len(folds)}-fold cross-validation on the rest, stratified by class, duplicate groups kept "
        f"inside one fold (seed {splits.get('seed', d.get('seed'))}"
        + (f", user-given file `{d.get('splits')}`" if d.get("splits") else "")
        + ").",
        "- Fold sizes (train / val): "
        + ", ".join(f"{len(f.get('train', []))}/{len(f.get('val', []))}" for f in folds),
        "- A trial is judged by the mean over folds at one common epoch (the epoch of the best mean), a "
        "figure selected over epochs and trials; the hold-out test set gives the unbiased one.",
    ]
    return lines


def _space_section(spec: Mapping[str, Any]) -> list[str]:
    search = spec.get("search") or {}
    space = search.get("space") or {}
    sched = search.get("scheduler") or {}
    lines = ["## Search", ""]
    lines.append(
        f"- Algorithm `{search.get('algorithm', '?')}` (sampler `{search.get('sampler', '-')}`, seed "
        f"{search.get('seed', '-')}), {search.get('num_samples', '?')} samples, metric "
        f"`{search.get('metric')}` ({search.get('mode')})"
    )
    if sched:
        lines.append(
            f"- Scheduler `{sched.get('type')}` (grace period {sched.get('grace_period')}, reduction "
            f"factor {sched.get('reduction_factor')}), max {((spec.get('train') or {}).get('epochs'))} epochs"
        )
    if search.get("time_budget") is not None:
        lines.append(
            f"- Time budget {search['time_budget']}: the trials it stopped are `budget stopped` where the "
            "scheduler cannot have stopped them (between ASHA / HyperBand rungs, any early end with fifo), "
            "else `scheduler stopped`"
        )
    if not space:
        return [*lines, "- No search space (a single config)."]
    rows = []
    for key, entry in space.items():
        entry = dict(entry)
        when = entry.pop("when", None)
        dist = ", ".join(f"{k} {json.dumps(v)}" for k, v in entry.items())
        cond = ", ".join(f"{k} in {json.dumps(v)}" for k, v in (when or {}).items())
        rows.append({"parameter": f"`{key}`", "distribution": dist, "active when": cond or "always"})
    return [*lines, "", to_markdown(pd.DataFrame(rows)).rstrip()]


def _status_counts(results: ExperimentResults) -> str:
    counts = results.trials["status"].value_counts()
    return ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items())


def _reproduce_section(spec: Mapping[str, Any], data: Mapping[str, Any], commit: str) -> list[str]:
    seeds = {
        "train.seed": (spec.get("train") or {}).get("seed", 0),
        "data.seed (splits)": (spec.get("data") or {}).get("seed", 42),
        "search.seed": (spec.get("search") or {}).get("seed", 0),
    }
    if not (spec.get("data") or {}).get("root"):
        seeds["data.synthetic.seed"] = ((spec.get("data") or {}).get("synthetic") or {}).get("seed", 0)
    lines = [
        "## Reproduce",
        "",
        f"- Git commit of the code: `{commit}`",
        f"- Data fingerprint: `{data.get('fingerprint', 'unknown')}`",
        "- Seeds: " + ", ".join(f"{k} {v}" for k, v in seeds.items()),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        f"- Platform: {platform.platform()}",
    ]
    return lines


def figure_title(name: str) -> str:
    """``score_by_model.encoder`` -> ``Score by model.encoder``; ``fold_spread`` -> ``Fold spread``."""
    if name.startswith("score_by_"):
        return f"Score by {name[len('score_by_') :]}"
    return name.replace("_", " ").capitalize()


def write_report(
    out_dir: str | Path,
    results: ExperimentResults,
    board: pd.DataFrame,
    plots: Mapping[str, Path | str],
    chosen: Mapping[str, Any],
    best_config: Path,
    where: list[str] | None = None,
) -> Path:
    """Write ``out_dir/report.md``; ``chosen`` holds ``trial_id``, ``score``, ``refit_epochs``."""
    out_dir = Path(out_dir)
    exp = results.exp_dir
    data = read_json(exp / "data.json")
    splits = read_json(exp / "splits.json")
    metric = board.attrs.get("metric", "score")
    lines = [
        f"# Analysis of experiment `{results.name}`",
        "",
        f"Experiment folder: `{exp}`. Trials: {len(results.trials)} ({_status_counts(results)}).",
    ]
    if where:
        lines.append(f"Restricted to trials with {', '.join(f'`{w}`' for w in where)}.")
    lines += [
        "",
        *_data_section(data, results.spec),
        "",
        *_split_section(splits, results.spec),
        "",
        *_space_section(results.spec),
        "",
    ]
    lines += [
        "## Leaderboard",
        "",
        f"Ranked by the CV mean of `{metric}` at the epoch where that mean was best; all metrics are "
        "mean ± std over folds at that epoch. Full table: `leaderboard.csv`, `leaderboard.md`; every "
        f"epoch of every trial: `trials.csv`. {CV_FIGURE_NOTE}",
        "",
        to_markdown(display_frame(board, top=REPORT_TOP)).rstrip(),
        "",
    ]
    if results.notes:
        lines += ["Notes: " + "; ".join(results.notes), ""]
    lines += ["## Figures", ""]
    for name, value in plots.items():
        title = figure_title(name)
        if isinstance(value, Path):
            rel = os.path.relpath(value, out_dir)
            lines += [f"### {title}", "", f"![{title}]({rel})", ""]
        else:
            lines += [f"### {title}", "", f"Not drawn: {value}.", ""]
    lines += [
        "## Chosen configuration",
        "",
        f"Trial `{chosen['trial_id']}`: CV {metric} {chosen['score']:.4f} "
        f"± {chosen.get('score_std', float('nan')):.4f} "
        f"at epoch {chosen.get('best_epoch')}; `refit --epochs auto` trains {chosen['refit_epochs']} epochs "
        "(the mean over folds of each fold's best epoch).",
        "",
        f"`{best_config.name}` (accepted unchanged by `train` and `refit`):",
        "",
        "```yaml",
        best_config.read_text(encoding="utf-8").rstrip(),
        "```",
        "",
        f"Next: `python launch.py refit {exp}{''.join(f' --where {w}' for w in where or [])}` (or "
        f"`--trial {chosen['trial_id']}`) trains it on all development images and evaluates it once on the "
        "test set.",
        "",
    ]
    lines += [*_reproduce_section(results.spec, data, git_commit()), ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- W&B


def wandb_mode(spec: Mapping[str, Any]) -> str:
    """The experiment's resolved W&B mode (``disabled`` when the spec has no wandb section)."""
    raw = spec.get("wandb")
    if not raw:
        return "disabled"
    from search.config import WandbConfig
    from trainables.schema import from_dict

    return from_dict(WandbConfig, raw).resolved_mode()


def log_summary_run(
    results: ExperimentResults,
    board: pd.DataFrame,
    plots: Mapping[str, Path | str],
    chosen: Mapping[str, Any],
) -> str | None:
    """Log the leaderboard and figures to one W&B run in the experiment's group; returns its folder.

    Does nothing (None) when W&B is disabled for the experiment. A W&B failure is a warning: the
    analysis on disk is complete without it.
    """
    mode = wandb_mode(results.spec)
    if mode == "disabled":
        return None
    from search.config import WandbConfig
    from trainables.schema import from_dict

    cfg = from_dict(WandbConfig, results.spec["wandb"])
    try:
        import wandb

        run = wandb.init(
            project=cfg.resolved_project(),
            entity=cfg.entity,
            group=results.exp_dir.name,
            job_type="analysis",
            name=f"{results.exp_dir.name}-analysis",
            dir=str(results.exp_dir),
            mode=mode,
            reinit="finish_previous",
            config={
                "experiment": str(results.exp_dir),
                "metric": board.attrs.get("metric"),
                "chosen_trial": chosen["trial_id"],
            },
            settings=wandb.Settings(
                silent=True, console="off", x_disable_stats=True, disable_git=True, init_timeout=30
            ),
        )
        table = display_frame(board)
        run.log({"leaderboard": wandb.Table(dataframe=table.astype(str))})
        run.log({name: wandb.Image(str(p)) for name, p in plots.items() if isinstance(p, Path)})
        run.summary.update(
            {
                "best_trial": chosen["trial_id"],
                "best_score": float(chosen["score"]),
                "refit_epochs": int(chosen["refit_epochs"]),
            }
        )
        folder = str(Path(run.dir).parent)
        run.finish()
        return folder
    except Exception as exc:  # network, auth, disk: never fail the analysis for the dashboard
        warnings.warn(
            f"W&B summary run not logged: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2
        )
        print(f"warning: W&B summary run not logged ({exc})", file=sys.stderr)
        return None
