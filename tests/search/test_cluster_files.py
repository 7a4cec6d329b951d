"""cluster.yaml passes Ray's own autoscaler validation offline; .rayignore keeps bulk out of job uploads."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_cluster_yaml_passes_ray_validation() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text(encoding="utf-8"))
    config = prepare_config(raw)
    validate_config(config)
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert any(t["resources"].get("GPU") == 4 and t["max_workers"] > t["min_workers"] for t in workers)
    setup = " ".join(config["setup_commands"])
    assert "requirements.txt" in setup
    assert all(
        "RAY_AUTH_MODE=token" in " ".join(c)
        for c in (config["head_start_ray_commands"], config["worker_start_ray_commands"])
    )


def test_rayignore_keeps_bulk_out_of_the_working_dir() -> None:
    from ray._private.runtime_env.packaging import get_excludes_from_ignore_files

    (excluded,) = get_excludes_from_ignore_files(ROOT, include_gitignore=False)  # .rayignore alone
    for path in (
        ".venv/bin/python",
        "runs/x/spec.yaml",
        ".cache/bus-search/a.npy",
        "data/busi/x.png",
        "wandb/run/x",
        "model_zoo/__pycache__/x.pyc",
    ):
        assert excluded(ROOT / path), path
    for path in (
        "launch.py",
        "search/tuner.py",
        "spaces/quickstart.yaml",
        "requirements.txt",
        "trainables/data/cache.py",
    ):
        assert not excluded(ROOT / path), path
