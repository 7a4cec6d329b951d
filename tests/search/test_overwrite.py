"""``search --overwrite`` replaces only an experiment of this tool, strictly inside the storage, after the
data, space and resources are validated, and keeps the old folder aside until the new run has started;
``resume`` names the experiment's own spec.yaml when it is invalid."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import launch
import search.resources
import search.tuner as tuner
from search.config import load_search_spec
from search.resources import ResourceError
from search.tuner import ExperimentError, run_search
from tests.search.helpers import write_spec

OLD_FILES = {
    "spec.yaml": "name: tiny\n",
    "splits.json": "{}\n",
    "data.json": "{}\n",
    "tuner.pkl": "tune state\n",
    "train_trial_old_00000/result.json": '{"val/score": 0.5}\n',
}


def _write(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    return folder


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    """``runs/`` with one finished experiment ``old`` of this tool and a data folder beside it."""
    runs = tmp_path / "runs"
    _write(runs / "old", OLD_FILES)
    _write(tmp_path / "thesis_data" / "benign", {"benign (1).png": "png", "benign (1)_mask.png": "mask"})
    write_spec(tmp_path)
    return runs


def _search(tmp_path: Path, storage: Path, name: str, *extra: str) -> int:
    spec = tmp_path / "spec.yaml"
    return launch.main(
        ["search", str(spec), "--storage", str(storage), "--name", name, "--overwrite", *extra]
    )


@pytest.mark.parametrize("name", [".", "..", "../thesis_data", "ABS", "old/train_trial_old_00000", ".old"])
def test_name_follows_the_spec_name_rule(
    tmp_path: Path, storage: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(tmp_path)
    name = str(tmp_path / "thesis_data") if name == "ABS" else name
    assert _search(tmp_path, storage, name) == 2
    assert "is not a valid name" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before


def test_only_an_experiment_of_this_tool_is_replaced(
    tmp_path: Path, storage: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(storage / "thesis_data" / "benign", {"benign (1).png": "png"})  # a plain data folder
    _write(
        storage / "trained", {"spec.yaml": "name: t\n", "state.pt": "w", "summary.json": "{}"}
    )  # `train`'s
    (storage / "link").symlink_to(storage / "old")  # an experiment, but through a link
    before = _snapshot(tmp_path)
    for name, why in (
        ("thesis_data", "not an experiment folder"),
        ("trained", "not an experiment folder"),
        ("link", "is a link"),
    ):
        assert _search(tmp_path, storage, name) == 2
        err = capsys.readouterr().err
        assert why in err and "choose another --name" in err
    assert _snapshot(tmp_path) == before


def test_data_and_resources_are_validated_before_anything_moves(
    tmp_path: Path, storage: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _snapshot(storage)
    (tmp_path / "empty").mkdir()
    assert _search(tmp_path, storage, "old", "--data", str(tmp_path / "empty")) == 2
    assert _snapshot(storage) == before

    def infeasible(cfg: Any, shapes: Any = None) -> None:
        raise ResourceError("no node has 64 CPUs")

    monkeypatch.setattr(tuner, "init_ray", lambda address: None)
    monkeypatch.setattr(search.resources, "check_feasible", infeasible)
    assert _search(tmp_path, storage, "old") == 2
    assert "no node has 64 CPUs" in capsys.readouterr().err
    assert _snapshot(storage) == before


class FakeTune:
    """Stands in for Ray: ``build_tuner`` keeps the callbacks, ``_fit`` calls ``on_fit(callbacks)``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, on_fit: Any) -> None:
        self.callbacks: list[Any] = []
        monkeypatch.setattr(tuner, "init_ray", lambda address: None)
        monkeypatch.setattr(search.resources, "check_feasible", lambda cfg, shapes=None: None)
        monkeypatch.setattr(tuner, "make_trainable", lambda *args: None)
        monkeypatch.setattr(tuner, "build_tuner", self.build)
        monkeypatch.setattr(tuner, "_fit", lambda tuner_, spec, space: on_fit(self.callbacks))

    def build(self, spec: Any, loc: Any, trainable: Any, space: Any, callbacks: Any = ()) -> str:
        self.callbacks = list(callbacks)
        Path(loc.path, "tuner.pkl").write_text("new tune state", encoding="utf-8")
        return "tuner"


def _aside(storage: Path) -> list[Path]:
    return sorted(storage.glob(".old.replaced-*"))


def test_old_experiment_is_kept_aside_until_the_first_trial_starts(
    tmp_path: Path, storage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fit(callbacks: list[Any]) -> list[Any]:
        seen["aside"] = [_snapshot(p) for p in _aside(storage)]
        seen["in_place"] = _snapshot(storage / "old")
        for callback in callbacks:
            callback.on_trial_start(iteration=0, trials=[], trial=None)
        seen["after_start"] = _aside(storage)
        return []

    FakeTune(monkeypatch, fit)
    spec = load_search_spec(write_spec(tmp_path))
    assert run_search(spec, storage=str(storage), name="old", overwrite=True) == []
    assert seen["aside"] == [OLD_FILES]  # moved aside intact while the new run was being set up
    assert "train_trial_old_00000/result.json" not in seen["in_place"]
    assert seen["in_place"]["tuner.pkl"] == "new tune state" and "name: tiny" in seen["in_place"]["spec.yaml"]
    assert seen["after_start"] == [] and _aside(storage) == []  # deleted once a trial started
    assert not (storage / "old" / "train_trial_old_00000").exists()


@pytest.mark.parametrize("failure", [RuntimeError("Tune failed to start"), KeyboardInterrupt()])
def test_old_experiment_comes_back_when_the_new_run_never_starts(
    tmp_path: Path, storage: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    def fit(callbacks: list[Any]) -> list[Any]:
        raise failure

    FakeTune(monkeypatch, fit)
    spec = load_search_spec(write_spec(tmp_path))
    with pytest.raises(type(failure)):
        run_search(spec, storage=str(storage), name="old", overwrite=True)
    assert _snapshot(storage / "old") == OLD_FILES and _aside(storage) == []


def test_run_search_refuses_without_the_cli(tmp_path: Path, storage: Path) -> None:
    spec = load_search_spec(write_spec(tmp_path))
    with pytest.raises(ExperimentError, match="is not a valid name"):
        run_search(spec, storage=str(storage), name="..", overwrite=True)
    assert (storage / "old" / "tuner.pkl").is_file()


def test_resume_names_the_experiments_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = _write(tmp_path / "runs" / "exp", {**OLD_FILES, "spec.yaml": "name: tiny\ntrain: {lr: fast}\n"})
    shown = str(exp / "spec.yaml")
    for text in ("name: tiny\ntrain: {lr: fast}\n", "name: [unclosed\n"):  # a bad value, broken YAML
        (exp / "spec.yaml").write_text(text, encoding="utf-8")
        assert launch.main(["resume", str(exp)]) == 2
        err = capsys.readouterr().err
        named = re.findall(r"(\S*spec\.yaml)", err)
        assert named and all(n.rstrip(":") == shown for n in named), err
