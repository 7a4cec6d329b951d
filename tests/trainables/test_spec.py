"""The spec: issue 4's error forms, cross-section rules, overrides, YAML round trip, dotted keys, spaces/."""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import yaml

from trainables.config import DoubleImbalanceCorrectionWarning
from trainables.schema import Section, SpecError
from trainables.spec import (
    Spec,
    apply_overrides,
    dump_spec,
    flatten,
    load_spec,
    save_spec,
    set_dotted,
    spec_from_dict,
    spec_hash,
    spec_sections,
    spec_to_dict,
    trial_spec,
    trial_spec_dict,
    unflatten,
)

REPO = Path(__file__).resolve().parents[2]
SPACES = sorted((REPO / "spaces").glob("*.yaml"))


def train_specs() -> list[Path]:
    """Shipped plain train specs; a file with a ``search:`` section belongs to search/, one with
    ``stages:`` is a pipeline (pipeline/config.py), each tested there."""
    return [p for p in SPACES if not {"search", "stages"} & set(yaml.safe_load(p.read_text()) or {})]


def spec_error(d: dict, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(SpecError) as info:
        spec_from_dict(apply_overrides(d, overrides))
    return str(info.value)


# --------------------------------------------------------------------------------- error messages


def test_issue_error_forms() -> None:
    assert spec_error({}, ("train.lr=fast",)) == "train.lr: expected a positive number, got 'fast'"
    assert (
        spec_error({"model": {"decodr": "unet"}}) == "model.decodr: unknown key, did you mean model.decoder?"
    )


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"data": {"folds": 1}}, "data.folds: expected an integer in [2, 20], got 1"),
        ({"data": {"test_fraction": 1}}, "data.test_fraction: expected a number in (0.0, 1.0), got 1"),
        ({"data": {"train_fraction": 0}}, "data.train_fraction: expected a number in (0.0, 1.0], got 0"),
        ({"data": {"resize": "crop"}}, "data.resize: expected one of stretch, letterbox, got 'crop'"),
        ({"train": {"epochs": "many"}}, "train.epochs: expected a positive integer, got 'many'"),
        (
            {"train": {"optimizer": "adam"}},
            "train.optimizer: expected one of adamw, sgd, got 'adam' (did you mean 'adamw'?)",
        ),
        (
            {"train": {"augment": {"scale": 1.1}}},
            "train.augment.scale: expected a list of 2 numbers, got 1.1",
        ),
        (
            {"train": {"loss": {"sge": "dice_bce"}}},
            "train.loss.sge: unknown key, did you mean train.loss.seg?",
        ),
        (
            {"model": {"cls_head": {"dropout": 1.0}}},
            "model.cls_head.dropout: expected a number in [0.0, 1.0), got 1.0",
        ),
        (
            {"model": {"latent_aug": {"mode": "noise+mixpu"}}},
            "model.latent_aug.mode: expected one of none, noise, mixup, noise+mixup, got 'noise+mixpu' "
            "(did you mean 'noise+mixup'?)",
        ),
        (
            {"name": "my run/1"},
            "name: 'my run/1' is not a valid name: use letters, digits and . _ + - (it names the output "
            "folder)",
        ),
        ({"trian": {}}, "trian: unknown key, did you mean train?"),
    ],
)
def test_wrong_type_range_choice_and_key(d: dict, message: str) -> None:
    assert spec_error(d) == message


@pytest.mark.parametrize(
    ("key", "bad", "names"),
    [
        ("encoder", "resnet19", "resnet18"),
        ("decoder", "unet++", "unetplusplus"),
        ("bottleneck", "dual-domain", "dual_domain"),
        ("attention", "cbma", "cbam"),
    ],
)
def test_component_names_are_checked_with_valid_names(key: str, bad: str, names: str) -> None:
    message = spec_error({"model": {key: bad}})
    assert message.startswith(f"model.{key}: ")
    assert repr(bad) in message
    assert names in message


def test_a_timm_encoder_name_is_valid_and_a_typo_is_not() -> None:
    assert (
        spec_from_dict({"model": {"encoder": "tu-test_efficientnet"}}).model.encoder == "tu-test_efficientnet"
    )
    assert spec_error({"model": {"encoder": "tu-test_efficientnett"}}).startswith("model.encoder: ")


def test_errors_of_several_sections_are_reported_together() -> None:
    message = spec_error({"data": {"folds": 0}, "model": {"decodr": "unet"}}, ("train.lr=fast",))
    assert message.splitlines() == [
        "data.folds: expected an integer in [2, 20], got 0",
        "model.decodr: unknown key, did you mean model.decoder?",
        "train.lr: expected a positive number, got 'fast'",
    ]


