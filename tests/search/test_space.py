"""Space parsing, conditions and translation to Optuna (define-by-run) and Tune (random, grid)."""

from __future__ import annotations

import pickle

import numpy as np
import optuna
import pytest

from search.space import DefineByRun, Space, parse_space, point_errors
from trainables.schema import SpecError

SPACE = {
    "model.encoder": {"choice": ["resnet18", "tu-test_efficientnet"]},
    "train.lr": {"loguniform": [1.0e-5, 1.0e-3]},
    "train.batch_size": {"quniform": [4, 16, 4]},
    "model.latent_aug.mode": {"choice": ["none", "noise", "mixup"]},
    "model.latent_aug.sigma": {"uniform": [0.01, 0.2], "when": {"model.latent_aug.mode": ["noise"]}},
}


def _space(raw: dict = SPACE) -> Space:
    return parse_space(raw, is_integer=lambda key: key == "train.batch_size")


def _errors(raw: dict) -> str:
    with pytest.raises(SpecError) as info:
        _space(raw)
    return str(info.value)


def test_parse_orders_parents_first_and_knows_integer_fields() -> None:
    raw = dict(reversed(list(SPACE.items())))  # the child written before its parent
    space = _space(raw)
    keys = space.keys
    assert keys.index("model.latent_aug.mode") < keys.index("model.latent_aug.sigma")
    assert space["train.batch_size"].integer and not space["train.lr"].integer
    assert space["model.latent_aug.sigma"].when == (("model.latent_aug.mode", ("noise",)),)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train.lr": {"unifrom": [0.1, 0.2]}}, "unknown distribution 'unifrom'; did you mean 'uniform'?"),
        ({"train.lr": [0.1, 0.2]}, "expected a distribution such as {choice: [a, b]}"),
        ({"train.lr": {"uniform": [0.2, 0.1]}}, "low (0.2) must be below high (0.1)"),
        ({"train.lr": {"loguniform": [0, 0.1]}}, "a log scale needs low > 0"),
        ({"train.lr": {"uniform": [0.1]}}, "expected {uniform: [low, high]} with numbers"),
        ({"train.lr": {"choice": []}}, "expected a non-empty list of values"),
        ({"train.lr": {"choice": [1, 1]}}, "duplicate values"),
        ({"train.lr": {"choice": [1], "uniform": [0, 1]}}, "expected exactly one distribution"),
        ({"train.batch_size": {"uniform": [2.5, 8]}}, "takes integers: bounds must be whole numbers"),
        ({"train.batch_size": {"quniform": [4, 15, 4]}}, "must be a multiple of q"),
        ({"a.x": {"uniform": [0, 1], "when": {"a.y": ["on"]}}}, "a.y: not a parameter of the space"),
        (
            {"a.y": {"uniform": [0, 1]}, "a.x": {"uniform": [0, 1], "when": {"a.y": [1]}}},
            "a.y is uniform; conditions need a choice or grid parameter",
        ),
        (
            {"a.y": {"choice": ["on", "off"]}, "a.x": {"uniform": [0, 1], "when": {"a.y": ["of"]}}},
            "['of'] not among the values of a.y (['on', 'off'])",
        ),
        (
            {
                "a.x": {"choice": [1, 2], "when": {"a.y": [1]}},
                "a.y": {"choice": [1, 2], "when": {"a.x": [1]}},
            },
            "conditions form a cycle",
        ),
    ],
)
def test_syntax_errors_name_the_key_and_the_fix(raw: dict, message: str) -> None:
    text = _errors(raw)
    assert message in text
    assert text.startswith("search.space.") or "search.space:" in text


def test_every_error_is_reported_at_once() -> None:
    text = _errors({"train.lr": {"uniform": [1, 0]}, "train.wd": {"choise": [1]}})
    assert "search.space.train.lr" in text and "search.space.train.wd" in text


