"""Search-spec validation: the space against the spec's fields and names, cross-section rules, and the
``search`` command failing before Ray starts."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from search.config import SearchSpec, load_search_spec, parse_duration
from trainables.config import DoubleImbalanceCorrectionWarning
from trainables.schema import SpecError

BASE = {
    "name": "t",
    "model": {"encoder": "tu-test_efficientnet"},
    "train": {"epochs": 4},
    "search": {
        "scheduler": {"type": "asha", "grace_period": 1},
        "space": {
            "model.attention": {"choice": ["none", "se"]},
            "train.lr": {"loguniform": [1.0e-4, 1.0e-3]},
        },
    },
}


def _write(tmp_path: Path, **changes: object) -> Path:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        node = doc
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _error(tmp_path: Path, **changes: object) -> str:
    with pytest.raises(SpecError) as info:
        load_search_spec(_write(tmp_path, **changes))
    return str(info.value)


def test_valid_spec_loads_with_defaults(tmp_path: Path) -> None:
    spec = load_search_spec(_write(tmp_path))
    assert isinstance(spec, SearchSpec)
    assert spec.search.metric == "val/score_best" and spec.search.mode == "max"
    assert spec.resources.cpu == 1.0 and spec.wandb.mode == "auto"
    overridden = load_search_spec(_write(tmp_path), ["search.num_samples=3", "resources.gpu=0.25"])
    assert overridden.search.num_samples == 3 and overridden.resources.gpu == 0.25


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"model.encoder": {"choice": ["tu-test_efficientnet", "resnet5"]}},
            "search.space.model.encoder: value 'resnet5' is not valid: model.encoder: unknown encoder "
            "'resnet5'. Did you mean 'resnet50'?",
        ),
        (
            {"model.decoder": {"choice": ["unet", "unetpp"]}},
            "search.space.model.decoder: value 'unetpp' is not valid",
        ),
        ({"model.attention": {"choice": ["none", "cbma"]}}, "Valid: cbam, none, scse, se"),
        (
            {"model.latent_aug.mode": {"choice": ["none", "noize"]}},
            "expected one of none, noise, mixup, noise+mixup, got 'noize'",
        ),
        ({"train.lr": {"uniform": [0.0, 0.1]}}, "search.space.train.lr: value 0.0 is not valid"),
        (
            {"model.encodr": {"choice": ["resnet18"]}},
            "search.space.model.encodr: not a field of the spec; did you mean model.encoder",
        ),
        ({"data.image_size": {"choice": [64, 128]}}, "the data section cannot be searched"),
        ({"search.num_samples": {"choice": [1]}}, "only model.* and train.* fields can be searched"),
        (
            {"train.select.dice": {"uniform": [0, 1]}},
            "train.select is one value (a mapping); search it whole",
        ),
        ({"train.lr": {"normal": [0, 1]}}, "unknown distribution 'normal'"),
    ],
)
def test_space_errors(tmp_path: Path, space: dict, message: str) -> None:
    assert message in _error(tmp_path, search__space=space)


def test_sections_of_the_spec_can_be_searched_whole(tmp_path: Path) -> None:
    space = {"train.select": {"choice": [{"dice": 1.0}, {"dice": 0.5, "macro_f1": 0.5}]}}
    spec = load_search_spec(_write(tmp_path, search__space=space))
    assert list(spec.search.space) == ["train.select"]
    bad = {"train.select": {"choice": [{"dice": 1.0}, {"dicee": 1.0}]}}
    assert "search.space.train.select: value {'dicee': 1.0} is not valid: train.select" in _error(
        tmp_path, search__space=bad
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"search__scheduler": {"grace_period": 9}},
            "search.scheduler.grace_period: 9 epochs is more than train.epochs (4)",
        ),
        (
            {"search__algorithm": "grid"},
            "search.space.train.lr: algorithm grid enumerates choice/grid values, not loguniform",
        ),
        ({"search__space": {"train.lr": {"grid": [0.1, 0.2]}}}, "grid needs algorithm grid or random"),
        ({"search__metric": ["val/dice", "val/macro_f1"]}, "with several metrics use fifo"),
        (
            {"search__points_to_evaluate": [{"model.attention": "cbam"}]},
            "search.points_to_evaluate[0].model.attention",
        ),
        ({"search__space": {}}, "search.space: empty"),
        ({"search__mode": "maximize"}, "search.mode: expected min or max"),
        ({"search__time_budget": "6 hours"}, "search.time_budget: '6 hours' is not a duration"),
        ({"resources": {"gpu": 1.5}}, "resources.gpu: a GPU request above 1 must be a whole number"),
        ({"wandb": {"mode": "on"}}, "wandb.mode: expected one of auto, online, offline, disabled"),
        ({"search__sampler": "bayes"}, "search.sampler: expected one of tpe, cmaes, random, nsgaii"),
    ],
)
def test_cross_section_rules(tmp_path: Path, changes: dict, message: str) -> None:
    assert message in _error(tmp_path, **changes)


def test_searched_epochs_bound_the_grace_period(tmp_path: Path) -> None:
    space = {**BASE["search"]["space"], "train.epochs": {"choice": [2, 6]}}
    spec = load_search_spec(_write(tmp_path, search__space=space, search__scheduler={"grace_period": 5}))
    assert spec.search.scheduler.grace_period == 5


def test_multi_objective_with_nsgaii(tmp_path: Path) -> None:
    spec = load_search_spec(
        _write(
            tmp_path,
            search__sampler="nsgaii",
            search__metric=["val/dice", "val/macro_f1"],
            search__mode=["max", "max"],
            search__scheduler={"type": "fifo"},
        )
    )
    assert spec.search.metrics == ["val/dice", "val/macro_f1"] and spec.search.modes == ["max", "max"]


def test_a_space_pairing_balanced_sampler_with_weighted_ce_warns_once(tmp_path: Path) -> None:
    space = {
        "train.sampler": {"choice": ["random", "balanced"]},
        "train.loss.cls": {"choice": ["ce", "weighted_ce"]},
    }
    with pytest.warns(DoubleImbalanceCorrectionWarning) as record:
        load_search_spec(_write(tmp_path, search__space=space, train__loss={"cls": "ce"}))
    messages = [str(w.message) for w in record if issubclass(w.category, DoubleImbalanceCorrectionWarning)]
    assert len(messages) == 1 and messages[0].startswith("search.space can draw this pairing")
    space["train.loss.cls"] = {"choice": ["ce", "focal"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DoubleImbalanceCorrectionWarning)
        load_search_spec(_write(tmp_path, search__space=space, train__loss={"cls": "ce"}))


def test_durations() -> None:
    assert parse_duration("6h") == 6 * 3600
    assert parse_duration("90m") == 5400
    assert parse_duration("1.5d") == 1.5 * 86400
    assert parse_duration(30) == 30.0
    assert parse_duration(None) is None


def test_wandb_mode_auto_follows_the_api_key() -> None:
    from search.config import WandbConfig

    assert WandbConfig().resolved_mode({}) == "offline"
    assert WandbConfig().resolved_mode({"WANDB_API_KEY": "x"}) == "online"
    assert WandbConfig(mode="disabled").resolved_mode({"WANDB_API_KEY": "x"}) == "disabled"
    assert WandbConfig().resolved_project({}) == "bus-search"
    assert WandbConfig(project="p").resolved_project({"WANDB_PROJECT": "q"}) == "p"


def test_invalid_spec_fails_before_ray_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    import launch

    path = _write(tmp_path, search__space={"model.encoder": {"choice": ["resnet5"]}})
    was_running = ray.is_initialized()
    assert launch.main(["search", str(path), "--storage", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "unknown encoder 'resnet5'" in err and str(path) in err
    assert ray.is_initialized() == was_running
    assert not (tmp_path / "runs").exists()


def test_existing_experiment_needs_resume_or_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import launch

    path = _write(tmp_path)
    exp = tmp_path / "runs" / "t"
    exp.mkdir(parents=True)
    (exp / "keep.txt").write_text("results")
    search = ["search", str(path), "--storage", str(tmp_path / "runs")]
    assert launch.main(search) == 2
    assert "exists: pass --resume to continue that experiment or --overwrite" in capsys.readouterr().err
    assert (exp / "keep.txt").exists()
    assert launch.main([*search, "--resume"]) == 2  # Tune saved nothing there: nothing to resume
    assert "no spec.yaml" in capsys.readouterr().err
    assert launch.main([*search, "--resume", "--name", "absent"]) == 2
    assert "does not exist; nothing to resume" in capsys.readouterr().err


def test_cmaes_needs_its_package(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("cmaes") is not None:
        assert load_search_spec(_write(tmp_path, search__sampler="cmaes")).search.sampler == "cmaes"
    else:
        assert "search.sampler: cmaes needs the 'cmaes' package" in _error(tmp_path, search__sampler="cmaes")
