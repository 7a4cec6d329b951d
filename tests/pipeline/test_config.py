"""The shipped stage specs and pipeline file validate; bad pipeline files fail with messages that name
the stage and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import load_pipeline
from search.config import load_search_spec
from tests.pipeline.helpers import ROOT, THESIS, spec, write_pipeline
from trainables.schema import SpecError

STAGE_FILES = [
    "stage1_encoders",
    "stage2_decoders",
    "stage3_attention",
    "stage4_imbalance",
    "final_b6_unetpp",
]


@pytest.mark.parametrize("name", STAGE_FILES)
def test_stage_specs_validate_and_state_their_budget(name: str) -> None:
    path = ROOT / "spaces" / f"{name}.yaml"
    spec = load_search_spec(path)
    assert spec.name == name
    header = path.read_text(encoding="utf-8")
    assert "Hardware and budget (ESTIMATES" in header and "GPU-hour" in header and "gpu: 0.25" in header


def test_stage1_is_the_benchmark_grid_ranked_by_macro_f1() -> None:
    from model_zoo.encoders import BENCHMARK

    spec = load_search_spec(ROOT / "spaces" / "stage1_encoders.yaml")
    assert spec.search.algorithm == "grid" and spec.search.space["model.encoder"]["grid"] == BENCHMARK
    assert len(BENCHMARK) == 19 and spec.data.folds == 3
    assert spec.train.select == {"macro_f1": 1.0}
    assert (spec.model.decoder, spec.model.bottleneck, spec.model.attention) == ("unet", "identity", "none")


def test_stage_spaces_match_the_study() -> None:
    s2 = load_search_spec(ROOT / "spaces" / "stage2_decoders.yaml").search.space
    assert s2 == {"model.decoder": {"grid": ["unet", "unetplusplus", "deeplabv3plus"]}}
    s3 = load_search_spec(ROOT / "spaces" / "stage3_attention.yaml").search.space
    assert s3["model.bottleneck"]["grid"] == ["identity", "dual_domain"]
    assert s3["model.attention"]["grid"] == ["none", "cbam", "se", "scse"]
    s4 = load_search_spec(ROOT / "spaces" / "stage4_imbalance.yaml")
    assert s4.search.algorithm == "optuna" and s4.search.scheduler.type == "asha"
    assert {
        "model.latent_aug.mode",
        "train.sampler",
        "train.loss.cls",
        "model.latent_aug.sigma",
        "model.latent_aug.alpha",
        "model.latent_aug.multiplier",
        "train.lr",
    } == set(s4.search.space)
    final = load_search_spec(ROOT / "spaces" / "final_b6_unetpp.yaml")
    m = final.model
    assert (m.encoder, m.decoder, m.bottleneck, m.attention, m.latent_aug.mode) == (
        "efficientnet-b6",
        "unetplusplus",
        "dual_domain",
        "cbam",
        "noise+mixup",
    )
    assert final.search.algorithm == "optuna" and final.search.scheduler.type == "asha"
    assert all(k.startswith("train.") or k.startswith("model.cls_head.") for k in final.search.space)


def test_thesis_pipeline_loads_with_the_chain() -> None:
    from model_zoo.encoders import BENCHMARK

    p = load_pipeline(THESIS)
    assert p.config.stage_names == [
        "stage1_encoders",
        "stage2_decoders",
        "stage3_attention",
        "stage4_imbalance",
        "final",
    ]
    assert p.stage("stage2_decoders").entry.inherit == {
        "from": "stage1_encoders",
        "fields": ["model.encoder"],
    }
    assert p.stage("final").entry.inherit_from == "stage4_imbalance"
    assert p.config.refit_stage == "final"
    assert p.config.stages[0].rank_by == "macro_f1"
    # Every benchmark encoder has a tiny stand-in or is one (Inception-V3 could not run at the smoke size).
    stand_ins = p.config.smoke.encoder_stand_ins
    assert set(BENCHMARK) <= set(stand_ins) | set(stand_ins.values())


def _error(tmp_path: Path, **kwargs) -> str:
    path = write_pipeline(tmp_path, **kwargs)
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    return str(info.value)


def test_inherit_from_a_later_or_unknown_stage(tmp_path: Path) -> None:
    stages = [
        {"name": "enc", "spec": "enc.yaml", "inherit": {"from": "dec", "fields": ["model.decoder"]}},
        {"name": "dec", "spec": "dec.yaml", "inherit": {"from": "nope", "fields": ["model.encoder"]}},
    ]
    message = _error(tmp_path, pipeline={"stages": stages})
    assert "stages[0].inherit.from: 'dec' is a later stage" in message
    assert "stages[1].inherit.from: 'nope' is not a stage" in message


def test_inherited_field_must_exist_and_not_be_searched(tmp_path: Path) -> None:
    stages = [
        {"name": "enc", "spec": "enc.yaml"},
        {
            "name": "dec",
            "spec": "dec.yaml",
            "inherit": {"from": "enc", "fields": ["model.encodr", "model.decoder"]},
        },
        {"name": "att", "spec": "att.yaml", "inherit": {"from": "dec", "fields": ["data.image_size"]}},
    ]
    message = _error(tmp_path, pipeline={"stages": stages})
    assert "model.encodr: not a field of the spec; did you mean model.encoder" in message
    assert "model.decoder is also searched by this stage" in message
    assert "data.image_size: only model.* and train.* fields can be inherited" in message


def test_bad_entries_are_named(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        pipeline={
            "stages": [{"name": "enc", "spec": "enc.yaml", "rank_by": "dise"}, {"name": "a b", "spec": "x"}],
            "smoke": {"encoder_stand_ins": {"resnet50": "tu-not_a_model"}},
        },
    )
    assert "stages[0].rank_by: no direction known for metric 'dise'" in message
    assert "stages[1].name: 'a b' is not a valid name" in message
    assert "smoke.encoder_stand_ins: stand-in of resnet50" in message and "tu-not_a_model" in message


def test_duplicate_stages_and_unknown_refit_stage(tmp_path: Path) -> None:
    stages = [{"name": "enc", "spec": "enc.yaml"}, {"name": "enc", "spec": "dec.yaml"}]
    message = _error(tmp_path, pipeline={"stages": stages, "refit": {"stage": "other"}})
    assert "stages[1].name: 'enc' is used twice" in message
    assert "refit.stage: 'other' is not a stage (enc, enc)" in message


def test_stage_spec_errors_name_the_stage(tmp_path: Path) -> None:
    bad = spec("dec")
    bad["search"]["space"] = {"model.decoder": {"grid": ["unet", "unetpp"]}}
    message = _error(tmp_path, specs={"dec": bad})
    assert "stages[1] (dec) dec.yaml: search.space.model.decoder" in message and "unetpp" in message


def test_missing_stage_file(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["stages"][2]["spec"] = "gone.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError, match=r"stages\[2\] \(att\)\.spec: .*gone.yaml: file not found"):
        load_pipeline(path)