def test_resolve_drops_inactive_and_missing_keys() -> None:
    space = _space()
    config = {"model.latent_aug.mode": "none", "model.latent_aug.sigma": 0.1, "train.lr": np.float64(1e-4)}
    out = space.resolve(config)
    assert out == {"model.latent_aug.mode": "none", "train.lr": 1e-4}
    assert type(out["train.lr"]) is float
    active = space.resolve({"model.latent_aug.mode": "noise", "model.latent_aug.sigma": 0.1})
    assert active["model.latent_aug.sigma"] == 0.1
    # None (an inactive placeholder of random/grid) falls back to the spec's value.
    assert "model.latent_aug.sigma" not in space.resolve(
        {"model.latent_aug.mode": "noise", "model.latent_aug.sigma": None}
    )


def test_define_by_run_samples_conditional_params_only_when_active() -> None:
    space = _space()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    fn = pickle.loads(pickle.dumps(DefineByRun(space)))  # Ray pickles the searcher with its space
    seen_modes = set()
    for _ in range(30):
        trial = study.ask()
        config = fn(trial)
        seen_modes.add(config["model.latent_aug.mode"])
        assert ("model.latent_aug.sigma" in trial.params) == (config["model.latent_aug.mode"] == "noise")
        assert config["train.batch_size"] in (4, 8, 12, 16)
        assert isinstance(config["train.batch_size"], int)
        assert 1e-5 <= config["train.lr"] <= 1e-3
        study.tell(trial, 0.0)
    assert seen_modes == {"none", "noise", "mixup"}


def test_define_by_run_handles_mapping_choices_and_qloguniform() -> None:
    space = parse_space(
        {
            "train.select": {"choice": [{"dice": 1.0}, {"dice": 0.5, "macro_f1": 0.5}]},
            "train.weight_decay": {"qloguniform": [1.0e-4, 1.0e-2, 1.0e-4]},
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        config = DefineByRun(space)(study.ask())
        assert config["train.select"] in ({"dice": 1.0}, {"dice": 0.5, "macro_f1": 0.5})
        wd = config["train.weight_decay"]
        assert 1e-4 <= wd <= 1e-2 and abs(wd / 1e-4 - round(wd / 1e-4)) < 1e-6


def test_tune_random_space_samples_conditionals_only_when_active() -> None:
    from ray.tune.search.variant_generator import generate_variants

    space = _space()
    param_space = space.tune_param_space(seed=3)
    configs = []
    for _ in range(20):
        for _, config in generate_variants(param_space):
            configs.append(config)
    for config in configs:
        sigma = config["model.latent_aug.sigma"]
        if config["model.latent_aug.mode"] == "noise":
            assert 0.01 <= sigma <= 0.2
        else:
            assert sigma is None
        assert config["train.batch_size"] in (4, 8, 12, 16)
    assert {c["model.latent_aug.mode"] for c in configs} == {"none", "noise", "mixup"}


def test_grid_points_enumerate_without_duplicates() -> None:
    space = parse_space(
        {
            "model.attention": {"grid": ["none", "se"]},
            "model.latent_aug.mode": {"choice": ["none", "noise"]},
            "model.latent_aug.sigma": {"grid": [0.05, 0.1], "when": {"model.latent_aug.mode": ["noise"]}},
        }
    )
    points = space.grid_points()
    # attention x (mode none + mode noise x 2 sigmas) = 2 x 3, not the plain product 8
    assert len(points) == 6
    assert len({tuple(sorted(p.items())) for p in points}) == 6
    assert all(
        (p["model.latent_aug.sigma"] is None) == (p["model.latent_aug.mode"] == "none") for p in points
    )


def test_points_to_evaluate_are_checked_against_the_space() -> None:
    space = _space()
    errors = point_errors(space, [{"model.encoder": "resnet50", "train.lr": 1.0, "model.decodr": "unet"}])
    text = "\n".join(errors)
    assert "search.points_to_evaluate[0].model.encoder: 'resnet50' is outside choice" in text
    assert "search.points_to_evaluate[0].train.lr: 1.0 is outside loguniform" in text
    assert "search.points_to_evaluate[0].model.decodr: not a parameter of the space" in text
    assert point_errors(space, [{"model.encoder": "resnet18", "train.batch_size": 8}]) == []
