"""``launch.py`` verbs owned by ``analysis``: ``analyze``, ``compare``, ``learning-curve``,
``augment-preview``, ``refit``, ``predict``, ``evaluate``; and :func:`analyze`, the analysis as one
call (the pipeline uses it per stage).

Exit status: 0 success; 1 a run that partly failed (predict: some images could not be read); 2 bad
input (a folder that is not an experiment, an invalid spec, a file that is not a bundle, no GPU, a data
folder that is unusable or whose classes are not the bundle's).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OK, PARTIAL, BAD_INPUT = 0, 1, 2


@dataclass
class AnalysisOutput:
    """Where an analysis wrote its files, and what it chose."""

    out_dir: Path
    trials_csv: Path
    leaderboard_csv: Path
    leaderboard_md: Path
    best_config: Path
    report: Path
    plots: dict[str, Path | str]
    chosen: dict[str, Any]
    board: Any  # pandas.DataFrame
    wandb_dir: str | None = None


def analyze(
    exp_dir: str | Path,
    out_dir: str | Path | None = None,
    where: list[str] | None = None,
    metric: str | None = None,
    wandb: bool = True,
) -> AnalysisOutput:
    """Tidy table, leaderboard, ``best_config.yaml``, figures and ``report.md`` of an experiment folder.

    ``metric`` ranks the leaderboard (default: the search's metric without ``val/`` and ``_best``).
    """
    from analysis.leaderboard import build_leaderboard, write_leaderboard
    from analysis.plots import make_plots
    from analysis.refit import ranking_metric
    from analysis.report import log_summary_run, write_report
    from analysis.results import filter_where, load_results
    from analysis.selection import choose_trial, refit_epochs, trial_spec, write_best_config

    exp_dir = Path(exp_dir)
    results = filter_where(load_results(exp_dir), where or [])
    out = Path(out_dir) if out_dir else exp_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    trials_csv = out / "trials.csv"
    results.table().to_csv(trials_csv, index=False)
    board = build_leaderboard(results, metric or ranking_metric(results.spec))
    csv_path, md_path = write_leaderboard(board, out)
    row = choose_trial(board)
    tid = str(row["trial_id"])
    spec = trial_spec(results, tid)
    chosen = {
        "trial_id": tid,
        "score": float(row["score"]),
        "score_std": float(row["score_std"]),
        "best_epoch": row["best_epoch"],
        "refit_epochs": refit_epochs(row),
        "metric": board.attrs["metric"],
        "where": list(where or []),
    }
    best = write_best_config(
        spec,
        out / "best_config.yaml",
        {
            "best trial": f"{tid} of {exp_dir}",
            "where": " ".join(where or []) or "all trials",
            f"CV {chosen['metric']}": (
                f"{chosen['score']:.4f} +- {chosen['score_std']:.4f} at epoch {chosen['best_epoch']}"
            ),
            "refit --epochs auto": chosen["refit_epochs"],
        },
    )
    plots = make_plots(results, board, out / "plots")
    report = write_report(out, results, board, plots, chosen, best, where)
    (out / "analysis.json").write_text(json.dumps(chosen, indent=1, default=str) + "\n", encoding="utf-8")
    wandb_dir = log_summary_run(results, board, plots, chosen) if wandb else None
    return AnalysisOutput(out, trials_csv, csv_path, md_path, best, report, plots, chosen, board, wandb_dir)


def cmd_analyze(args: argparse.Namespace) -> int:
    """``launch.py analyze EXP_DIR [--out DIR] [--where k=v ...]``."""
    from analysis.leaderboard import display_frame, to_text

    result = analyze(args.exp_dir, args.out, args.where)
    print(to_text(display_frame(result.board, top=20, compact=True)))
    print(
        f"\nbest trial: {result.chosen['trial_id']} (CV {result.chosen['metric']} "
        f"{result.chosen['score']:.4f})"
    )
    print(f"leaderboard: {result.leaderboard_md}")
    print(f"report:      {result.report}")
    print(f"best config: {result.best_config}")
    skipped = {k: v for k, v in result.plots.items() if not isinstance(v, Path)}
    print(f"plots:       {result.out_dir / 'plots'} ({len(result.plots) - len(skipped)} figures)")
    for name, why in skipped.items():
        print(f"  not drawn: {name}: {why}")
    if result.wandb_dir:
        print(f"W&B summary run: {result.wandb_dir}")
    return OK


def cmd_compare(args: argparse.Namespace) -> int:
    """``launch.py compare REF_RUN RUN [RUN ...] [--labels ...] [--window N] [--figure F] [--json F]``."""
    from analysis.compare_runs import compare_runs

    report, data = compare_runs(args.runs, args.labels, args.metrics, args.window, args.figure)
    return _print_report(report, data, args.json_out)


def cmd_augment_preview(args: argparse.Namespace) -> int:
    """``launch.py augment-preview SPEC [--data DIR] [--set K=V] [--out F] [--per-class N] [--draws N]``."""
    from analysis.augment_preview import augment_preview
    from trainables.spec import load_spec, with_data_root

    spec = load_spec(args.spec, args.overrides)
    if args.data:
        spec = with_data_root(spec, args.data)
    out = Path(args.out) if args.out else Path(f"{spec.name}_augment.png")
    path = augment_preview(spec, out, per_class=args.per_class, draws=args.draws, seed=args.seed)
    print(f"figure: {path}")
    return OK


def _print_report(report: str, data: dict[str, Any], json_out: str | None) -> int:
    """Print a Markdown report, write its data to ``json_out`` (strict JSON) and name the figure drawn."""
    print(report)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"\ndata:   {json_out}")
    if data.get("figure"):
        print(f"figure: {data['figure']}")
    return OK


def cmd_learning_curve(args: argparse.Namespace) -> int:
    """``launch.py learning-curve RUN RUN [...] [--at end|selected] [--target COL=V] [--figure F]``."""
    from analysis.learning_curve import learning_curve, parse_targets

    report, data = learning_curve(
        args.runs, args.labels, args.metrics, args.window, args.at, parse_targets(args.targets), args.figure
    )
    return _print_report(report, data, args.json_out)


def cmd_refit(args: argparse.Namespace) -> int:
    """``launch.py refit (EXP_DIR | SPEC.yaml) [--trial ID] [--where k=v] [--epochs N|auto] ...``."""
    from analysis.refit import choose, run_refit

    chosen = choose(args.source, args.trial, args.where, data_root=args.data)
    if args.out:
        out = Path(args.out)
    elif chosen.exp_dir is not None:
        out = chosen.exp_dir / ("ensemble" if args.ensemble_folds else "refit")
    else:
        out = Path("runs") / "refit" / chosen.spec.name
    report = run_refit(
        chosen, out, args.epochs, args.device, args.ensemble_folds, full_schedule=args.full_schedule
    )
    outputs = report["outputs"]
    print(f"test report: {outputs['report']}")
    if "bundle" in outputs:
        print(
            f"model bundle: {outputs['bundle']}  (python launch.py predict --model {outputs['bundle']} ...)"
        )
    print(f"figures: {outputs['confusion_matrix']}, {outputs['roc']}, {outputs['gallery']}")
    return OK


def cmd_predict(args: argparse.Namespace) -> int:
    """``launch.py predict --model BUNDLE (--image PATH | --input-dir DIR --out-dir DIR) ...``."""
    from analysis.predict import (
        PredictError,
        Predictor,
        check_outputs,
        format_probs,
        predict_folder,
        save_mask,
        save_visualization,
    )

    device = args.device
    if args.gpu:
        if device not in ("cpu", "cuda") and not str(device).startswith("cuda"):
            print(f"error: --gpu conflicts with --device {device}", file=sys.stderr)
            return BAD_INPUT
        device = device if str(device).startswith("cuda") else "cuda"
    if args.input_dir and not args.out_dir:
        print(
            "error: --input-dir needs --out-dir (where masks, overlays and predictions.csv go)",
            file=sys.stderr,
        )
        return BAD_INPUT
    if args.image and not Path(args.image).is_file():
        print(f"error: --image {args.image}: no such file", file=sys.stderr)
        return BAD_INPUT
    if args.input_dir and not Path(args.input_dir).is_dir():
        print(f"error: --input-dir {args.input_dir}: not a folder", file=sys.stderr)
        return BAD_INPUT
    force, max_side = bool(getattr(args, "force", False)), int(getattr(args, "overlay_max_side", 1024))
    if max_side < 0:
        print(
            f"error: --overlay-max-side {max_side}: expected 0 (full size) or a positive size",
            file=sys.stderr,
        )
        return BAD_INPUT
    if args.image:
        # the mask goes to --out-dir, else beside --out, else here; never over the input, its folder (where
        # a BUSI set keeps "<stem>_mask.png", the expert's ground truth) or a mask predict did not write
        image = Path(args.image)
        out_dir = Path(args.out_dir or (Path(args.out).parent if args.out else "."))
        mask_path = out_dir / f"{image.stem}_mask.png"
        viz_path = Path(args.out) if args.out else out_dir / f"{image.stem}_viz.png"
        check_outputs([mask_path, viz_path], [image], image.parent, force)
    try:
        predictor = Predictor(args.model, device, args.tta)
    except PredictError as exc:
        if args.gpu:  # say which argument asked for the missing GPU
            print(f"error (--gpu): {exc}", file=sys.stderr)
            return BAD_INPUT
        raise

    if args.image:
        pred, gray = predictor.predict_file(args.image)
        mask = save_mask(pred.mask, mask_path)
        viz = save_visualization(pred, gray, viz_path, max_side)
        print(format_probs(pred))
        print(f"mask: {mask}")
        print(f"visualization: {viz}")
        return OK

    def report_error(path: str, message: str) -> None:
        print(f"skipped: {message}", file=sys.stderr)

    result = predict_folder(
        predictor, args.input_dir, args.out_dir, True, report_error, force=force, max_side=max_side
    )
    print(f"{len(result.predictions)} image(s) predicted -> {result.csv_path}")
    if result.skipped_masks:
        print(f"({result.skipped_masks} *_mask files left out)")
    if result.failures:
        print(
            f"{len(result.failures)} file(s) failed (listed in {Path(args.out_dir) / 'failures.csv'})",
            file=sys.stderr,
        )
        return PARTIAL
    return OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``launch.py evaluate --model BUNDLE --data DIR [--out DIR] [--device D] [--tta] ...``."""
    import shlex

    from analysis.evaluate import HEADLINE, format_report
    from analysis.external import run_evaluation

    command = ["python", "launch.py", "evaluate", "--model", args.model, "--data", args.data]
    command += ["--out", args.out] if args.out else []
    command += ["--device", args.device, "--missing-mask", args.missing_mask, "--n-boot", str(args.n_boot)]
    command += ["--tta"] if args.tta else []
    report = run_evaluation(
        args.model,
        args.data,
        args.out,
        args.device,
        args.tta,
        args.missing_mask,
        args.n_boot,
        progress=True,
        command=shlex.join(command),
    )
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    outputs = report["outputs"]
    print(f"{Path(args.model).name} on {report['data_root']}: " + format_report(report, HEADLINE))
    print(f"report: {outputs['report_md']} ({outputs['report']})")
    print(f"figures: {outputs['confusion_matrix']}, {outputs['roc']}, {outputs['gallery']}")
    print(f"logged in {outputs['log']}")
    return OK
