"""Searchers and schedulers from the spec, checked in real (instant) Tune runs of a stub trainable."""

from __future__ import annotations

from pathlib import Path

import pytest

from search import algorithms
from search.config import load_search_spec
from search.space import space_from_spec
from tests.search.helpers import merge, write_spec

ray = pytest.importorskip("ray")

CONDITIONAL = {
    "model.attention": {"choice": ["none", "se"]},
    "model.latent_aug.mode": {"choice": ["none", "noise"]},
    "model.latent_aug.sigma": {"uniform": [0.01, 0.2], "when": {"model.latent_aug.mode": ["noise"]}},
}


def _spec(tmp_path: Path, search: dict):
    return load_search_spec(write_spec(tmp_path, {"search": merge({"space": CONDITIONAL}, search)}))


def _score(config: dict) -> None:
    from ray import tune

    for epoch in range(1, 4):
        tune.report({"val/score_best": 0.1 * epoch + (0.5 if config.get("model.attention") == "se" else 0.0)})


def _fit(spec, storage: Path) -> list[dict]:
    """The search's own Tuner (searcher, scheduler, metric, sample count) around an instant trainable."""
    from search.tuner import Location, build_tuner

    loc = Location(str(storage), spec.name)
    return [r.config for r in build_tuner(spec, loc, _score, space_from_spec(spec)).fit()]


def test_optuna_honours_points_and_never_sets_inactive_keys(tmp_path: Path, local_ray) -> None:
    local_ray(num_cpus=2)
    point = {"model.attention": "se", "model.latent_aug.mode": "noise", "model.latent_aug.sigma": 0.1}
    spec = _spec(tmp_path, {"algorithm": "optuna", "num_samples": 5, "points_to_evaluate": [point]})
    configs = _fit(spec, tmp_path)
    assert len(configs) == 5 and point in configs
    for c in configs:
        assert ("model.latent_aug.sigma" in c) == (c["model.latent_aug.mode"] == "noise")


@pytest.mark.slow
def test_random_draws_conditionals_only_when_active(tmp_path: Path, local_ray) -> None:
    local_ray(num_cpus=2)
    spec = _spec(tmp_path, {"algorithm": "random", "num_samples": 8})
    configs = _fit(spec, tmp_path)
    assert len(configs) == 8
    for c in configs:
        active = c["model.latent_aug.mode"] == "noise"
        assert (c["model.latent_aug.sigma"] is not None) == active
    assert configs == _fit(spec, tmp_path / "again")  # seeded


def test_grid_enumerates_each_effective_config_once(tmp_path: Path, local_ray) -> None:
    local_ray(num_cpus=2)
    space = {
        **CONDITIONAL,
        "model.latent_aug.sigma": {"grid": [0.05, 0.1], "when": {"model.latent_aug.mode": ["noise"]}},
    }
    spec = _spec(tmp_path, {"algorithm": "grid", "space": space})
    configs = _fit(spec, tmp_path)
    assert len(configs) == 2 * (1 + 2)
    keys = {tuple(sorted(c.items())) for c in configs}
    assert len(keys) == 6


def test_schedulers_and_metric_modes(tmp_path: Path) -> None:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, MedianStoppingRule

    spec = _spec(tmp_path, {"scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2}})
    asha = algorithms.build_scheduler(spec, space_from_spec(spec))
    assert isinstance(asha, ASHAScheduler) and asha._max_t == spec.train.epochs
    assert asha._time_attr == "training_iteration" and asha._reduction_factor == 2
    for kind, cls in (
        ("hyperband", HyperBandScheduler),
        ("median", MedianStoppingRule),
        ("fifo", FIFOScheduler),
    ):
        other = _spec(tmp_path, {"scheduler": {"type": kind, "grace_period": 1}})
        assert isinstance(algorithms.build_scheduler(other), cls)
    assert algorithms.tune_metric_mode(spec) == ("val/score_best", "max")
    multi = _spec(
        tmp_path,
        {
            "algorithm": "optuna",
            "sampler": "nsgaii",
            "metric": ["val/dice", "val/macro_f1"],
            "mode": "max",
            "scheduler": {"type": "fifo"},
        },
    )
    assert algorithms.tune_metric_mode(multi) == (None, None)
    searcher = algorithms.build_searcher(multi, space_from_spec(multi))
    assert searcher.metric == ["val/dice", "val/macro_f1"] and searcher.mode == ["max", "max"]


SAMPLERS = {
    "tpe": "TPESampler",
    "cmaes": "CmaEsSampler",
    "random": "RandomSampler",
    "nsgaii": "NSGAIISampler",
}


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_samplers_are_seeded(tmp_path: Path, sampler: str) -> None:
    import optuna

    if sampler == "cmaes":
        pytest.importorskip("cmaes", reason="CmaEsSampler needs the cmaes package")
    spec = _spec(tmp_path, {"sampler": sampler, "seed": 7})

    def first_draws() -> list[float]:
        study = optuna.create_study(sampler=algorithms.optuna_sampler(spec))
        draws = []
        for _ in range(3):
            trial = study.ask()
            draws.append(trial.suggest_float("x", 0.0, 1.0))
            study.tell(trial, draws[-1])
        return draws

    assert type(algorithms.optuna_sampler(spec)).__name__ == SAMPLERS[sampler]
    assert first_draws() == first_draws()


def test_max_concurrent_reaches_tunes_own_generator(tmp_path: Path) -> None:
    spec = _spec(tmp_path, {"algorithm": "random", "num_samples": 4, "max_concurrent": 1})
    searcher = algorithms.build_searcher(spec, space_from_spec(spec))
    assert searcher.max_concurrent == 1


def test_optuna_enqueues_a_point_that_names_a_mapping_choice(tmp_path: Path) -> None:
    """Optuna holds scalars only: a point naming a list/mapping choice is enqueued by its label and
    comes back as the value itself (a raw mapping made Optuna fail when the first trial started)."""
    slim = {"decoder_channels": [64, 32, 16, 16, 8]}
    space = {
        "model.decoder": {"choice": ["unet", "fpn"]},
        "model.decoder_options": {"choice": [slim, {}], "when": {"model.decoder": ["unet"]}},
    }
    point = {"model.decoder": "unet", "model.decoder_options": slim}
    spec = load_search_spec(
        write_spec(
            tmp_path,
            {
                "search": {
                    "algorithm": "optuna",
                    "space": space,
                    "points_to_evaluate": [point],
                    "num_samples": 2,
                }
            },
        )
    )
    searcher = algorithms.build_searcher(spec, space_from_spec(spec))
    assert searcher.suggest("t0") == point
    second = searcher.suggest("t1")
    assert second["model.decoder"] in ("unet", "fpn")
    if second["model.decoder"] == "unet":
        assert second["model.decoder_options"] in (slim, {})