@pytest.mark.parametrize(
    ("d", "message"),
    [
        (
            {"model": {"num_classes": 2}},
            "model.num_classes: 2 does not match the 3 names of data.classes (normal, benign, malignant)",
        ),
        (
            {"model": {"latent_aug": {"target_classes": ["malignant", "benig"]}}},
            "model.latent_aug.target_classes[1]: unknown class 'benig', did you mean 'benign'? "
            "(valid: normal, benign, malignant)",
        ),
        (
            {"model": {"latent_aug": {"target_classes": "some"}}},
            "model.latent_aug.target_classes: unknown class 'some' (valid: auto, normal, benign, malignant)",
        ),
        (
            {"train": {"select": {"recall_malignat": 1.0}}},
            "train.select.recall_malignat: unknown class 'malignat', did you mean 'malignant'? "
            "(valid: normal, benign, malignant)",
        ),
        (
            {"data": {"classes": ["a", "a"]}, "model": {"num_classes": 2}},
            "data.classes: expected at least 2 distinct class names, got ['a', 'a']",
        ),
        (
            {"data": {"image_size": 100}},
            "data.image_size: 100 does not suit model.encoder / model.decoder: input of height=100, "
            "width=100",
        ),
        (
            {"model": {"decoder_options": {"decoder_chanels": [8]}}},
            "model.decoder_options: unknown option(s) decoder_chanels",
        ),
    ],
)
def test_cross_section_rules(d: dict, message: str) -> None:
    assert spec_error(d).startswith(message)


def test_batch_dice_needs_a_region_term() -> None:
    """``seg: focal`` has no Dice / Tversky term: ``batch_dice`` there would change nothing, so it refuses."""
    assert "batch_dice: seg 'focal' has no Dice / Tversky term" in spec_error(
        {"train": {"loss": {"seg": "focal", "batch_dice": True}}}
    )
    for seg in ("dice_bce", "dice_focal", "tversky"):
        assert spec_from_dict({"train": {"loss": {"seg": seg, "batch_dice": True}}}).train.loss.batch_dice


def test_select_names_are_checked_by_the_metrics_module() -> None:
    assert spec_error({"train": {"select": {"hd95": 1.0}}}).startswith(
        "train.select: 'hd95' is not a selection metric"
    )
    assert spec_from_dict({"train": {"select": {"macro_f1": 1, "recall_malignant": 1}}}).train.select == {
        "macro_f1": 1.0,
        "recall_malignant": 1.0,
    }


def test_balanced_sampler_with_weighted_ce_warns_and_is_allowed() -> None:
    with pytest.warns(DoubleImbalanceCorrectionWarning, match="corrects the class imbalance twice"):
        spec = spec_from_dict({"train": {"sampler": "balanced"}})  # train.loss.cls defaults to weighted_ce
    assert (spec.train.sampler, spec.train.loss.cls) == ("balanced", "weighted_ce")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DoubleImbalanceCorrectionWarning)
        spec_from_dict({"train": {"sampler": "balanced", "loss": {"cls": "ce"}}})
        spec_from_dict({"train": {"sampler": "random", "loss": {"cls": "weighted_ce"}}})


# ------------------------------------------------------------------------------------ overrides


def test_overrides_are_parsed_as_yaml_and_validated() -> None:
    spec = spec_from_dict(
        apply_overrides(
            {"train": {"lr": 0.1, "select": {"dice": 0.5, "macro_f1": 0.5}}},
            [
                "train.lr=1e-3",
                "train.epochs=2",
                "data.root=null",
                "name=quick",
                "model.latent_aug.target_classes=[benign,malignant]",
                "train.select={macro_f1: 1}",
                "train.augment.scale=[0.8, 1.2]",
            ],
        )
    )
    assert spec.train.lr == 0.001
    assert spec.train.epochs == 2
    assert spec.data.root is None
    assert spec.name == "quick"
    assert spec.model.latent_aug.target_classes == ["benign", "malignant"]
    assert spec.train.select == {"macro_f1": 1.0}  # a dict field is replaced whole, not merged
    assert spec.train.augment.scale == (0.8, 1.2)


def test_apply_overrides_does_not_touch_its_input() -> None:
    d = {"train": {"lr": 0.1}}
    out = apply_overrides(d, ["train.lr=0.2", "model.encoder=resnet34"])
    assert d == {"train": {"lr": 0.1}}
    assert out == {"train": {"lr": 0.2}, "model": {"encoder": "resnet34"}}


