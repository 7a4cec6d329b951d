"""The W&B API key stays out of Ray's runtime envs and logs; a netrc login counts as online."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from search.config import WandbConfig, wandb_netrc_login

# Fake 40-character keys (the length wandb checks); never sent anywhere: W&B runs offline here.
DRIVER_KEY = "f4ke0driver0key0000000000000000000000000"
RAY_KEY = "f4ke0given0to0rays0own0callback00000000"
NETRC_KEY = "f4ke0netrc0key00000000000000000000000000"
ENV_KEY = "f4ke0in0the0environment0ray0starts0with"  # a key exported before a local run starts Ray


def _write_netrc(path: Path, key: str) -> None:
    path.write_text(f"machine api.wandb.ai\n  login user\n  password {key}\n", encoding="utf-8")
    path.chmod(0o600)


def test_auto_mode_is_online_with_a_netrc_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`wandb login` (a key in the netrc file) is online without any key in the environment."""
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    assert not wandb_netrc_login()
    assert WandbConfig().resolved_mode({}) == "offline"
    _write_netrc(netrc, NETRC_KEY)
    assert wandb_netrc_login()
    assert WandbConfig().resolved_mode({}) == "online"
    assert WandbConfig(mode="offline").resolved_mode({}) == "offline"
    assert WandbConfig(mode="disabled").resolved_mode({}) == "disabled"


def _files_containing(root: Path, text: str) -> list[str]:
    needle = text.encode()
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes())


class _Trial:
    """The parts of a Tune trial that the W&B callbacks read (hashable, like Tune's)."""

    def __init__(self, folder: Path, trial_id: str) -> None:
        import pyarrow.fs

        self.trial_id = trial_id
        self.config = {"train.lr": 1e-3}
        self.local_path = self.local_experiment_path = str(folder)
        self.experiment_dir_name = folder.name
        self.storage = SimpleNamespace(
            storage_filesystem=pyarrow.fs.LocalFileSystem(), experiment_fs_path=str(folder)
        )

    def __str__(self) -> str:
        return self.trial_id


def _log_one_trial(callback: Any, folder: Path, trial_id: str) -> None:
    """What Tune does with a logger callback for one trial that reports once, then ends."""
    folder.mkdir(parents=True)
    trial = _Trial(folder, trial_id)
    callback.setup()
    callback.log_trial_start(trial)
    callback.log_trial_result(1, trial, {"val/score": 0.5, "training_iteration": 1})
    callback.log_trial_end(trial)
    callback.on_experiment_end(trials=[])


@pytest.mark.slow
def test_the_api_key_never_reaches_rays_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A local Ray with a key in the driver's environment and a netrc login on the node: the project's
    callback logs a trial, then every file of Ray's session is searched for both keys. Ray's own
    callback, run after it with a third key, shows that the search would find a leaked one."""
    import ray
    from ray.air.integrations.wandb import WandbLoggerCallback

    from search.failures import WandbLoginError
    from search.tuner import local_runtime_env
    from search.wandb_setup import build_wandb_callback, require_node_login

    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))  # inherited by Ray's processes, like a node's ~/.netrc
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    # Ray's processes inherit the environment it starts with (how an exported key reaches the actors of a
    # local run); under another name here, so that this node has no login until the netrc is written.
    monkeypatch.setenv("BUS_TEST_INHERITED_SECRET", ENV_KEY)
    assert not ray.is_initialized(), "another test left Ray running"
    ray.init(num_cpus=1, include_dashboard=False, runtime_env=local_runtime_env())
    try:
        session = Path(ray._private.worker._global_node.get_session_dir_path())
        # A key in the driver's environment alone does not log the node in (it is not forwarded) ...
        monkeypatch.setenv("WANDB_API_KEY", DRIVER_KEY)
        with pytest.raises(WandbLoginError, match="wandb login"):
            require_node_login()
        # ... a netrc login on the node does (the workers read the file; only True comes back).
        _write_netrc(netrc, NETRC_KEY)
        require_node_login()

        ours = build_wandb_callback(
            WandbConfig(mode="offline", project="p"), "ours", {"model.encoder": "x"}, dict
        )
        _log_one_trial(ours, tmp_path / "ours", "ours_00000")
        assert list((tmp_path / "ours" / "wandb").glob("offline-run-*/run-ours_00000.wandb"))

        monkeypatch.setenv("WANDB_API_KEY", RAY_KEY)
        _log_one_trial(WandbLoggerCallback(project="p", mode="offline"), tmp_path / "rays", "rays_00000")
    finally:
        ray.shutdown()
    assert any(p.endswith("runtime_env_agent.log") for p in _files_containing(session, RAY_KEY))
    for key in (DRIVER_KEY, NETRC_KEY, ENV_KEY):
        assert _files_containing(session, key) == [], key
        assert _files_containing(tmp_path / "ours", key) == [], key
    assert os.environ.get("WANDB_API_KEY") == RAY_KEY  # nothing rewrote the driver's key
