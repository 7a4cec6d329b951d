"""The search sections of a spec (``search``, ``resources``, ``failure``, ``checkpoint``, ``wandb``).

:class:`SearchSpec` adds them to :class:`trainables.spec.Spec`; its ``validate`` checks the rules that
span sections (the space against the model/train fields, ASHA's grace period against ``train.epochs``,
multi-objective settings), so :func:`load_search_spec` rejects a bad spec before Ray starts.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from trainables.config import DoubleImbalanceCorrectionWarning, double_correction_message
from trainables.schema import Section, check, json_schema
from trainables.spec import Spec, load_spec

DEFAULT_METRIC = "val/score_best"
DEFAULT_PROJECT = "bus-search"
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | float | int | None) -> float | None:
    """``"6h"`` / ``"90m"`` / ``"45s"`` / ``"1.5d"`` / a number of seconds -> seconds (None stays None)."""
    if text is None:
        return None
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(text)
        if not match:
            raise ValueError(
                f"{text!r} is not a duration; write e.g. 45s, 90m, 6h, 1.5d or a number of seconds"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r}: a time budget must be positive")
    return seconds


def _check_duration(value: str) -> None:
    parse_duration(value)


def _check_metric(value: str | list[str]) -> None:
    names = [value] if isinstance(value, str) else value
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"expected a reported metric name such as {DEFAULT_METRIC}, got {value!r}")


def _check_mode(value: str | list[str]) -> None:
    modes = [value] if isinstance(value, str) else value
    bad = [m for m in modes if m not in ("min", "max")]
    if bad or not modes:
        raise ValueError(f"expected min or max (or a list of them for several metrics), got {value!r}")


def _check_gpu(value: float) -> None:
    if value > 1 and not float(value).is_integer():
        raise ValueError(f"a GPU request above 1 must be a whole number of GPUs, got {value}")


@dataclass
class SchedulerConfig(Section):
    """Trial scheduler; ``training_iteration`` (= epochs) is its time axis, ``max_t`` = ``train.epochs``."""

    type: Literal["asha", "fifo", "hyperband", "median"] = field(
        default="asha", metadata={"description": "asha | fifo (no early stopping) | hyperband | median"}
    )
    grace_period: int = field(
        default=2, metadata={"ge": 1, "description": "epochs every trial runs before a stop"}
    )
    reduction_factor: float = field(default=3.0, metadata={"gt": 1.0, "description": "ASHA / HyperBand eta"})


@dataclass
class SearchConfig(Section):
    """What to search and how (see spaces/README in the project README, 'Search spaces')."""

    algorithm: Literal["optuna", "random", "grid"] = field(
        default="optuna",
        metadata={"description": "optuna (define-by-run) | random | grid (Tune's generator)"},
    )
    sampler: Literal["tpe", "cmaes", "random", "nsgaii"] = field(
        default="tpe", metadata={"description": "Optuna sampler; nsgaii needs a list of metrics"}
    )
    num_samples: int = field(default=16, metadata={"ge": 1, "description": "trials to run (ignored by grid)"})
    metric: Annotated[str | list[str], check(_check_metric)] = field(
        default=DEFAULT_METRIC, metadata={"description": "reported key to optimise (a list for nsgaii)"}
    )
    mode: Annotated[str | list[str], check(_check_mode)] = field(
        default="max", metadata={"description": "min | max"}
    )
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    max_concurrent: int | None = field(
        default=None,
        metadata={"ge": 1, "description": "at most this many trials at once (null: as resources allow)"},
    )
    time_budget: Annotated[str | None, check(_check_duration)] = field(
        default=None, metadata={"description": "stop the search after e.g. 6h"}
    )
    points_to_evaluate: list[dict[str, Any]] = field(
        default_factory=list, metadata={"description": "configs (dotted keys of the space) to try first"}
    )
    space: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={"description": "dotted spec key -> distribution (choice, uniform, ...)"},
    )
    seed: int = field(
        default=0, metadata={"description": "seeds the searcher (Optuna sampler, Tune's generator)"}
    )

    @property
    def metrics(self) -> list[str]:
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    @property
    def modes(self) -> list[str]:
        return [self.mode] * len(self.metrics) if isinstance(self.mode, str) else list(self.mode)

    @property
    def time_budget_s(self) -> float | None:
        return parse_duration(self.time_budget)


@dataclass
class ResourcesConfig(Section):
    """Per trial. A fractional GPU packs several trials on one card (0.25 = four per GPU)."""

    cpu: float = field(
        default=1.0, metadata={"gt": 0.0, "description": "CPU cores per trial (torch threads)"}
    )
    gpu: Annotated[float, check(_check_gpu)] = field(
        default=0.0, metadata={"ge": 0.0, "description": "GPUs per trial"}
    )


@dataclass
class FailureConfig(Section):
    """Retries of a failed trial, each from its last checkpoint."""

    max_failures: int = field(default=2, metadata={"ge": -1, "description": "-1 = retry forever"})


@dataclass
class CheckpointConfig(Section):
    """Per-trial checkpoints of the loop state (K fold models + optimizers); older ones are deleted.

    A trial saves every ``every_epochs`` epochs, at its last epoch and at each epoch where the scheduler
    may stop or pause it (:func:`scheduler_milestones`), so a stopped, paused or finished trial always
    has its latest state; a failed trial's retry re-trains at most ``every_epochs - 1`` epochs.
    """

    num_to_keep: int | None = field(default=2, metadata={"ge": 1, "description": "null keeps all"})
    every_epochs: int = field(
        default=1,
        metadata={
            "ge": 1,
            "description": "save every N epochs (plus the last epoch and ASHA/HyperBand rungs); "
            "1 = every epoch",
        },
    )


def wandb_netrc_login(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``wandb login`` stored a key for the W&B host (``WANDB_BASE_URL`` in ``environ``, else
    wandb's default) in the netrc file wandb reads ($NETRC, else ~/.netrc, mode 0600): the way to be
    online without a key in any environment, so none reaches Ray's runtime envs and their logs."""
    from wandb.sdk.lib import urls
    from wandb.sdk.lib.wbauth import read_netrc_auth

    return read_netrc_auth(host=environ.get("WANDB_BASE_URL") or urls.DEFAULT_BASE_URL) is not None