def test_bad_overrides() -> None:
    assert spec_error({}, ("train.lrr=1e-3",)) == "train.lrr: unknown key, did you mean train.lr?"
    assert spec_error({}, ("train.epochs=[1, 2]",)) == "train.epochs: expected a positive integer, got [1, 2]"
    with pytest.raises(SpecError, match=r"'train\.lr': expected KEY=VALUE"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(
        SpecError, match=r"train\.lr: is a value \(0\.1\), not a section, so train\.lr\.x cannot be set"
    ):
        apply_overrides({"train": {"lr": 0.1}}, ["train.lr.x=1"])
    with pytest.raises(SpecError, match="not a valid dotted key"):
        apply_overrides({}, ["train..lr=1"])


def test_set_dotted_creates_levels() -> None:
    d: dict = {}
    set_dotted(d, "a.b.c", 1)
    set_dotted(d, "a.d", 2)
    assert d == {"a": {"b": {"c": 1}, "d": 2}}


# ------------------------------------------------------------------------------- files, round trip


def _custom_spec() -> Spec:
    return spec_from_dict(
        {
            "name": "round-trip",
            "data": {
                "image_size": 64,
                "classes": ["normal", "benign", "malignant"],
                "synthetic": {"n_per_class": [3, 4, 5]},
            },
            "model": {
                "encoder": "tu-test_efficientnet",
                "decoder": "unetplusplus",
                "decoder_options": {"decoder_channels": [64, 32, 16, 16, 8]},
                "latent_aug": {"mode": "noise", "target_classes": ["malignant"]},
            },
            "train": {
                "lr": "1e-5",
                "grad_clip": None,
                "augment": {"gamma": [0.7, 1.3]},
                "select": {"macro_f1": 1},
            },
        }
    )


def test_round_trip_dict_spec_yaml_spec(tmp_path: Path) -> None:
    spec = _custom_spec()
    d = spec_to_dict(spec)
    assert d["train"]["augment"]["gamma"] == [0.7, 1.3]  # plain lists, no tuples
    assert spec_from_dict(d) == spec
    path = save_spec(spec, tmp_path / "out" / "spec.yaml")
    assert load_spec(path) == spec
    assert yaml.safe_load(path.read_text()) == d
    assert "scale: [0.9, 1.1]" in dump_spec(spec)  # short lists stay on one line
    assert path.read_text().startswith("name: round-trip\ndata:\n")  # field order, not sorted


def test_load_spec_applies_overrides_and_keeps_the_file_name(tmp_path: Path) -> None:
    path = save_spec(_custom_spec(), tmp_path / "spec.yaml")
    assert load_spec(path, ["train.epochs=3"]).train.epochs == 3
    with pytest.raises(SpecError) as info:
        load_spec(path, ["train.lr=fast"])
    assert str(info.value) == "train.lr: expected a positive number, got 'fast'"
    assert info.value.source == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty spec"),
        ("# only a comment\n", "empty spec"),
        ("- a\n- b\n", "expected a mapping of sections (name, data, model, train, ...), got list"),
        ("train: {lr: [1,\n", "invalid YAML"),
    ],
)
def test_load_spec_file_problems(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=r"^.*bad\.yaml: ") as info:
        load_spec(path)
    assert message in str(info.value)


def test_load_spec_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.yaml: spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_hash_is_stable_and_detects_changes() -> None:
    spec = _custom_spec()
    h = spec_hash(spec)
    assert len(h) == 12
    assert spec_hash(spec_from_dict(spec_to_dict(spec))) == h
    assert spec_hash(spec_to_dict(spec)) == h
    assert spec_hash(replace(spec, train=replace(spec.train, lr=2e-5))) != h
    code = "from trainables.spec import Spec, spec_hash; print(spec_hash(Spec()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == spec_hash(Spec())  # no dependence on hash seeds or dict order


# ---------------------------------------------------------------------------------- dotted keys


def test_flatten_descends_into_sections_only() -> None:
    spec = _custom_spec()
    flat = flatten(spec)
    assert flat["train.lr"] == 1e-5
    assert flat["train.augment.gamma"] == [0.7, 1.3]
    assert flat["train.select"] == {"macro_f1": 1.0}  # a dict field is one key
    assert flat["model.decoder_options"] == {"decoder_channels": [64, 32, 16, 16, 8]}
    assert flat["name"] == "round-trip"
    assert not any(key.startswith("train.select.") for key in flat)
    assert unflatten(flat) == spec_to_dict(spec)
    assert spec_from_dict(unflatten(flat)) == spec


