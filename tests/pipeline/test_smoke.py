"""The --smoke shrink: stand-ins, grid subsets, conditions, Optuna trial counts; every shipped stage
shrinks to a valid spec, with the inheritance the chain will give it."""

from __future__ import annotations

import pytest

from pipeline.config import SmokeConfig, load_pipeline
from pipeline.run import own_spec_dict, resolve_stage
from pipeline.smoke import shrink_stage
from search.config import SearchSpec
from tests.pipeline.helpers import THESIS
from trainables.spec import spec_from_dict

SMOKE = SmokeConfig(
    set={"train.epochs": 1, "data.image_size": 32},
    grid_values=2,
    num_samples=2,
    encoder_stand_ins={
        "resnet50": "tu-test_resnet",
        "resnet101": "tu-test_resnet",
        "efficientnet-b6": "tu-test_efficientnet",
    },
)


def _grid(space: dict) -> dict:
    return {
        "name": "g",
        "model": {"encoder": "efficientnet-b6"},
        "search": {"algorithm": "grid", "scheduler": {"type": "fifo"}, "space": space},
    }


def test_stand_ins_collapse_and_grid_keeps_the_first_values() -> None:
    raw = _grid({"model.encoder": {"grid": ["resnet50", "resnet101", "efficientnet-b6", "tu-test_convnext"]}})
    d, info = shrink_stage(raw, SMOKE)
    assert d["search"]["space"]["model.encoder"] == {"grid": ["tu-test_resnet", "tu-test_efficientnet"]}
    assert d["model"]["encoder"] == "tu-test_efficientnet" and d["train"]["epochs"] == 1
    assert info.dropped_values == {"model.encoder": ["tu-test_convnext"]}
    assert info.grouped_stand_ins() == {
        "tu-test_resnet": ["resnet50", "resnet101"],
        "tu-test_efficientnet": ["efficientnet-b6"],
    }
    assert raw["search"]["space"]["model.encoder"]["grid"][0] == "resnet50"  # the input is not changed
    spec_from_dict(d, SearchSpec)


def test_unused_stand_ins_are_not_reported() -> None:
    raw = _grid({"model.decoder": {"grid": ["unet", "fpn"]}})
    raw["model"]["encoder"] = "tu-test_resnet"
    _, info = shrink_stage(raw, SMOKE)
    assert info.stand_ins == {}


def test_conditions_that_can_no_longer_hold_drop_their_parameters() -> None:
    raw = _grid(
        {
            "model.latent_aug.mode": {"grid": ["none", "noise", "mixup"]},
            "model.latent_aug.alpha": {"grid": [0.2, 0.4], "when": {"model.latent_aug.mode": ["mixup"]}},
            "model.latent_aug.sigma": {
                "grid": [0.05, 0.1],
                "when": {"model.latent_aug.mode": ["noise", "mixup"]},
            },
        }
    )
    d, info = shrink_stage(raw, SMOKE)
    space = d["search"]["space"]
    assert "model.latent_aug.alpha" not in space and info.dropped_params == ["model.latent_aug.alpha"]
    assert space["model.latent_aug.sigma"]["when"] == {"model.latent_aug.mode": ["noise"]}
    spec_from_dict(d, SearchSpec)


def test_a_dropped_parameter_takes_the_parameters_that_depend_on_it_along() -> None:
    raw = _grid(
        {
            "model.latent_aug.mode": {"grid": ["none", "noise", "mixup"]},
            "model.latent_aug.alpha": {"grid": [0.2, 0.4], "when": {"model.latent_aug.mode": ["mixup"]}},
            "model.latent_aug.multiplier": {"grid": [1, 2], "when": {"model.latent_aug.alpha": [0.2]}},
        }
    )
    d, info = shrink_stage(raw, SMOKE)
    assert list(d["search"]["space"]) == ["model.latent_aug.mode"]
    assert info.dropped_params == ["model.latent_aug.alpha", "model.latent_aug.multiplier"]
    spec_from_dict(d, SearchSpec)


def test_a_condition_on_the_encoder_follows_its_stand_in_in_the_form_written() -> None:
    raw = _grid(
        {
            "model.encoder": {"grid": ["efficientnet-b6", "resnet50"]},
            "model.latent_aug.sigma": {"grid": [0.05], "when": {"model.encoder": "efficientnet-b6"}},
            "model.latent_aug.alpha": {
                "grid": [0.2],
                "when": {"model.encoder": ["resnet50", "efficientnet-b6"]},
            },
        }
    )
    d, _ = shrink_stage(raw, SMOKE)
    space = d["search"]["space"]
    assert space["model.latent_aug.sigma"]["when"] == {"model.encoder": "tu-test_efficientnet"}
    assert space["model.latent_aug.alpha"]["when"] == {
        "model.encoder": ["tu-test_resnet", "tu-test_efficientnet"]
    }
    spec_from_dict(d, SearchSpec)


