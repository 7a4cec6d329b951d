"""Tiny pipeline files for the pipeline tests: three small stage specs chained by inheritance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from pipeline.records import AnalysisFiles, StageResult, Winner

ROOT = Path(__file__).resolve().parents[2]
THESIS = ROOT / "spaces" / "thesis.yaml"
V1_STATE = (
    Path(__file__).parent / "data" / "pipeline_v1.json"
)  # a pipeline.json as the dict-based code wrote it

BASE: dict[str, Any] = {
    "data": {
        "root": None,
        "image_size": 32,
        "folds": 2,
        "synthetic": {"n_per_class": [6, 10, 8], "size": 32},
    },
    "model": {"encoder": "tu-test_efficientnet", "encoder_weights": None},
    "train": {"epochs": 2, "batch_size": 8, "warmup_epochs": 0},
    "resources": {"cpu": 1, "gpu": 0},
    "wandb": {"mode": "disabled"},
}

STAGES: dict[str, dict[str, Any]] = {
    "enc": {
        "search": {
            "algorithm": "grid",
            "scheduler": {"type": "fifo"},
            "space": {"model.encoder": {"grid": ["tu-test_efficientnet", "tu-test_resnet"]}},
        }
    },
    "dec": {
        "search": {
            "algorithm": "grid",
            "scheduler": {"type": "fifo"},
            "space": {"model.decoder": {"grid": ["unet", "fpn"]}},
        }
    },
    "att": {
        "search": {
            "algorithm": "random",
            "num_samples": 2,
            "scheduler": {"type": "fifo"},
            "space": {
                "model.attention": {"choice": ["none", "se"]},
                "train.lr": {"loguniform": [5.0e-4, 2.0e-3]},
            },
        }
    },
}


def spec(name: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    d = json.loads(json.dumps({"name": name, **BASE, **STAGES[name]}))
    for key, value in (changes or {}).items():
        d[key] = value
    return d


def write_pipeline(
    folder: Path, pipeline: dict[str, Any] | None = None, specs: dict[str, dict] | None = None
) -> Path:
    """A pipeline file ``pipeline.yaml`` and its stage specs in ``folder``; ``pipeline`` replaces
    top-level keys."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in STAGES:
        d = (specs or {}).get(name) or spec(name)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(d), encoding="utf-8")
    doc: dict[str, Any] = {
        "name": "tiny",
        "stages": [
            {"name": "enc", "spec": "enc.yaml", "rank_by": "macro_f1"},
            {"name": "dec", "spec": "dec.yaml", "inherit": {"from": "enc", "fields": ["model.encoder"]}},
            {
                "name": "att",
                "spec": "att.yaml",
                "inherit": {"from": "dec", "fields": ["model.encoder", "model.decoder"]},
            },
        ],
        "reference": {"model.encoder": "efficientnet-b6", "model.decoder": "fpn"},
        "smoke": {
            "set": {"train.epochs": 1},
            "grid_values": 1,
            "num_samples": 1,
            "encoder_stand_ins": {"efficientnet-b6": "tu-test_efficientnet"},
        },
    }
    doc.update(pipeline or {})
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def stage_result(
    trial_id: str,
    params: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    metric: str = "score",
) -> StageResult:
    """A stage's analysis outcome whose winner is ``trial_id`` (score 0.5 ± 0.1), no runner-up."""
    return StageResult(
        metric=metric,
        lower_is_better=False,
        n_trials=2,
        trial_status={"completed": 2},
        winner=Winner(trial_id=trial_id, params=params or {}, score=0.5, score_std=0.1, config=config or {}),
        runner_up=None,
        analysis=AnalysisFiles(
            dir="analysis",
            report="analysis/report.md",
            leaderboard="analysis/leaderboard.md",
            best_config="analysis/best_config.yaml",
        ),
    )
