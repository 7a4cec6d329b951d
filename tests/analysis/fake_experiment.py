"""A realistic experiment folder written without Ray: what the search leaves behind, file for file.

Trial folders hold ``params.json`` (the flat dotted config), ``result.json`` (one JSON line per epoch with
the loop's keys plus Ray's bookkeeping keys), ``progress.csv``, ``checkpoint_00000N/`` and, for a failed
trial, ``error.txt``; the folder holds the resolved ``spec.yaml``, ``splits.json``, ``data.json`` and Ray's
``experiment_state-*.json``. The layout was copied from a Ray 2.60 run. Scores are a known function of
the parameters, so tests can check orders and choices.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainables.spec import dump_spec

CLASSES = ("normal", "benign", "malignant")
METRICS = (
    "dice",
    "iou",
    "hd95",
    "nsd",
    "normal_fp_rate",
    "auc",
    "macro_f1",
    "acc",
    "balanced_acc",
    *(f"recall_{c}" for c in CLASSES),
    *(f"precision_{c}" for c in CLASSES),
    "loss",
)

SPEC: dict[str, Any] = {
    "name": "fake",
    "data": {
        "root": None,
        "image_size": 64,
        "folds": 2,
        "test_fraction": 0.25,
        "synthetic": {"n_per_class": [6, 8, 6], "size": 64, "seed": 0},
    },
    "model": {"encoder": "tu-test_efficientnet", "encoder_weights": None, "decoder": "unet"},
    "train": {"epochs": 4, "batch_size": 4, "lr": 1.0e-3, "warmup_epochs": 0},
    "search": {
        "algorithm": "optuna",
        "num_samples": 8,
        "metric": "val/score_best",
        "mode": "max",
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
        "space": {
            "model.encoder": {"choice": ["tu-test_efficientnet", "tu-test_resnet"]},
            "model.decoder": {"choice": ["unet", "fpn"]},
            "train.lr": {"loguniform": [1.0e-4, 1.0e-2]},
            "model.latent_aug.mode": {"choice": ["none", "noise"]},
            "model.latent_aug.sigma": {"uniform": [0.01, 0.2], "when": {"model.latent_aug.mode": ["noise"]}},
        },
    },
    "resources": {"cpu": 1, "gpu": 0},
    "failure": {"max_failures": 0},
    "checkpoint": {"num_to_keep": 2},
    "wandb": {"mode": "disabled"},
}


@dataclass
class FakeTrial:
    """One trial: its config, how many epochs it ran, and how it ended."""

    params: dict[str, Any]
    epochs: int
    ray_status: str = "TERMINATED"  # TERMINATED | ERROR | RUNNING
    patience: bool = False  # every fold stopped early (the loop's own early stopping)
    diverged: bool = False  # the loss became non-finite after ``epochs`` epochs (the trainable's last row)
    quality: float = 0.5  # the plateau of its score
    extra: dict[str, Any] = field(default_factory=dict)


def default_trials() -> list[FakeTrial]:
    """8 trials: 4 complete, 2 stopped by ASHA, 1 failed, 1 complete with conditional sigma."""
    enc, res = "tu-test_efficientnet", "tu-test_resnet"
    return [
        FakeTrial(
            {
                "model.encoder": enc,
                "model.decoder": "unet",
                "train.lr": 1e-3,
                "model.latent_aug.mode": "none",
            },
            4,
            quality=0.80,
        ),
        FakeTrial(
            {
                "model.encoder": res,
                "model.decoder": "unet",
                "train.lr": 3e-3,
                "model.latent_aug.mode": "none",
            },
            4,
            quality=0.60,
        ),
        FakeTrial(
            {
                "model.encoder": enc,
                "model.decoder": "fpn",
                "train.lr": 5e-4,
                "model.latent_aug.mode": "noise",
                "model.latent_aug.sigma": 0.1,
            },
            4,
            quality=0.70,
        ),
        FakeTrial(
            {"model.encoder": res, "model.decoder": "fpn", "train.lr": 2e-4, "model.latent_aug.mode": "none"},
            1,
            quality=0.30,
        ),
        FakeTrial(
            {
                "model.encoder": enc,
                "model.decoder": "unet",
                "train.lr": 8e-3,
                "model.latent_aug.mode": "noise",
                "model.latent_aug.sigma": 0.05,
            },
            2,
            quality=0.40,
        ),
        FakeTrial(
            {
                "model.encoder": res,
                "model.decoder": "unet",
                "train.lr": 1e-4,
                "model.latent_aug.mode": "none",
            },
            2,
            ray_status="ERROR",
            quality=0.95,
        ),
        FakeTrial(
            {"model.encoder": enc, "model.decoder": "fpn", "train.lr": 2e-3, "model.latent_aug.mode": "none"},
            4,
            quality=0.75,
        ),
        FakeTrial(
            {
                "model.encoder": res,
                "model.decoder": "unet",
                "train.lr": 6e-4,
                "model.latent_aug.mode": "noise",
                "model.latent_aug.sigma": 0.15,
            },
            4,
            quality=0.50,
        ),
    ]


def _fold_metrics(rng: np.random.Generator, quality: float, epoch: int) -> dict[str, float]:
    level = quality * (1 - math.exp(-epoch / 1.5))
    m = {name: float(np.clip(level + rng.normal(0, 0.03), 0, 1)) for name in METRICS}
    m["hd95"] = float(60 * (1 - level) + rng.normal(0, 1))
    m["normal_fp_rate"] = float(np.clip(1 - level + rng.normal(0, 0.03), 0, 1))
    m["loss"] = float(2 * (1 - level) + 0.1)
    m["score"] = 0.5 * m["dice"] + 0.5 * m["macro_f1"]
    return m


def trial_rows(trial: FakeTrial, trial_id: str, folds: int, seed: int) -> list[dict[str, Any]]:
    """The result.json rows of a trial: the loop's keys, then Ray's. Ray marks the last row ``done`` for
    every trial that ended without an error, the scheduler's stops included (seen in a Ray 2.60 run)."""
    rng = np.random.default_rng(seed)
    rows, best_score, fold_best = [], -math.inf, [(-math.inf, 0)] * folds
    start = 1_795_000_000 + seed * 100
    total = 0.0
    for epoch in range(1, trial.epochs + 1):
        per_fold = [_fold_metrics(rng, trial.quality, epoch) for _ in range(folds)]
        row: dict[str, Any] = {}
        for k, fm in enumerate(per_fold):
            row[f"fold{k}/train/loss"] = fm["loss"] * 0.9
            row.update({f"fold{k}/val/{n}": v for n, v in fm.items()})
            if fm["score"] > fold_best[k][0]:
                fold_best[k] = (fm["score"], epoch)
            row[f"fold{k}/best_epoch"] = float(fold_best[k][1])
            row[f"fold{k}/stopped"] = float(trial.patience and epoch == trial.epochs)
        for n in [*METRICS, "score"]:
            values = np.array([fm[n] for fm in per_fold])
            row[f"val/{n}"] = float(values.mean())
            row[f"val/{n}_std"] = float(values.std(ddof=1))
        row["train/loss"] = float(np.mean([fm["loss"] * 0.9 for fm in per_fold]))
        best_score = max(best_score, row["val/score"])
        row["val/score_best"] = best_score
        row.update(epoch=float(epoch), lr=1e-3, samples_per_s=50.0, time_this_epoch_s=2.0)
        total += 2.0
        row.update(
            timestamp=start + epoch,
            checkpoint_dir_name=f"checkpoint_{epoch - 1:06d}",
            should_checkpoint=True,
            done=trial.ray_status == "TERMINATED" and epoch == trial.epochs,
            training_iteration=epoch,
            trial_id=trial_id,
            date="2026-11-26_07-20-09",
            time_this_iter_s=2.0,
            time_total_s=total,
            pid=1234,
            hostname="vm",
            node_ip="192.0.2.2",
            config=trial.params,
            time_since_restore=total,
            iterations_since_restore=epoch,
        )
        rows.append(row)
    if trial.diverged:
        last = {k: math.nan for k in rows[-1] if k.startswith("val/") or "/val/" in k}
        rows.append(
            {
                **last,
                "epoch": float(trial.epochs + 1),
                "diverged": 1.0,
                "training_iteration": trial.epochs + 1,
                "diverged_error": "fold 1, epoch 3, batch 2: loss is nan (last finite loss 0.61)",
                "done": True,
                "trial_id": trial_id,
                "config": trial.params,
                "time_total_s": total + 1.0,
            }
        )
    return rows


