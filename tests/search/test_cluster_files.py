"""cluster.yaml passes Ray's own autoscaler validation offline and matches docs/cluster.md (two IAM
profiles, our own security group, the dashboard on the loopback, pinned set-up, the W&B key from a secret);
.rayignore keeps bulk out of job uploads."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

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


def _cluster() -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(yaml.safe_load((ROOT / "cluster.yaml").read_text(encoding="utf-8")))


def _profile_name(node_type: dict[str, Any]) -> str:
    return node_type["node_config"]["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1]


def test_head_and_workers_have_their_own_profiles_and_security_group() -> None:
    """The autoscaler's rights on the head only; every node in one group of our own (a node type without
    SecurityGroupIds gets Ray's default group, whose SSH rule is open to 0.0.0.0/0)."""
    config = _cluster()
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert _profile_name(head) == "bus-search-head"
    assert {_profile_name(t) for t in workers} == {"bus-search-worker"}
    groups = {tuple(t["node_config"].get("SecurityGroupIds", ())) for t in types.values()}
    assert len(groups) == 1 and all(g.startswith("sg-") for g in next(iter(groups)))


def test_dashboard_only_on_the_heads_loopback() -> None:
    config = _cluster()
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Run on a cluster") :]
    assert "ray dashboard cluster.yaml" in section and "--address http://127.0.0.1:8265" in section
    assert "HEAD:8265" not in readme


def test_setup_commands_are_pinned_and_runnable() -> None:
    """Every pip install names exact versions (or the pinned requirements.txt); the inline Python of the
    weights and W&B commands compiles."""
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text(encoding="utf-8"))  # as written, not merged
    commands = [*config["setup_commands"], *config["head_setup_commands"], *config["worker_setup_commands"]]
    installs = [c for c in commands if "pip install" in c]
    assert installs
    for command in installs:
        args = [a for a in shlex.split(command.split("pip install", 1)[1]) if not a.startswith("--")]
        for i, arg in enumerate(args):
            assert arg == "-r" or (i and args[i - 1] == "-r") or re.fullmatch(r"[\w.-]+==[\w.]+", arg), (
                command
            )
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, line
    inline = [m for c in commands for m in re.findall(r'python3 -c "([^"]+)"', c)]
    assert len(inline) == 2  # the encoders to fetch, the W&B login
    for code in inline:
        compile(code, "<setup command>", "exec")
    assert any("launch.py fetch-weights" in c for c in config["setup_commands"])


def test_the_wandb_key_never_goes_through_an_environment() -> None:
    """The head logs in from the secret store into its netrc; no file tells anyone to put the key in a
    job's runtime env (Ray writes runtime envs in plain text to runtime_env_agent.log)."""
    cluster = (ROOT / "cluster.yaml").read_text(encoding="utf-8")
    assert "WANDB_API_KEY" not in cluster
    head = " ".join(yaml.safe_load(cluster)["head_setup_commands"])
    assert "secretsmanager" in head and "wandb.login(" in head
    for doc in ("README.md", "docs/cluster.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert not re.search(r"runtime-env-json[^\n]*WANDB_API_KEY\"\s*:\s*\"'", text), doc


def _policies() -> dict[str, dict[str, Any]]:
    """The JSON policies of docs/cluster.md: head, worker and trust, told apart by their actions."""
    text = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    out = {}
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.S):
        policy = json.loads(block)
        actions = {a for s in policy["Statement"] for a in _list(s["Action"])}
        kind = "head" if "iam:PassRole" in actions else "trust" if "sts:AssumeRole" in actions else "worker"
        assert kind not in out, kind
        out[kind] = policy
    assert set(out) == {"head", "worker", "trust"}
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_documented_policies_match_the_profiles() -> None:
    """Workers: objects under the runs prefix only. Head: the autoscaler (terminating only this
    cluster's instances), PassRole on the worker role alone, the runs prefix and the W&B secret."""
    config = _cluster()
    policies = _policies()
    worker = policies["worker"]["Statement"]
    assert {a.split(":")[0] for s in worker for a in _list(s["Action"])} == {"s3"}
    for statement in worker:
        for resource in _list(statement["Resource"]):
            if statement["Action"] == "s3:ListBucket":
                assert resource == "arn:aws:s3:::BUCKET"
                assert statement["Condition"]["StringLike"]["s3:prefix"] == ["runs", "runs/*"]
            else:
                assert resource == "arn:aws:s3:::BUCKET/runs/*", resource
    head = {a: s for s in policies["head"]["Statement"] for a in _list(s["Action"])}
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:DescribeInstances", "ec2:CreateTags"} <= set(
        head
    )
    assert not any(a.endswith("*") for a in head)
    worker_role = "role/" + _profile_name(config["available_node_types"]["worker.gpu4"])
    assert head["iam:PassRole"]["Resource"].endswith(worker_role)
    tag = head["ec2:TerminateInstances"]["Condition"]["StringEquals"]["ec2:ResourceTag/ray-cluster-name"]
    assert tag == config["cluster_name"]
    assert head["s3:PutObject"]["Resource"] == "arn:aws:s3:::BUCKET/runs/*"


def test_resume_trust_is_documented_next_to_the_bucket_permissions() -> None:
    doc = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    iam = doc.index("## IAM")
    trust = doc.index("### Resume trusts the experiment folder")
    assert iam < trust < doc.index("## Network")  # inside the IAM section, after the policies
    section = doc[trust : doc.index("## Network")]
    assert "unpickles" in section and "tuner.pkl" in section and "s3:PutObject" in section
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    resume = readme[readme.index("- Resume:") : readme.index("- Fractional GPUs")]
    assert "unpickles" in resume and "docs/cluster.md#resume-trusts-the-experiment-folder" in resume


def test_weights_reach_the_workers_by_cache_or_absolute_path() -> None:
    """.rayignore keeps weights out of the job upload on purpose; the docs say how they reach the nodes."""
    from ray._private.runtime_env.packaging import get_excludes_from_ignore_files

    (excluded,) = get_excludes_from_ignore_files(ROOT, include_gitignore=False)
    assert excluded(ROOT / "weights" / "enc.pth") and excluded(ROOT / "enc.safetensors")
    doc = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Pretrained weights on every node") :]
    for text in ("fetch-weights", "setup_commands", "absolute path", ".rayignore", "not retried"):
        assert text in section, text