@dataclass
class WandbConfig(Section):
    """Weights & Biases logging: one run per trial, grouped by experiment."""

    mode: Literal["auto", "online", "offline", "disabled"] = field(
        default="auto",
        metadata={"description": "auto = online with WANDB_API_KEY or a `wandb login` (netrc), else offline"},
    )
    project: str | None = field(
        default=None, metadata={"description": f"null = $WANDB_PROJECT or {DEFAULT_PROJECT}"}
    )
    entity: str | None = None

    def resolved_mode(self, environ: Mapping[str, str] = os.environ) -> str:
        """online / offline / disabled; ``auto`` is online with W&B credentials (WANDB_API_KEY in
        ``environ``, or :func:`wandb_netrc_login`), else offline."""
        if self.mode != "auto":
            return self.mode
        return "online" if environ.get("WANDB_API_KEY") or wandb_netrc_login(environ) else "offline"

    def resolved_project(self, environ: Mapping[str, str] = os.environ) -> str:
        return self.project or environ.get("WANDB_PROJECT") or DEFAULT_PROJECT


@dataclass
class SearchSpec(Spec):
    """A spec plus everything the search needs; ``validate`` checks the space before Ray starts."""

    search: SearchConfig = field(default_factory=SearchConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    failure: FailureConfig = field(default_factory=FailureConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def validate(self) -> list[str]:
        errors = super().validate()
        return errors if errors else search_errors(self)


def search_errors(spec: SearchSpec) -> list[str]:
    """Rules between the search sections and the rest of the spec (messages start with the key)."""
    from search.space import point_errors, space_errors, space_from_spec

    s = spec.search
    with warnings.catch_warnings():  # each value is checked alone; the pairing is warned about once below
        warnings.simplefilter("ignore", DoubleImbalanceCorrectionWarning)
        errors = space_errors(spec)
    if not s.space:
        errors.append(
            "search.space: empty; name at least one field to search, "
            "e.g. train.lr: {loguniform: [1.0e-5, 1.0e-3]}"
        )
    if errors:
        return errors
    space = space_from_spec(spec)
    _warn_double_correction(spec, space)
    errors.extend(point_errors(space, s.points_to_evaluate))
    for p in space.params:
        if s.algorithm == "optuna" and p.dist == "grid":
            errors.append(
                f"search.space.{p.key}: grid needs algorithm grid or random; with optuna use choice"
            )
        if s.algorithm == "grid" and not p.discrete:
            errors.append(f"search.space.{p.key}: algorithm grid enumerates choice/grid values, not {p.dist}")
    if s.algorithm == "optuna" and s.sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
        errors.append("search.sampler: cmaes needs the 'cmaes' package (pip install cmaes); or use tpe")
    if isinstance(s.mode, list) and len(s.mode) != len(s.metrics):
        errors.append(f"search.mode: {len(s.mode)} modes for {len(s.metrics)} metrics")
    if len(s.metrics) > 1:
        if s.algorithm != "optuna":
            errors.append("search.metric: several metrics (multi-objective) need algorithm optuna")
        if s.scheduler.type != "fifo":
            errors.append(
                f"search.scheduler.type: {s.scheduler.type} stops trials on one metric; "
                "with several metrics use fifo"
            )
    max_epochs = max_epochs_of(spec, space)
    if s.scheduler.type in ("asha", "hyperband", "median") and s.scheduler.grace_period > max_epochs:
        errors.append(
            f"search.scheduler.grace_period: {s.scheduler.grace_period} epochs is more than train.epochs "
            f"({max_epochs}); nothing could be stopped early"
        )
    return errors


def _warn_double_correction(spec: SearchSpec, space: Any) -> None:
    """Warn once when the space can draw ``train.sampler: balanced`` together with ``train.loss.cls:
    weighted_ce`` (see :func:`trainables.config.double_correction_message`); a base spec that pairs them
    was warned about when its ``train`` section was validated."""

    def values(key: str, base: str) -> set[Any]:
        if key not in space.keys:
            return {base}
        p = space[key]
        return set(p.candidates()) | ({base} if p.when else set())  # inactive: the spec's own value

    base_sampler, base_loss = spec.train.sampler, spec.train.loss.cls
    if double_correction_message(base_sampler, base_loss) is not None:
        return
    samplers, losses = values("train.sampler", base_sampler), values("train.loss.cls", base_loss)
    message = double_correction_message("balanced", "weighted_ce")
    if "balanced" in samplers and "weighted_ce" in losses and message is not None:
        warnings.warn(
            f"search.space can draw this pairing, and those trials will warn again: {message}",
            DoubleImbalanceCorrectionWarning,
            stacklevel=2,
        )


def max_epochs_of(spec: SearchSpec, space: Any = None) -> int:
    """The longest a trial can run (``train.epochs``, or the top of its range when it is searched)."""
    if space is not None and "train.epochs" in space.keys:
        return max(int(v) for v in space["train.epochs"].candidates())
    return spec.train.epochs


def scheduler_milestones(spec: SearchSpec, space: Any = None) -> tuple[int, ...]:
    """Epochs (``training_iteration``) at which ``search.scheduler`` may stop or pause a trial.

    Mirrors Ray's schedulers as built by :func:`search.algorithms.build_scheduler` (``max_t`` =
    :func:`max_epochs_of`); a superset is harmless (one more checkpoint), a missing rung is not:

    - asha: rung ``grace_period * reduction_factor**k``, decided at the first epoch that reaches it;
    - hyperband: every bracket's ``r0 = int(max_t * eta**-s)``, then ``r = int(min(r * eta, max_t))``
      (its trials pause there and resume from the checkpoint);
    - median (it may stop a trial at any epoch after the grace period) and fifo: none.
    """
    cfg = spec.search.scheduler
    max_t = max_epochs_of(spec, space)
    rf = cfg.reduction_factor
    rungs: set[int] = set()
    if cfg.type == "asha":
        k = 0
        while (epoch := math.ceil(cfg.grace_period * rf**k)) <= max_t:
            rungs.add(epoch)
            k += 1
    elif cfg.type == "hyperband":
        for s in range(round(math.log(max_t) / math.log(rf)) + 1):
            r = int(max_t * rf ** (-s))
            if r == 0:
                continue
            rungs.add(r)
            for _ in range(s):
                r = int(min(r * rf, max_t))
                rungs.add(r)
    return tuple(sorted(rungs))


def load_search_spec(path: str | Path, overrides: Sequence[str] = ()) -> SearchSpec:
    """Read, override and validate a search spec (space included); raise ``SpecError`` listing every
    problem."""
    return load_spec(path, overrides, spec_cls=SearchSpec)


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file (a train spec, or a search spec with its search sections)."""
    return json_schema(
        SearchSpec,
        "bus-search spec",
        "A train spec (name, data, model, train) or a search spec (adds search, resources, failure, "
        "checkpoint, wandb). Written by `python launch.py schema`; the spec validator also checks "
        "component names and rules that span fields.",
    )