def test_flatten_unflatten_inverse_on_partial_dicts() -> None:
    d = {
        "name": "x",
        "data": {},
        "train": {"lr": 0.1, "loss": {"seg": "focal"}},
        "search": {"num_samples": 4},
    }
    flat = flatten(d)
    assert flat == {
        "name": "x",
        "data": {},
        "train.lr": 0.1,
        "train.loss.seg": "focal",
        "search": {"num_samples": 4},
    }
    assert unflatten(flat) == d


def test_unflatten_rejects_a_key_that_is_both_value_and_section() -> None:
    with pytest.raises(SpecError, match=r"train\.lr: given both as a value and as a section"):
        unflatten({"train.lr.x": 1, "train.lr": 2})
    with pytest.raises(SpecError, match="is a value"):
        unflatten({"train": 1, "train.lr": 2})


@dataclass
class _Extra(Section):
    num_samples: int = field(default=1, metadata={"ge": 1})


@dataclass
class _SearchLikeSpec(Spec):
    search: _Extra = field(default_factory=_Extra)


def test_a_subclass_adds_sections() -> None:
    spec = spec_from_dict({"search": {"num_samples": 8}, "train": {"epochs": 2}}, _SearchLikeSpec)
    assert spec.search.num_samples == 8
    assert flatten(spec)["search.num_samples"] == 8
    assert spec_error({"search": {}}) == "search: unknown key; valid keys: name, data, model, train"
    with pytest.raises(SpecError, match=r"search\.num_samples: expected a positive integer, got 0"):
        spec_from_dict({"search": {"num_samples": 0}}, _SearchLikeSpec)


# --------------------------------------------------------------------------------- shipped specs


def test_defaults_are_a_valid_spec() -> None:
    assert spec_from_dict({}) == Spec()
    assert spec_from_dict(None) == Spec()


@pytest.mark.parametrize("path", train_specs(), ids=lambda p: p.name)
def test_shipped_train_specs_load(path: Path, tmp_path: Path) -> None:
    spec = load_spec(path)
    assert load_spec(save_spec(spec, tmp_path / "spec.yaml")) == spec


def test_the_issue_example_is_shipped_with_its_values() -> None:
    spec = load_spec(REPO / "spaces" / "example_full.yaml")
    assert (spec.name, spec.model.encoder, spec.model.decoder) == (
        "b6-unetpp",
        "efficientnet-b6",
        "unetplusplus",
    )
    assert (spec.model.bottleneck, spec.model.attention, spec.model.latent_aug.mode) == (
        "dual_domain",
        "cbam",
        "noise+mixup",
    )
    assert spec.train.lr == 3.0e-4
    assert spec.train.select == {"dice": 0.5, "macro_f1": 0.5}


def test_quickstart_is_small_cpu_and_offline() -> None:
    spec = load_spec(REPO / "spaces" / "quickstart_train.yaml")
    assert spec.data.root is None  # the built-in synthetic set
    assert spec.model.encoder_weights is None  # nothing to download
    assert spec.data.image_size <= 64
    assert spec.train.epochs <= 10


def test_trial_spec_keeps_the_spec_sections_and_sets_the_trial_overrides() -> None:
    from search.config import SearchSpec

    assert spec_sections(Spec) == ("name", "data", "model", "train")
    assert set(spec_sections(SearchSpec)) > set(spec_sections(Spec))  # derived from the type, not listed
    search = {"num_samples": 3, "space": {"train.lr": {"loguniform": [1.0e-4, 1.0e-2]}}}
    base = spec_to_dict(spec_from_dict({"name": "s", "search": search}, SearchSpec))
    d = trial_spec_dict(base, {"train.lr": 0.01, "model.latent_aug.mode": "noise"})
    assert set(d) == {"name", "data", "model", "train"}  # search, resources, ... are the driver's
    assert d["train"]["lr"] == 0.01 and d["model"]["latent_aug"]["mode"] == "noise"
    assert base["train"]["lr"] != 0.01 and base["model"]["latent_aug"]["mode"] == "none"  # base untouched
    spec = trial_spec(base, {"train.lr": 0.01})
    assert isinstance(spec, Spec) and spec.train.lr == 0.01 and spec.name == "s"
    with pytest.raises(SpecError, match=r"train\.lr"):
        trial_spec(base, {"train.lr": -1.0})
