#!/usr/bin/env python
"""Command line of the breast-ultrasound architecture and hyperparameter search.

One verb per stage of the pipeline. This file only declares arguments; each verb is a function
``cmd_<verb>(args) -> exit status`` in the package that owns it, imported when the verb runs so that
``launch.py audit`` does not pay for importing torch or Ray.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from model_zoo.errors import ProjectError
from trainables.data.config import DEFAULT_CLASSES


def _run_report_arguments(p: argparse.ArgumentParser, runs: str, window: str, figure: str) -> None:
    """The arguments ``compare`` and ``learning-curve`` share (run folders, labels, metrics, outputs)."""
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help=runs)
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one name per run (default: folder names)")
    p.add_argument(
        "--metrics",
        nargs="+",
        metavar="COLUMN",
        help="epochs.csv columns (default: Dice, accuracy, "
        "macro-F1, AUC, normal specificity, selection score)",
    )
    p.add_argument("--window", type=int, default=5, help=window)
    p.add_argument("--figure", metavar="OUT.png", help=figure)
    p.add_argument("--json", dest="json_out", metavar="OUT.json", help="also write the report's data as JSON")


def _spec_arguments(p: argparse.ArgumentParser, example: str) -> None:
    """The arguments every verb that reads a spec takes: the file, ``--data``, ``--set`` overrides."""
    p.add_argument("spec", metavar="SPEC.yaml")
    p.add_argument("--data", metavar="DIR", help="override data.root")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a spec field, e.g. --set {example} (repeatable)",
    )


def _verb(sub: argparse._SubParsersAction, name: str, target: str, help: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=help)
    parser.set_defaults(_target=target)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="launch.py",
        description="Joint lesion segmentation + classification search for breast ultrasound (Ray Tune).",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = _verb(
        sub, "audit", "trainables.data.commands:cmd_audit", "check a BUSI-format folder and report problems"
    )
    p.add_argument("data_dir", help="ROOT with one folder per class (normal/, benign/, malignant/)")
    p.add_argument("--json", dest="json_out", metavar="OUT.json", help="also write the report as JSON")
    p.add_argument(
        "--classes", nargs="+", default=list(DEFAULT_CLASSES), help="class folder names, in label order"
    )
    p.add_argument(
        "--missing-mask",
        choices=["error", "empty", "skip"],
        default="error",
        help="an image without a mask: fail, treat as no lesion, or leave it out",
    )

    p = _verb(
        sub,
        "splits",
        "trainables.data.commands:cmd_splits",
        "write a leakage-safe hold-out test set + stratified group K folds",
    )
    p.add_argument("data_dir")
    p.add_argument("--out", required=True, metavar="splits.json")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        help="keep this share of each fold's training images (learning curves; nested for one seed)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--classes", nargs="+", default=list(DEFAULT_CLASSES))
    p.add_argument("--missing-mask", choices=["error", "empty", "skip"], default="error")
    p.add_argument(
        "--conflicting-labels",
        choices=["drop", "keep"],
        default="drop",
        help="images whose duplicates are filed under another class: leave out (default) or keep",
    )

    p = _verb(
        sub,
        "make-synthetic",
        "trainables.data.commands:cmd_make_synthetic",
        "write the built-in synthetic ultrasound set in BUSI layout",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--n-per-class", type=int, nargs=3, metavar=("NORMAL", "BENIGN", "MALIGNANT"))
    p.add_argument("--size", type=int, default=None, metavar="PX")
    p.add_argument("--seed", type=int, default=0)

    p = _verb(
        sub,
        "schema",
        "pipeline.commands:cmd_schema",
        "print the JSON Schema of a spec (> spec.schema.json) or, with --pipeline, of the pipeline file "
        "(> pipeline.schema.json) for an editor's YAML extension",
    )
    p.add_argument(
        "--pipeline",
        action="store_true",
        help="the schema of a pipeline file (spaces/thesis.yaml) instead of a spec's",
    )

    p = _verb(sub, "models", "model_zoo.commands:cmd_models", "list the registered model components")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--describe", metavar="SPEC.yaml", help="describe the model of a spec (params, FLOPs)")
    p.add_argument("--size", type=int, default=256, help="input size for --describe")

    p = _verb(
        sub,
        "fetch-weights",
        "model_zoo.commands:cmd_fetch_weights",
        "download pretrained encoder weights into the local cache (run where there is internet)",
    )
    p.add_argument("encoders", nargs="+", metavar="ENCODER")
    p.add_argument("--weights", default="imagenet")

    p = _verb(sub, "train", "trainables.commands:cmd_train", "train one config with the K-fold lockstep loop")
    _spec_arguments(p, "train.lr=1e-3")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/train/<name>)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from the state saved in --out")
    p.add_argument(
        "--wandb", action="store_true", help="log to Weights & Biases (reads a sweep's parameters)"
    )

    p = _verb(
        sub, "search", "search.commands:cmd_search", "run an architecture + hyperparameter search on Ray Tune"
    )
    _spec_arguments(p, "search.num_samples=8")
    p.add_argument(
        "--storage", default="runs", metavar="PATH|URI", help="local folder, NFS path, s3://, gs://"
    )
    p.add_argument(
        "--name",
        help="experiment folder name inside --storage (default: the spec's name; letters, digits, . _ + -)",
    )
    p.add_argument(
        "--address", help="join a Ray cluster: auto | HOST:PORT | ray://HOST:PORT (default: local Ray)"
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the experiment of the same name")
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing experiment of that name (only an experiment folder; it is kept aside "
        "until the new run has started)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="Ray's full output (every result line, its warnings and INFO logs)",
    )

    p = _verb(sub, "resume", "search.commands:cmd_resume", "resume an interrupted search from its folder")
    p.add_argument("exp_dir", metavar="EXP_DIR")
    p.add_argument("--address", help="join a Ray cluster instead of starting a local one")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="Ray's full output (every result line, its warnings and INFO logs)",
    )

    p = _verb(
        sub, "wandb-sweep", "search.commands:cmd_wandb_sweep", "export a spec's space as a W&B sweep config"
    )
    p.add_argument("spec", metavar="SPEC.yaml")
    p.add_argument("--out", required=True, metavar="sweep.yaml")

    p = _verb(
        sub, "analyze", "analysis.commands:cmd_analyze", "leaderboard, plots and report of a finished search"
    )
    p.add_argument("exp_dir", metavar="EXP_DIR")
    p.add_argument("--out", metavar="DIR", help="default EXP_DIR/analysis")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="restrict to trials whose parameter KEY equals VALUE (repeatable)",
    )

    p = _verb(
        sub,
        "compare",
        "analysis.commands:cmd_compare",
        "paired comparison of train runs on the same folds: per-fold differences and curves",
    )
    _run_report_arguments(
        p,
        runs="train run folders; the first is the reference",
        window="also compare the mean of the last N common epochs",
        figure="draw every run's CV mean per epoch",
    )

    p = _verb(
        sub,
        "augment-preview",
        "analysis.commands:cmd_augment_preview",
        "draw development images of each class as loaded and after a spec's train.augment (no training)",
    )
    _spec_arguments(p, "train.augment.rotate=30")
    p.add_argument("--out", metavar="OUT.png", help="default <spec name>_augment.png")
    p.add_argument("--per-class", type=int, default=3, help="images of each class (columns)")
    p.add_argument("--draws", type=int, default=3, help="augmented draws of the batch (rows)")
    p.add_argument("--seed", type=int, default=0, help="picks the images and the augmentation stream")

    p = _verb(
        sub,
        "learning-curve",
        "analysis.commands:cmd_learning_curve",
        "CV figures against training images: runs of one recipe at several data.train_fraction",
    )
    _run_report_arguments(
        p,
        runs="train run folders validated on the same folds",
        window="'end' reading: mean of the last N epochs",
        figure="draw each metric against training images",
    )
    p.add_argument(
        "--at",
        choices=["end", "selected"],
        default="end",
        help="fit the last epochs' mean (end) or each run's best common epoch (selected)",
    )
    p.add_argument(
        "--target",
        dest="targets",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="report the training images at which the fit crosses VALUE (repeatable)",
    )

    p = _verb(
        sub,
        "refit",
        "analysis.commands:cmd_refit",
        "train the chosen config on all development images, then evaluate once on the test set",
    )
    p.add_argument("source", metavar="EXP_DIR|SPEC.yaml")
    p.add_argument(
        "--trial", metavar="ID", help="a trial id of the experiment (default: the leaderboard's best)"
    )
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--epochs", default="auto", help="N, or auto = mean over folds of the trial's best epochs")
    p.add_argument("--out", metavar="DIR", help="default EXP_DIR/refit")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--data", metavar="DIR", help="override data.root (with SPEC.yaml)")
    p.add_argument(
        "--ensemble-folds",
        action="store_true",
        help="evaluate the chosen trial's K fold models as an averaging ensemble instead of refitting",
    )
    p.add_argument(
        "--full-schedule",
        action="store_true",
        help="anneal the LR schedule over the refit's epochs (default: keep the CV's schedule and stop at "
        "epoch N, as the weights the CV scored were trained)",
    )

    p = _verb(
        sub, "predict", "analysis.commands:cmd_predict", "segment and classify new images with a model bundle"
    )
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a .safetensors bundle written by refit")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", metavar="PATH")
    src.add_argument("--input-dir", metavar="DIR")
    p.add_argument("--out-dir", metavar="DIR", help="where masks, overlays and predictions.csv go")
    p.add_argument("--out", metavar="viz.png", help="visualization of a single image")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--gpu", action="store_true", help="alias of --device cuda (fails clearly without a GPU)")
    p.add_argument("--tta", action="store_true", help="average over horizontal-flip test-time augmentation")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into the input folder tree and over existing masks that predict did not write "
        "(never over an input file)",
    )
    p.add_argument(
        "--overlay-max-side",
        type=int,
        default=1024,
        metavar="PX",
        help="longest side of overlays and visualizations (0: the image's own size); masks are always "
        "written at the original size",
    )

    p = _verb(
        sub,
        "evaluate",
        "analysis.commands:cmd_evaluate",
        "external validation: a model bundle on any labelled BUSI-format folder (no training)",
    )
    p.add_argument("--model", required=True, metavar="BUNDLE", help="a .safetensors bundle written by refit")
    p.add_argument(
        "--data", required=True, metavar="DIR", help="ROOT with one folder per class of the bundle"
    )
    p.add_argument("--out", metavar="DIR", help="default BUNDLE_DIR/evaluations/<bundle>-<data folder>")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--tta", action="store_true", help="average over horizontal-flip test-time augmentation")
    p.add_argument(
        "--missing-mask",
        choices=["error", "empty", "skip"],
        default="error",
        help="an image without a mask: fail, treat as no lesion, or leave it out",
    )
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")

    p = _verb(
        sub,
        "pipeline",
        "pipeline.commands:cmd_pipeline",
        "run the thesis study: chained stage searches, analysis, refit of the final winner",
    )
    p.add_argument("thesis", metavar="THESIS.yaml", help="the stage list, e.g. spaces/thesis.yaml")
    p.add_argument("--data", metavar="DIR", help="override data.root of every stage")
    p.add_argument("--storage", default="runs/pipeline", metavar="PATH|URI")
    p.add_argument("--name", help="pipeline folder name (default: the thesis file's name)")
    p.add_argument(
        "--smoke", action="store_true", help="shrink every stage for a quick check of the mechanics"
    )
    p.add_argument(
        "--rerun-stage",
        dest="rerun_stage",
        action="append",
        default=[],
        metavar="STAGE",
        help="allow re-running a stage whose spec changed (repeatable)",
    )
    p.add_argument("--address", help="join a Ray cluster instead of starting a local one")
    p.add_argument("--verbose", action="store_true", help="Ray's full output in every stage's search")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = args._target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(args) or 0)
    except ProjectError as exc:  # the one place errors become exit codes: 2 bad input, 1 a failed run
        print(exc.describe(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
