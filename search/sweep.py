"""Export a spec's space as a W&B sweep config, for teams that drive the search from W&B agents.

``wandb sweep sweep.yaml`` then ``wandb agent ENTITY/PROJECT/ID`` runs ``launch.py train SPEC --wandb``
per config; ``train --wandb`` reads the sweep's parameters (dotted keys) from ``wandb.config``.
W&B sweeps have no conditional parameters: a parameter with ``when`` is exported unconditionally and the
trainer leaves it at the spec's value when its condition does not hold (the same rule as a Tune search).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from search.config import SearchSpec
from search.space import Param, Space, space_from_spec

METHODS = {"optuna": "bayes", "random": "random", "grid": "grid"}


def sweep_parameter(p: Param) -> dict[str, Any]:
    """One parameter in W&B's sweep syntax (bounds inclusive, as in our spaces)."""
    if p.discrete:
        return {"values": list(p.values)}
    lo, hi = (int(p.low), int(p.high)) if p.integer else (p.low, p.high)
    if p.dist == "randint" or (p.integer and p.dist == "uniform"):
        return {"distribution": "int_uniform", "min": lo, "max": hi}
    if p.dist == "uniform":
        return {"distribution": "uniform", "min": lo, "max": hi}
    if p.dist == "loguniform":
        return {"distribution": "log_uniform_values", "min": lo, "max": hi}
    q = int(p.q) if p.integer else p.q
    if p.dist == "quniform":
        return {"distribution": "q_uniform", "min": lo, "max": hi, "q": q}
    return {"distribution": "q_log_uniform_values", "min": lo, "max": hi, "q": q}


def sweep_config(spec: SearchSpec, spec_path: str, space: Space | None = None) -> dict[str, Any]:
    """The sweep dict: method, metric, parameters, early_terminate (hyperband), command, project."""
    space = space or space_from_spec(spec)
    s = spec.search
    metric, mode = s.metrics[0], s.modes[0]
    config: dict[str, Any] = {
        "name": spec.name,
        "project": spec.wandb.resolved_project(),
        "program": "launch.py",
        "method": METHODS[s.algorithm],
        "metric": {"name": metric, "goal": "maximize" if mode == "max" else "minimize"},
        "parameters": {p.key: sweep_parameter(p) for p in space.params},
        "command": ["${env}", "${interpreter}", "${program}", "train", spec_path, "--wandb"],
    }
    if spec.wandb.entity:
        config["entity"] = spec.wandb.entity
    if s.algorithm != "grid":
        config["run_cap"] = s.num_samples
    if s.scheduler.type in ("asha", "hyperband"):
        config["early_terminate"] = {
            "type": "hyperband",
            "min_iter": s.scheduler.grace_period,
            "eta": int(s.scheduler.reduction_factor),
        }
    conditional = [p.key for p in space.params if p.when]
    if conditional:
        config["description"] = (
            f"Exported from {spec_path}. W&B sweeps have no conditions: {', '.join(conditional)} are "
            "sampled always and left at the spec's value by `train` when their `when` does not hold."
        )
    return config


def write_sweep(spec: SearchSpec, spec_path: str, out: str | Path) -> Path:
    """Write :func:`sweep_config` as YAML to ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(sweep_config(spec, spec_path), sort_keys=False), encoding="utf-8")
    return out
