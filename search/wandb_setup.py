"""Weights & Biases for a search (imports Ray and wandb: import this module only to run a search): one run per trial, grouped by experiment, files in the experiment folder.

- ``group`` = experiment name, run ``id`` = Tune's trial id, ``resume="allow"`` so a restored trial
  continues its run;
- ``config`` = the trial's *effective* spec as flat dotted keys (the base spec with the trial's active
  overrides), so W&B's parallel-coordinates and parameter-importance panels work over the group;
- run files go to ``<experiment>/wandb`` (Ray's default is the trial's staging folder in the Ray session's
  temporary directory, where some trials' files were seen to stay);
- mode ``auto``: online when W&B credentials are there (``WANDB_API_KEY``, or a ``wandb login`` in the
  netrc file), else offline (``wandb sync <experiment>/wandb/*`` uploads later); short init/finish
  timeouts so a slow network never holds the search;
- the API key never travels through Ray: Ray's callback copies ``WANDB_API_KEY`` into its logging actors'
  runtime env, and Ray writes every runtime env in plain text to ``runtime_env_agent.log`` (mode 0644,
  served by the dashboard). The actors run on the driver's node and read the key there (its netrc, or the
  environment Ray was started with); in online mode :func:`require_node_login` checks that first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ray
from ray.air.integrations.wandb import WandbLoggerCallback
from ray.air.util.node import _force_on_current_node

from search.config import WandbConfig, wandb_netrc_login
from search.failures import WandbLoginError

INIT_TIMEOUT_S = 30.0
FINISH_TIMEOUT_S = 60.0
UPLOAD_TIMEOUT_S = 60


def wandb_dir(trial: Any) -> Path:
    """The folder given to ``wandb.init(dir=...)`` (W&B adds ``wandb/``): the experiment folder itself
    for local storage, else the driver's staging copy of it, which Tune syncs to the storage URI."""
    import pyarrow.fs

    storage = trial.storage
    if isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
        return Path(storage.experiment_fs_path)
    return Path(trial.local_experiment_path)


def has_wandb_login() -> bool:
    """Whether this process can authenticate to W&B: ``WANDB_API_KEY`` or a netrc login."""
    return bool(os.environ.get("WANDB_API_KEY")) or wandb_netrc_login()


def require_node_login(timeout_s: float = 120.0) -> None:
    """Raise :class:`WandbLoginError` unless a Ray worker on this node (where the logging actors run) can
    authenticate to W&B; only a yes/no comes back, never the key."""
    check = ray.remote(num_cpus=0, **_force_on_current_node())(has_wandb_login)
    if ray.get(check.remote(), timeout=timeout_s):
        return
    raise WandbLoginError(
        "wandb is online, but Ray's workers on this node have no W&B login, so every run would fail. "
        "The key is not passed through Ray (runtime envs are logged in plain text): on the node that runs "
        "the search, `wandb login` (it writes ~/.netrc, mode 0600; on the cluster head, docs/cluster.md "
        "shows how from a secret store), or export WANDB_API_KEY before `ray start` / the local run; "
        "or set wandb.mode: offline"
    )


class ExperimentWandbCallback(WandbLoggerCallback):
    """Ray's W&B callback with the effective config per trial, run files in the experiment folder, and the
    API key kept out of Ray's runtime envs (see the module docstring)."""

    def __init__(
        self,
        base_config: Mapping[str, Any],
        resolve: Callable[[Mapping[str, Any]], dict[str, Any]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base_config = dict(base_config)
        self.resolve = resolve

    def setup(self, *args: Any, **kwargs: Any) -> None:
        mode = self.kwargs.get("mode", "online")
        if mode != "online":
            # Ray asks for an API key unless WANDB_MODE says offline (also after a restore in a new process).
            os.environ["WANDB_MODE"] = mode
        super().setup(*args, **kwargs)
        if mode == "online":
            require_node_login()

    # Ray 2.60: every run starts here, with wandb.init's keyword arguments.
    def _start_logging_actor(self, trial: Any, exclude_results: list[str], **init_kwargs: Any) -> None:
        run_dir = wandb_dir(trial)
        run_dir.mkdir(parents=True, exist_ok=True)
        init_kwargs["dir"] = str(run_dir)
        init_kwargs["config"] = {**self.base_config, **self.resolve(trial.config)}
        if self._remote_logger_class is None:
            # Ray's options for the actor, minus runtime_env={"env_vars": {"WANDB_API_KEY": ...}}.
            self._remote_logger_class = ray.remote(
                num_cpus=0, **_force_on_current_node(), max_restarts=-1, max_task_retries=-1
            )(self._logger_actor_cls)
        super()._start_logging_actor(trial, exclude_results, **init_kwargs)


def build_wandb_callback(
    cfg: WandbConfig,
    experiment_name: str,
    base_config: Mapping[str, Any],
    resolve: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> Any | None:
    """The W&B logger callback for a Tuner, or None when W&B is disabled."""
    mode = cfg.resolved_mode()
    if mode == "disabled":
        return None
    settings = {
        "init_timeout": INIT_TIMEOUT_S,
        "finish_timeout": FINISH_TIMEOUT_S if mode == "online" else 0.0,
        "silent": True,
        "console": "off",
        "x_disable_stats": True,
        "disable_git": True,
    }
    return ExperimentWandbCallback(
        base_config=base_config,
        resolve=resolve,
        mode=mode,
        project=cfg.resolved_project(),
        entity=cfg.entity,
        group=experiment_name,
        upload_timeout=UPLOAD_TIMEOUT_S,
        resume="allow",
        settings=settings,
    )