def test_numeric_entries_stay_as_written() -> None:
    space = {
        "model.decoder": {"choice": ["unet", "fpn", "unetplusplus"]},
        "train.batch_size": {"quniform": [4, 16, 4]},
    }
    raw = {"name": "o", "search": {"algorithm": "optuna", "num_samples": 4, "space": space}}
    d, _ = shrink_stage(raw, SMOKE)
    assert d["search"]["space"] == raw["search"]["space"]  # an Optuna stage keeps every value
    assert d["search"]["space"]["train.batch_size"]["quniform"] == [4, 16, 4]  # not parsed floats
    spec_from_dict(d, SearchSpec)


def test_optuna_stage_keeps_fitting_points_and_caps_trials() -> None:
    raw = {
        "name": "o",
        "search": {
            "algorithm": "optuna",
            "num_samples": 20,
            "space": {
                "model.encoder": {"choice": ["resnet50", "tu-test_efficientnet"]},
                "train.lr": {"loguniform": [1.0e-4, 1.0e-3]},
            },
            "points_to_evaluate": [
                {"model.encoder": "resnet50", "train.lr": 3.0e-4},
                {"model.encoder": "resnet101", "train.lr": 3.0e-4},
                {"model.encoder": "tu-test_efficientnet", "train.lr": 5.0e-3},
            ],
        },
    }
    d, info = shrink_stage(raw, SMOKE)
    assert d["search"]["num_samples"] == 2 and info.num_samples == (20, 2)
    assert d["search"]["scheduler"] == {"grace_period": 1}  # ASHA's default grace (2) cut to the 1 epoch
    # resnet101's stand-in is not a choice of this space; 5e-3 is outside the lr range.
    assert d["search"]["points_to_evaluate"] == [{"model.encoder": "tu-test_resnet", "train.lr": 3.0e-4}]
    assert info.points_dropped == 2
    spec_from_dict(d, SearchSpec)


def test_grid_points_to_evaluate_are_dropped() -> None:
    raw = _grid({"model.decoder": {"grid": ["unet", "fpn"]}})
    raw["search"]["points_to_evaluate"] = [{"model.decoder": "unet"}]
    d, info = shrink_stage(raw, SMOKE)
    assert d["search"]["points_to_evaluate"] == [] and info.points_dropped == 1


@pytest.mark.parametrize("smoke", [True, False])
def test_every_thesis_stage_resolves_with_the_inheritance_the_chain_gives_it(smoke: bool) -> None:
    pipeline = load_pipeline(THESIS)
    winners = {  # what a stage's winner could hand on: the first grid value of each searched key
        "model.encoder": "tu-test_efficientnet" if smoke else "efficientnet-b6",
        "model.decoder": "unet",
        "model.bottleneck": "dual_domain",
        "model.attention": "cbam",
        "model.latent_aug.mode": "noise+mixup",
        "model.latent_aug.sigma": 0.05,
        "model.latent_aug.alpha": 0.4,
        "model.latent_aug.multiplier": 1,
        "model.latent_aug.target_classes": "auto",
        "train.sampler": "balanced",
        "train.loss.cls": "focal",
    }
    for stage in pipeline.stages:
        own, info = own_spec_dict(stage, pipeline.config.smoke if smoke else None, data_root=None)
        fields = stage.entry.inherit_fields
        inherited = {k: v for k, v in winners.items() if any(k == f or k.startswith(f + ".") for f in fields)}
        assert len(inherited) >= len(fields)
        spec = resolve_stage(stage, own, inherited)
        if smoke:
            assert spec.data.image_size == 64 and spec.train.epochs == 2 and spec.wandb.mode == "disabled"
            assert spec.resources.gpu == 0 and spec.model.encoder_weights is None
            assert spec.search.algorithm == "grid" or spec.search.num_samples == 3
            assert not info.stand_ins or spec.model.encoder.startswith(
                ("tu-test", "tu-mobilenetv3_small_050")
            )
        else:
            assert info is None and spec.data.image_size == 256 and spec.resources.gpu == 0.25
