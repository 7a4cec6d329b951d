"""Refit: train the chosen configuration on all development images, then evaluate it once on the test set.

Source: an experiment folder (the leaderboard's best trial, or ``--trial``, among ``--where`` matches) or a
spec file (e.g. ``best_config.yaml``). Epochs: a number, or ``auto`` = the mean over folds of the chosen
trial's per-fold best epochs, rounded (a spec file has no trial, so ``auto`` is its ``train.epochs``).
The learning-rate schedule keeps the CV's span and stops at the refit's epochs, so that the refit
reproduces the training of the weights the CV scored (``--full-schedule``: it spans the refit's epochs and
anneals to their end); per-fold early stopping is off (there is no validation fold to stop on).

Training reuses the lockstep loop itself with a single train-only fold (no validation part) whose
training part is every development image (each fold's train + val of ``splits.json``), so the data path,
augmentation, sampler, loss, optimiser, schedule and AMP are the search's. Nothing is selected during the
refit, and the test images are never touched until the single evaluation.

``ensemble_folds``: instead of training, load the chosen trial's K fold models from a checkpoint (the
loop state the trainable saved) and average their probabilities, evaluated the same way. The weights
are those that earned the trial's score when they are on disk: the checkpoint of its scored epoch (the
leaderboard's best common epoch), or a later one where every fold had already stopped by then (a stopped
fold's weights stay frozen, see :mod:`trainables.loop`). Tune keeps only the newest
``checkpoint.num_to_keep`` checkpoints, so they often are not; the newest checkpoint is used instead and
``test_report.json`` records, per fold, the epoch of the weights used beside the epoch that was scored
(``weights``, ``weights_are_scored``), with a warning.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.evaluate import (
    HeldOutSet,
    evaluate,
    format_report,
    heldout_digest,
    heldout_from_dataset,
    record_evaluation,
    write_figures,
    write_markdown,
)
from analysis.leaderboard import build_leaderboard
from analysis.results import filter_where, load_results
from analysis.selection import choose_trial, refit_epochs, trial_spec
from model_zoo.errors import UserError
from search.errors import ExperimentError
from trainables.spec import Spec, load_spec, save_spec, spec_to_dict, with_data_root

BUNDLE_NAME = "model.safetensors"
REPORT_NAME = "test_report.json"
REPORT_MD = "test_report.md"


class RefitError(UserError, ValueError):
    """A refit that cannot start (bad source, existing outputs, data that differs from the search's)."""


@dataclass
class Chosen:
    """What to refit: the spec, where it came from, and how many epochs ``auto`` means."""

    spec: Spec
    exp_dir: Path | None
    trial_id: str | None
    auto_epochs: int
    auto_rule: str
    splits: dict | None
    fingerprint: str | None
    trial_dir: Path | None = None
    cv_score: float | None = None
    scored_epoch: int | None = None  # the epoch of cv_score (the trial's best common epoch)


def choose(
    source: str | Path,
    trial: str | None = None,
    where: Sequence[str] = (),
    metric: str | None = None,
    data_root: str | None = None,
) -> Chosen:
    """Resolve an experiment folder, a ``launch.py train`` run folder or a spec file into a
    :class:`Chosen`."""
    source = Path(source)
    if source.is_dir() and is_train_run(source):
        if trial or where:
            raise RefitError(f"--trial and --where need an experiment folder; {source} is one train run")
        return _from_train_run(source, data_root)
    if source.is_dir():
        return _from_experiment(source, trial, where, metric, data_root)
    if trial or where:
        raise RefitError("--trial and --where need an experiment folder, not a spec file")
    if not source.is_file():
        raise RefitError(f"{source}: neither an experiment folder nor a spec file")
    spec = load_spec(source)
    if data_root:
        spec = with_data_root(spec, data_root)
    return Chosen(
        spec,
        None,
        None,
        spec.train.epochs,
        "train.epochs of the spec (no trial to take best epochs from)",
        None,
        None,
    )


def is_train_run(folder: Path) -> bool:
    """Whether ``folder`` was written by ``launch.py train`` (its files; a search folder has trial
    folders)."""
    return all(
        (folder / name).is_file() for name in ("spec.yaml", "splits.json", "epochs.csv", "summary.json")
    )


def _from_train_run(run_dir: Path, data_root: str | None) -> Chosen:
    """A train run's spec and split (its files, not a recomputation); ``auto`` = its best common epoch."""
    spec = load_spec(run_dir / "spec.yaml")
    if data_root:
        spec = with_data_root(spec, data_root)
    summary = _read_json(run_dir / "summary.json")
    best = _epoch_or_none(summary.get("best_epoch"))
    if best is None:
        raise RefitError(f"{run_dir / 'summary.json'}: no best epoch yet (has the run finished an epoch?)")
    splits = json.loads((run_dir / "splits.json").read_text(encoding="utf-8"))
    data = _read_json(run_dir / "data.json")
    score = summary.get("score")
    return Chosen(
        spec=spec,
        exp_dir=run_dir,
        trial_id=None,
        auto_epochs=best,
        auto_rule="the train run's best common epoch (summary.json best_epoch)",
        splits=splits,
        fingerprint=data.get("fingerprint") or splits.get("fingerprint"),
        cv_score=float(score) if isinstance(score, int | float) else None,
        scored_epoch=best,
    )


def ranking_metric(spec: dict[str, Any]) -> str:
    """The leaderboard metric of an experiment: its search metric without ``val/`` and ``_best``."""
    metric = (spec.get("search") or {}).get("metric") or "val/score_best"
    if isinstance(metric, list):
        metric = metric[0]
    name = str(metric).removeprefix("val/")
    return name.removesuffix("_best")


def _from_experiment(
    exp_dir: Path, trial: str | None, where: Sequence[str], metric: str | None, data_root: str | None
) -> Chosen:
    results = filter_where(load_results(exp_dir), list(where))
    board = build_leaderboard(results, metric or ranking_metric(results.spec))
    row = choose_trial(board, trial)
    if row["status"] == "error":
        print(
            f"warning: trial {row['trial_id']} failed; refitting its config anyway (--trial)", file=sys.stderr
        )
    spec = trial_spec(results, str(row["trial_id"]))
    if data_root:
        spec = with_data_root(spec, data_root)
    splits_path = exp_dir / "splits.json"
    if not splits_path.is_file():
        raise ExperimentError(f"{splits_path}: missing; refit needs the split the search used")
    splits = json.loads(splits_path.read_text(encoding="utf-8"))
    data = _read_json(exp_dir / "data.json")
    info = results.trials.set_index("trial_id").loc[row["trial_id"]]
    return Chosen(
        spec=spec,
        exp_dir=exp_dir,
        trial_id=str(row["trial_id"]),
        auto_epochs=refit_epochs(row),
        auto_rule="mean over folds of the trial's per-fold best epochs, rounded",
        splits=splits,
        fingerprint=data.get("fingerprint") or splits.get("fingerprint"),
        trial_dir=exp_dir / str(info["trial_dir"]),
        cv_score=float(row["score"]),
        scored_epoch=_epoch_or_none(row.get("best_epoch")),
    )


def _epoch_or_none(value: Any) -> int | None:
    try:
        epoch = float(value)
    except (TypeError, ValueError):
        return None
    return int(epoch) if math.isfinite(epoch) and epoch >= 1 else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def parse_epochs(text: str | int, chosen: Chosen) -> tuple[int, str]:
    """``--epochs``: a positive integer, or ``auto`` (see :class:`Chosen`)."""
    if str(text).strip().lower() == "auto":
        return chosen.auto_epochs, chosen.auto_rule
    try:
        n = int(str(text))
    except ValueError:
        raise RefitError(f"--epochs {text!r}: expected a positive integer or auto") from None
    if n < 1:
        raise RefitError(f"--epochs {text!r}: expected a positive integer or auto")
    return n, "given with --epochs"


# -------------------------------------------------------------------------------------------- data


def load_data(chosen: Chosen) -> tuple[Any, Any, dict]:
    """The dataset, its :class:`SplitIndices` and the splits dict; checks the data is the search's."""
    from trainables.data.run_data import load_run_data
    from trainables.data.splits import split_indices

    dataset, splits = load_run_data(chosen.spec.data, chosen.splits, chosen.fingerprint)
    return dataset, split_indices(splits, dataset), splits


def held_out_set(dataset: Any, split: Any) -> HeldOutSet:
    """The test part of the dataset: working-size arrays, duplicate groups, original-size masks."""
    idx = np.asarray(split.test, dtype=np.int64)
    if idx.size == 0:
        raise RefitError("the split has no test images; nothing to evaluate on")
    return heldout_from_dataset(dataset, idx)


# ---------------------------------------------------------------------------------------- training


def refit_spec(spec: Spec, epochs: int, full_schedule: bool = False) -> Spec:
    """``spec`` with ``train.epochs`` = ``epochs``, per-fold early stopping off and ``data.train_fraction`` 1.

    The LR schedule keeps the CV's span (``schedule_epochs`` = the spec's, i.e. the CV's ``train.epochs``),
    so that the refit's epoch N is trained with the learning rates the CV's fold models had at their epoch
    N, the weights the CV scored. ``full_schedule`` (or N past the CV's span) spans the N epochs instead:
    the LR anneals to its end, a model the CV never scored (``busi_cpu_degrade`` annealed over 62 epochs
    instead of stopped at 62 of 100: CV accuracy, macro-F1 and normal specificity 0.02-0.03 lower, inside
    the fold spread; docs/results.md section 1).
    """
    n = int(epochs)
    cv_span = spec.train.schedule_span
    span = None if full_schedule or n >= cv_span else cv_span
    train = dataclasses.replace(spec.train, epochs=n, schedule_epochs=span, patience=None)
    data = dataclasses.replace(spec.data, train_fraction=1.0)  # a refit trains on every development image
    return dataclasses.replace(spec, train=train, data=data)


def train_on_dev(
    spec: Spec, dataset: Any, split: Any, device: str = "auto", progress: bool = True
) -> tuple[Any, list[dict[str, float]], Any]:
    """Train one model on every development image with the lockstep loop; returns (model, history, loop)."""
    from trainables.data.splits import SplitIndices
    from trainables.epoch_bar import step_with_bar
    from trainables.loop import CrossValLoop

    dev = np.asarray(split.dev, dtype=np.int64)
    if len(dev) < 2:
        raise RefitError(f"only {len(dev)} development image(s); cannot train")
    single = SplitIndices(test=split.test, dev=dev, folds=[(dev, dev[:0])])
    loop = CrossValLoop(spec, dataset, single, device)
    history = []
    while not loop.done:
        result = step_with_bar(loop, progress, label="refit epoch", leave=False)
        history.append(
            {
                "epoch": int(result["epoch"]),
                "train_loss": float(result["fold0/train/loss"]),
                "lr": float(result["lr"]),
                "samples_per_s": float(result.get("samples_per_s", math.nan)),
            }
        )
        if progress:
            print(
                f"refit epoch {int(result['epoch'])}/{spec.train.epochs}: train loss "
                f"{result['fold0/train/loss']:.4f}",
                file=sys.stderr,
            )
    return loop.folds[0].eval_module, history, loop


def trial_checkpoints(trial_dir: Path) -> list[Path]:
    """The loop state files of the trial's ``checkpoint_*`` folders, newest first (empty files skipped)."""
    from trainables.loop import CHECKPOINT_STATE_FILE

    folders = sorted((p for p in trial_dir.glob("checkpoint_*") if p.is_dir()), key=lambda p: p.name)
    states = [folder / CHECKPOINT_STATE_FILE for folder in reversed(folders)]
    return [p for p in states if p.is_file() and p.stat().st_size > 0]


def fold_weights(state: Mapping[str, Any], scored_epoch: int | None) -> list[dict[str, Any]]:
    """Per fold of a saved loop ``state``: the epoch of the weights it holds (``weights_epoch``) and of
    the weights that earned its part of the score at ``scored_epoch`` (``scored_epoch``; None when the
    state is older than that epoch or no epoch was scored), and whether they are the same (``exact``)."""
    from trainables.loop import fold_weights_epoch

    epoch, history = int(state["epoch"]), state["history"]
    out = []
    for k in range(len(state["folds"])):
        held = fold_weights_epoch(history, k, epoch)
        scored = None
        if scored_epoch is not None and scored_epoch <= epoch:
            scored = fold_weights_epoch(history, k, scored_epoch)
        out.append({"fold": k, "weights_epoch": held, "scored_epoch": scored, "exact": held == scored})
    return out


def scored_checkpoint(trial_dir: Path, scored_epoch: int | None) -> tuple[Path, dict[str, Any], list[dict]]:
    """The checkpoint whose fold weights are those scored at ``scored_epoch`` (every fold ``exact``), else
    the newest; returns its path, its loop state and :func:`fold_weights` of it."""
    from trainables.loop import CHECKPOINT_STATE_FILE, read_loop_state

    paths = trial_checkpoints(trial_dir)
    if not paths:
        raise RefitError(
            f"{trial_dir}: no checkpoint with {CHECKPOINT_STATE_FILE}; --ensemble-folds needs the trial's "
            "saved fold models (checkpoint.num_to_keep >= 1)"
        )
    found = []
    for path in paths:
        state = read_loop_state(path, mmap=True)
        weights = fold_weights(state, scored_epoch)
        if all(w["exact"] for w in weights):
            return path, state, weights
        found = found or [(path, state, weights)]
    return found[0]


def load_fold_models(
    chosen: Chosen, dataset: Any, split: Any, device: str = "auto"
) -> tuple[list[Any], dict[str, Any]]:
    """The trial's K fold models from :func:`scored_checkpoint`, and what was loaded: ``checkpoint``,
    ``checkpoint_epoch``, ``scored_epoch``, per-fold ``weights`` and ``weights_are_scored``."""
    from trainables.loop import CrossValLoop

    if chosen.trial_dir is None:
        raise RefitError("--ensemble-folds needs an experiment folder (the fold models live in its trials)")
    path, state, weights = scored_checkpoint(chosen.trial_dir, chosen.scored_epoch)
    loop = CrossValLoop(chosen.spec, dataset, split, device)
    loop.load_state_dict(state)
    exact = all(w["exact"] for w in weights)
    info = {
        "checkpoint": str(path.relative_to(chosen.exp_dir) if chosen.exp_dir else path),
        "checkpoint_epoch": loop.epoch,
        "scored_epoch": chosen.scored_epoch,
        "weights": weights,
        "weights_are_scored": exact,
    }
    if not exact:
        used = ", ".join(f"fold {w['fold']} epoch {w['weights_epoch']}" for w in weights)
        print(
            f"warning: the weights of the scored epoch {chosen.scored_epoch} are not on disk "
            f"(checkpoint.num_to_keep); evaluating the newest checkpoint instead: {used}",
            file=sys.stderr,
        )
    return [f.eval_module.eval() for f in loop.folds], info


# ------------------------------------------------------------------------------------------- run


def _check_out(out: Path) -> None:
    existing = [n for n in (BUNDLE_NAME, REPORT_NAME) if (out / n).exists()]
    if existing:
        raise RefitError(
            f"{out} already holds {', '.join(existing)}; choose another --out (nothing is overwritten)"
        )


def _meta(spec: Spec, chosen: Chosen, dataset: Any, digest: str, extra: dict[str, Any]) -> dict[str, Any]:
    from analysis.report import git_commit

    return {
        "class_names": list(dataset.class_names),
        "input_size": spec.data.image_size,
        "preprocessing": {
            "image_size": spec.data.image_size,
            "resize": spec.data.resize,
            "input": "gray uint8 / 255 as float [B,1,H,W]",
        },
        "min_area": spec.train.min_area,
        "tau": spec.train.tau,
        "spec": spec_to_dict(spec),
        "source": {
            "experiment": str(chosen.exp_dir) if chosen.exp_dir else None,
            "trial_id": chosen.trial_id,
            "data_fingerprint": dataset.fingerprint,
            "test_digest": digest,
            "git_commit": git_commit(),
        },
        **extra,
    }


def run_refit(
    chosen: Chosen,
    out_dir: str | Path,
    epochs: str | int = "auto",
    device: str = "auto",
    ensemble_folds: bool = False,
    n_boot: int = 1000,
    progress: bool = True,
    full_schedule: bool = False,
) -> dict[str, Any]:
    """Refit (or assemble the fold ensemble), evaluate once on the test set, write everything to
    ``out_dir``; returns the test report (with ``outputs`` naming the files)."""
    from model_zoo.bundle import save_bundle

    out = Path(out_dir)
    _check_out(out)
    dataset, split, splits = load_data(chosen)
    test = held_out_set(dataset, split)
    digest = heldout_digest(dataset.fingerprint, test.paths)
    out.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    if ensemble_folds:
        models, loaded = load_fold_models(chosen, dataset, split, device)
        spec = chosen.spec
        kind, info = "ensemble_folds", {"folds": len(models), **loaded}
        for k, model in enumerate(models):
            epoch = loaded["weights"][k]["weights_epoch"]
            path = save_bundle(
                out / f"fold{k}.safetensors",
                model,
                _meta(spec, chosen, dataset, digest, {"fold": k, "epoch": epoch}),
            )
            outputs[f"fold{k}_bundle"] = str(path)
        torch_device = next(models[0].parameters()).device
    else:
        n, rule = parse_epochs(epochs, chosen)
        spec = refit_spec(chosen.spec, n, full_schedule)
        fraction = float(splits.get("train_fraction", 1.0))
        if fraction < 1.0:
            print(
                f"warning: the CV trained on {fraction:g} of each fold's training images "
                f"(data.train_fraction) for {chosen.spec.train.epochs} epochs; the refit trains on all "
                f"{len(split.dev)} development images for {n} ({rule}), so its optimizer steps and data "
                "differ from what the CV scored",
                file=sys.stderr,
            )
        model, history, loop = train_on_dev(spec, dataset, split, device, progress)
        model.eval()
        models = [model]
        kind, info = (
            "refit",
            {
                "epochs": n,
                "epochs_rule": rule,
                "schedule_epochs": spec.train.schedule_span,
                "dev_images": len(split.dev),
                "amp": loop.amp.name,  # the precision it trained in (train.amp auto: measured on a CPU)
                "amp_probe": None if loop.amp_choice is None else loop.amp_choice.as_dict(),
            },
        )
        pd.DataFrame(history).to_csv(out / "refit_history.csv", index=False)
        outputs["history"] = str(out / "refit_history.csv")
        outputs["bundle"] = str(
            save_bundle(out / BUNDLE_NAME, model, _meta(spec, chosen, dataset, digest, info))
        )
        torch_device = loop.device
    outputs["spec"] = str(save_spec(spec, out / "spec.yaml"))

    from analysis.predict import predict_arrays

    gate = spec.train.lesion_gate
    seg_prob, probs = predict_arrays(models, test.images, torch_device, lesion_gate=gate)
    report = evaluate(
        test,
        seg_prob,
        probs,
        spec.train.tau,
        spec.train.min_area,
        n_boot=n_boot,
        progress=progress,
        lesion_gate=gate,
    )
    figures = write_figures(test, seg_prob, probs, report, out)
    outputs.update({k: str(v) for k, v in figures.items()})
    log_dir = chosen.exp_dir if chosen.exp_dir is not None else out
    earlier = record_evaluation(
        log_dir,
        digest,
        {
            "kind": kind,
            "trial_id": chosen.trial_id,
            "out_dir": str(out),
            "metrics": {k: v["value"] for k, v in report["metrics"].items()},
        },
    )
    report = {
        "kind": kind,
        "experiment": str(chosen.exp_dir) if chosen.exp_dir else None,
        "trial_id": chosen.trial_id,
        "cv_score": chosen.cv_score,
        **info,
        "test_digest": digest,
        "data_fingerprint": dataset.fingerprint,
        "previous_evaluations_of_this_test_set": len(earlier),
        **report,
        "outputs": {**outputs, "report": str(out / REPORT_NAME), "report_md": str(out / REPORT_MD)},
    }
    (out / REPORT_NAME).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    write_markdown(report, out / REPORT_MD, f"Test report: {kind} of {chosen.trial_id or chosen.spec.name}")
    if progress:
        print(format_report(report), file=sys.stderr)
    return report
