"""Encoder weights are checked on the driver before Ray starts, for every encoder the space can draw, and
weight files are given to the trials by absolute path (they run in their own folders)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from search.commands import _load
from search.config import load_search_spec
from search.space import check_weights, space_from_spec, weight_pairs, weights_errors
from tests.model_zoo.test_weights import _put_hf
from tests.search.helpers import TINY, merge, write_spec
from trainables.schema import SpecError

EFFICIENTNET_REPO = "timm/test_efficientnet.r160_in1k"


@pytest.fixture
def caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty private HF and torch hub caches; the HF one is returned."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch"))
    return tmp_path / "hf"


def _search(spec: Path, storage: Path) -> int:
    import launch

    return launch.main(["search", str(spec), "--storage", str(storage)])


def test_search_refuses_missing_cached_weights_before_ray(
    caches: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two encoders with imagenet weights, one of them cached: exit 2 naming the other and the command
    that fetches it, before the data is read or Ray started, and no experiment folder."""
    import search.tuner

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("reached past the weights check")

    monkeypatch.setattr(search.tuner, "load_run_data", never)
    monkeypatch.setattr(search.tuner, "init_ray", never)
    _put_hf(caches, EFFICIENTNET_REPO, None, {"model.safetensors": b"present"})
    spec = write_spec(
        tmp_path,
        {
            "model": {"encoder_weights": "imagenet"},
            "search": {
                "space": {"model.encoder": {"choice": ["tu-test_efficientnet", "tu-mobilenetv3_small_050"]}}
            },
        },
    )
    assert _search(spec, tmp_path / "runs") == 2
    err = capsys.readouterr().err
    assert "model.encoder=tu-mobilenetv3_small_050" in err
    assert "python launch.py fetch-weights tu-mobilenetv3_small_050" in err
    assert "model.encoder=tu-test_efficientnet" not in err
    assert not (tmp_path / "runs").exists()


def test_weight_pairs_follow_the_conditions(caches: Path, tmp_path: Path) -> None:
    """Weights drawn only for one encoder are checked for that encoder alone (resnet18 keeps null)."""
    spec = load_search_spec(
        write_spec(
            tmp_path,
            {
                "model": {"encoder": "resnet18", "encoder_weights": None},
                "search": {
                    "space": {
                        "model.encoder": {"choice": ["resnet18", "tu-test_efficientnet"]},
                        "model.encoder_weights": {
                            "choice": ["imagenet"],
                            "when": {"model.encoder": ["tu-test_efficientnet"]},
                        },
                    }
                },
            },
        )
    )
    space = space_from_spec(spec)
    assert sorted(weight_pairs(spec, space), key=str) == [
        ("resnet18", None),
        ("tu-test_efficientnet", "imagenet"),
    ]
    errors = weights_errors(spec, space)
    assert [e.split(":")[1].strip() for e in errors[:-1]] == ["model.encoder=tu-test_efficientnet"]
    assert errors[-1].endswith("python launch.py fetch-weights tu-test_efficientnet")
    _put_hf(caches, EFFICIENTNET_REPO, None, {"model.safetensors": b"present"})
    check_weights(spec, space)  # now every drawable pair is there


def test_unknown_weight_set_and_missing_file_are_refused(caches: Path, tmp_path: Path) -> None:
    spec = load_search_spec(
        write_spec(
            tmp_path,
            {
                "model": {"encoder": "mobilenet_v2", "encoder_weights": str(tmp_path / "gone.pth")},
                "search": {
                    "space": {"model.encoder_weights": {"choice": ["imagenett", str(tmp_path / "gone.pth")]}}
                },
            },
        )
    )
    with pytest.raises(SpecError) as info:
        check_weights(spec, space_from_spec(spec))
    errors = info.value.errors
    assert len(errors) == 2, errors
    assert "no weights named 'imagenett'" in errors[0]
    assert "gone.pth' does not exist" in errors[1] and "every node" in errors[1] and ".rayignore" in errors[1]


def test_relative_weight_paths_become_absolute_when_the_spec_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trials run in their own folders: the base value, the space's choices and the points all become
    absolute against the folder the command runs in, and still validate together."""
    monkeypatch.chdir(tmp_path)
    raw = merge(
        TINY,
        {
            "model": {"encoder_weights": "w/base.pth"},
            "search": {
                "space": {"model.encoder_weights": {"choice": ["w/a.safetensors", None, "imagenet"]}},
                "points_to_evaluate": [{"model.encoder_weights": "w/a.safetensors"}],
            },
        },
    )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    import launch

    spec = _load(launch.build_parser().parse_args(["search", str(path), "--storage", str(tmp_path / "runs")]))
    assert spec.model.encoder_weights == str(tmp_path / "w" / "base.pth")
    choices = [str(tmp_path / "w" / "a.safetensors"), None, "imagenet"]
    assert spec.search.space["model.encoder_weights"]["choice"] == choices
    assert spec.search.points_to_evaluate == [{"model.encoder_weights": choices[0]}]
    assert not spec.validate()