def write_fake_experiment(
    root: Path,
    trials: Sequence[FakeTrial] | None = None,
    spec: Mapping[str, Any] | None = None,
    splits: Mapping[str, Any] | None = None,
    experiment_state: bool = True,
    name: str = "fake",
) -> Path:
    """Write the experiment folder ``root/name`` and return it."""
    trials = list(default_trials() if trials is None else trials)
    spec = dict(SPEC if spec is None else spec)
    exp = root / name
    exp.mkdir(parents=True)
    (exp / "spec.yaml").write_text(dump_spec(spec), encoding="utf-8")
    folds = int(spec["data"].get("folds", 3))
    if splits is None:
        splits = {"test": ["normal/normal (1).png"], "folds": [{"train": [], "val": []}] * folds, "seed": 42}
    (exp / "splits.json").write_text(json.dumps(splits, indent=1) + "\n", encoding="utf-8")
    data = {
        "fingerprint": "fake0123456789abcdef",
        "root": None,
        "n_images": 20,
        "image_size": 64,
        "resize": "letterbox",
        "class_names": list(CLASSES),
        "class_counts": [6, 8, 6],
        "audit": {
            "images": 20,
            "classes": {"normal": 6, "benign": 8, "malignant": 6},
            "duplicate_groups": [],
        },
    }
    (exp / "data.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    trial_data = []
    for i, trial in enumerate(trials):
        tid = f"abc12_{i:05d}"
        tdir = exp / f"train_trial_{tid}"
        tdir.mkdir()
        (tdir / "params.json").write_text(json.dumps(trial.params, indent=2), encoding="utf-8")
        rows = trial_rows(trial, tid, folds, seed=i)
        (tdir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        flat = [{k: v for k, v in r.items() if k != "config"} for r in rows]
        pd.DataFrame(flat).to_csv(tdir / "progress.csv", index=False)
        for e in range(max(0, trial.epochs - 2), trial.epochs):
            (tdir / f"checkpoint_{e:06d}").mkdir()
            (tdir / f"checkpoint_{e:06d}" / "loop.pt").write_bytes(b"")
        if trial.ray_status == "ERROR":
            (tdir / "error.txt").write_text(
                "Failure # 1 (occurred at 2026-11-26_07-20-18)\n\x1b[36mray::ImplicitFunc.train()\x1b[39m\n"
                'Traceback (most recent call last):\n  File "loop.py", line 1\n'
                "trainables.loop.NonFiniteLossError: non-finite training loss (nan) in fold 0\n",
                encoding="utf-8",
            )
        state = {
            "trial_id": tid,
            "status": trial.ray_status,
            "relative_logdir": tdir.name,
            "config": trial.params,
        }
        meta = {"num_failures": int(trial.ray_status == "ERROR"), "error_filename": None}
        trial_data.append([json.dumps(state), json.dumps(meta)])
    if experiment_state:
        state = {"trial_data": trial_data, "runner_data": {}, "stats": {"start_time": 0}}
        (exp / "experiment_state-2026-11-26_07-20-00.json").write_text(json.dumps(state), encoding="utf-8")
    return exp
