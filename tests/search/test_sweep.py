"""``wandb-sweep``: the spec's space as a W&B sweep config."""

from __future__ import annotations

from pathlib import Path

import yaml

import launch

SPEC = {
    "name": "sw",
    "model": {"encoder": "tu-test_efficientnet"},
    "train": {"epochs": 6},
    "search": {
        "num_samples": 10,
        "scheduler": {"type": "asha", "grace_period": 2, "reduction_factor": 3},
        "space": {
            "model.attention": {"choice": ["none", "se"]},
            "train.lr": {"loguniform": [1.0e-5, 1.0e-3]},
            "train.weight_decay": {"uniform": [0.0, 0.01]},
            "train.batch_size": {"quniform": [4, 16, 4]},
            "train.epochs": {"randint": [3, 6]},
            "train.grad_clip": {"qloguniform": [0.5, 4.0, 0.5]},
            "model.latent_aug.mode": {"choice": ["none", "noise"]},
            "model.latent_aug.sigma": {"uniform": [0.01, 0.2], "when": {"model.latent_aug.mode": ["noise"]}},
        },
    },
    "wandb": {"project": "proj", "entity": "team"},
}


def test_sweep_export(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    out = tmp_path / "sweep.yaml"
    assert launch.main(["wandb-sweep", str(spec_path), "--out", str(out)]) == 0
    sweep = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert sweep["method"] == "bayes"
    assert sweep["metric"] == {"name": "val/score_best", "goal": "maximize"}
    assert sweep["project"] == "proj" and sweep["entity"] == "team"
    assert sweep["early_terminate"] == {"type": "hyperband", "min_iter": 2, "eta": 3}
    assert sweep["command"] == ["${env}", "${interpreter}", "${program}", "train", str(spec_path), "--wandb"]
    assert sweep["program"] == "launch.py" and sweep["run_cap"] == 10
    params = sweep["parameters"]
    assert params["model.attention"] == {"values": ["none", "se"]}
    assert params["train.lr"] == {"distribution": "log_uniform_values", "min": 1.0e-5, "max": 1.0e-3}
    assert params["train.weight_decay"] == {"distribution": "uniform", "min": 0.0, "max": 0.01}
    assert params["train.batch_size"] == {"distribution": "q_uniform", "min": 4, "max": 16, "q": 4}
    assert params["train.epochs"] == {"distribution": "int_uniform", "min": 3, "max": 6}
    assert params["train.grad_clip"] == {
        "distribution": "q_log_uniform_values",
        "min": 0.5,
        "max": 4.0,
        "q": 0.5,
    }
    assert "model.latent_aug.sigma" in params and "model.latent_aug.sigma" in sweep["description"]


def test_sweep_of_grid_and_random(tmp_path: Path) -> None:
    from search.config import load_search_spec
    from search.sweep import sweep_config

    doc = yaml.safe_load(yaml.safe_dump(SPEC))
    doc["search"]["algorithm"] = "grid"
    doc["search"]["scheduler"] = {"type": "fifo"}
    doc["search"]["space"] = {
        "model.attention": {"grid": ["none", "se"]},
        "train.batch_size": {"choice": [4, 8]},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    sweep = sweep_config(load_search_spec(path), "grid.yaml")
    assert sweep["method"] == "grid" and "run_cap" not in sweep and "early_terminate" not in sweep
    assert sweep["parameters"]["train.batch_size"] == {"values": [4, 8]}
