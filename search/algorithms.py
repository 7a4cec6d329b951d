"""Searcher and scheduler construction from the ``search`` section (one small function each).

Why the default metric is ``val/score_best`` (the best CV score so far), not ``val/score``: when ASHA
stops a trial, Ray tells Optuna the trial's *last* reported value, measured at a low fidelity (few
epochs). With ``val/score`` a trial stopped on a dip would be recorded worse than it was; the running
best is monotone in the epochs, so what Optuna learns from a stopped trial is the best it reached.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from search.config import SearchSpec, max_epochs_of
from search.space import Space


def optuna_sampler(spec: SearchSpec) -> Any:
    """The seeded Optuna sampler named by ``search.sampler``."""
    import optuna

    s = spec.search
    if s.sampler == "tpe":
        # Few random start-up trials in small searches; multivariate TPE models the joint (conditional)
        # space; the constant liar keeps concurrent trials from being proposed the same config.
        startup = max(2, min(10, s.num_samples // 3))
        with warnings.catch_warnings():  # multivariate/group are "experimental" in Optuna's terms
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=s.seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=True
            )
    if s.sampler == "cmaes":
        # CMA-ES models the numeric parameters; categorical ones are drawn by its independent sampler.
        return optuna.samplers.CmaEsSampler(seed=s.seed, warn_independent_sampling=False)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    return optuna.samplers.NSGAIISampler(seed=s.seed)


def optuna_storage(journal: str | Path | None) -> Any:
    """The Optuna study's storage: a journal file (``optuna.journal`` in the experiment folder) where one
    is given, else None (in memory).

    A journal is appended to as trials report, so the study survives a driver kill, works on shared file
    systems (file locks, no database server), and ``optuna-dashboard runs/<name>/optuna.journal`` shows the
    search live and afterwards. ``resume`` continues the same study: Tune restores the pickled searcher,
    which holds this storage.
    """
    if journal is None:
        return None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(journal).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(journal)))


def build_searcher(spec: SearchSpec, space: Space, journal: str | Path | None = None) -> Any:
    """OptunaSearch (define-by-run; its study in ``journal`` if given, see :func:`optuna_storage`) or
    Tune's BasicVariantGenerator for random / grid."""
    s = spec.search
    points = [dict(p) for p in s.points_to_evaluate]
    if s.algorithm == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        multi = len(s.metrics) > 1
        # Optuna enqueues a point as raw parameter values: list/mapping choices must be given as the
        # labels define-by-run suggests, or Optuna rejects the point when the first trial starts.
        enqueued = [{k: space[k].optuna_value(v) for k, v in p.items()} for p in points]
        return OptunaSearch(
            space=space.define_by_run(),
            metric=s.metrics if multi else s.metrics[0],
            mode=s.modes if multi else s.modes[0],
            points_to_evaluate=enqueued or None,
            sampler=optuna_sampler(spec),
            study_name=spec.name,
            storage=optuna_storage(journal),
        )
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if s.algorithm == "grid":
        placeholder = dict.fromkeys(space.keys)
        points = [{**placeholder, **p} for p in points] + space.grid_points()
    # Tune's own max_concurrent_trials does not reach this generator: give it the limit itself
    return BasicVariantGenerator(
        points_to_evaluate=points or None, random_state=s.seed, max_concurrent=s.max_concurrent or 0
    )


def param_space(spec: SearchSpec, space: Space) -> dict[str, Any]:
    """The Tuner's ``param_space``: empty for Optuna (it proposes), placeholders for grid's points."""
    if spec.search.algorithm == "optuna":
        return {}
    if spec.search.algorithm == "grid":
        return dict.fromkeys(space.keys)
    return space.tune_param_space(seed=spec.search.seed)


def num_samples(spec: SearchSpec, space: Space) -> int:
    """Trials to run: ``search.num_samples``, or the grid's size plus the given points."""
    if spec.search.algorithm == "grid":
        return len(space.grid_points()) + len(spec.search.points_to_evaluate)
    return spec.search.num_samples


def build_scheduler(spec: SearchSpec, space: Space | None = None) -> Any:
    """ASHA / HyperBand / median stopping on ``training_iteration`` (= epochs), or FIFO.

    Metric and mode stay on the TuneConfig (Tune hands them to the scheduler); ``max_t`` is
    ``train.epochs`` (its top value when the epochs are searched).
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule

    cfg = spec.search.scheduler
    max_t = max_epochs_of(spec, space)
    if cfg.type == "asha":
        return ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_t,
            grace_period=cfg.grace_period,
            reduction_factor=cfg.reduction_factor,
        )
    if cfg.type == "hyperband":
        return HyperBandScheduler(
            time_attr="training_iteration", max_t=max_t, reduction_factor=cfg.reduction_factor
        )
    if cfg.type == "median":
        return MedianStoppingRule(
            time_attr="training_iteration", grace_period=cfg.grace_period, min_samples_required=3
        )
    return FIFOScheduler()


def tune_metric_mode(spec: SearchSpec) -> tuple[str | None, str | None]:
    """TuneConfig's metric/mode: the one metric, or None for multi-objective (the searcher holds them)."""
    s = spec.search
    if len(s.metrics) > 1:
        return None, None
    return s.metrics[0], s.modes[0]
