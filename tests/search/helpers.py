"""Tiny search specs and result readers shared by the Ray tests of tests/search."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

TINY: dict[str, Any] = {
    "name": "tiny",
    "data": {
        "root": None,
        "image_size": 32,
        "folds": 2,
        "test_fraction": 0.2,
        "synthetic": {"n_per_class": [6, 10, 8], "size": 32, "seed": 0},
    },
    "model": {"encoder": "tu-test_efficientnet", "encoder_weights": None},
    "train": {"epochs": 3, "batch_size": 8, "warmup_epochs": 0},
    "search": {
        "algorithm": "random",
        "num_samples": 2,
        "scheduler": {"type": "fifo"},
        "space": {
            "model.attention": {"choice": ["none", "se"]},
            "train.lr": {"loguniform": [5.0e-4, 2.0e-3]},
        },
    },
    "resources": {"cpu": 1, "gpu": 0},
    "failure": {"max_failures": 2},
    "checkpoint": {"num_to_keep": 2},
    "wandb": {"mode": "disabled"},
}


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: nested mappings are merged, anything else replaces (``search.space`` is replaced)."""
    out = json.loads(json.dumps(base))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "space":
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def write_spec(folder: Path, changes: dict[str, Any] | None = None, name: str = "spec.yaml") -> Path:
    """TINY merged with ``changes``, written as YAML into ``folder``."""
    path = folder / name
    path.write_text(yaml.safe_dump(merge(TINY, changes or {})), encoding="utf-8")
    return path


def trial_dirs(exp: Path) -> list[Path]:
    return sorted(p for p in exp.iterdir() if p.is_dir() and p.name.startswith("train_trial_"))


def results(trial_dir: Path) -> list[dict[str, Any]]:
    """Every result row Tune wrote for a trial (result.json, one JSON object per line)."""
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
