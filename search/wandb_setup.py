"""Weights & Biases for a search (imports Ray and wandb: import this module only to run a search): one run per trial, grouped by experiment, files in the experiment folder.

- ``group`` = experiment name, run ``id`` = Tune's trial id, ``resume="allow"`` so a restored trial
  continues its run;
- ``config`` = the trial's *effective* spec as flat dotted keys (the base spec with the trial's active
  overrides), so W&B's parallel-coordinates and parameter-importance panels work over the group;
- run files go to ``<experiment>/wandb`` (Ray's default is the trial's staging folder in the Ray session's
  temporary directory, where some trials' files were seen to stay);
- mode ``auto``: online when ``WANDB_API_KEY`` is set, else offline (``wandb sync <experiment>/wandb/*``
  uploads later); short init/finish timeouts so a slow network never holds the search.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ray.air.integrations.wandb import WandbLoggerCallback

from search.config import WandbConfig

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


class ExperimentWandbCallback(WandbLoggerCallback):
    """Ray's W&B callback with the effective config per trial and run files in the experiment folder."""

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

    # Ray 2.60: every run starts here, with wandb.init's keyword arguments.
    def _start_logging_actor(self, trial: Any, exclude_results: list[str], **init_kwargs: Any) -> None:
        run_dir = wandb_dir(trial)
        run_dir.mkdir(parents=True, exist_ok=True)
        init_kwargs["dir"] = str(run_dir)
        init_kwargs["config"] = {**self.base_config, **self.resolve(trial.config)}
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
