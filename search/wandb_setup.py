"""Weights & Biases for a search: one run per trial, grouped by experiment, files in the experiment folder.

Imports Ray and wandb: import this module only to run a search.

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

The hook into Ray's callback (private API) is :class:`search.ray_compat.WandbRunHook`; this module says
what it does for each run (:meth:`ExperimentWandbCallback.prepare_run`) and where the actors run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ray
from ray.air.integrations.wandb import WandbLoggerCallback
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from search.config import WandbConfig, wandb_netrc_login
from search.failures import WandbLoginError
from search.ray_compat import WandbRunHook

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


def on_this_node() -> dict[str, Any]:
    """``ray.remote`` options that place a task or actor on the driver's node (Ray's public API; what
    Ray's W&B callback does for its own actors with an internal helper)."""
    node_id = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)}


def has_wandb_login() -> bool:
    """Whether this process can authenticate to W&B: ``WANDB_API_KEY`` or a netrc login."""
    return bool(os.environ.get("WANDB_API_KEY")) or wandb_netrc_login()


def require_node_login(timeout_s: float = 120.0) -> None:
    """Raise :class:`WandbLoginError` unless a Ray worker on this node (where the logging actors run) can
    authenticate to W&B; only a yes/no comes back, never the key."""
    check = ray.remote(num_cpus=0, **on_this_node())(has_wandb_login)
    if ray.get(check.remote(), timeout=timeout_s):
        return
    raise WandbLoginError(
        "wandb is online, but Ray's workers on this node have no W&B login, so every run would fail. "
        "The key is not passed through Ray (runtime envs are logged in plain text): on the node that runs "
        "the search, `wandb login` (it writes ~/.netrc, mode 0600; on the cluster head, docs/cluster.md "
        "shows how from a secret store), or export WANDB_API_KEY before `ray start` / the local run; "
        "or set wandb.mode: offline"
    )


class ExperimentWandbCallback(WandbRunHook, WandbLoggerCallback):
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

    def prepare_run(self, trial: Any, init_kwargs: dict[str, Any]) -> None:
        """Each run's files in the experiment folder, the trial's effective spec as its config, and
        ``reinit="finish_previous"``: what Ray's ``reinit=True`` meant, without wandb 0.31's deprecation
        warning once per trial."""
        run_dir = wandb_dir(trial)
        run_dir.mkdir(parents=True, exist_ok=True)
        init_kwargs["dir"] = str(run_dir)
        init_kwargs["config"] = {**self.base_config, **self.resolve(trial.config)}
        init_kwargs["reinit"] = "finish_previous"

    def logging_actor_options(self) -> dict[str, Any]:
        """Ray's options for the logging actors, without its
        ``runtime_env={"env_vars": {"WANDB_API_KEY": ...}}``, and not restarted: Ray's ``max_restarts=-1``
        cannot work for them (their constructor arguments, the trial's queue among them, live in the object
        store, and Ray's core worker printed an error saying so when each search started); a logging actor
        that dies ends that trial's W&B run, not the trial."""
        return {"num_cpus": 0, **on_this_node(), "max_restarts": 0}


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
