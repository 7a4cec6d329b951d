"""search/ray_compat.py: the only module that uses private Ray APIs, each behind a version check.

None of these tests starts Ray: the version check, the fence around the private names (an AST scan of the
product code), and the moved functions on files and objects built here the way Ray 2.60 writes them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import ray

from search import ray_compat
from search.checkpoint_repair import repair_checkpoint_refs
from search.ray_compat import RayVersionError

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("launch.py", "pipeline", "search", "analysis", "trainables", "model_zoo", "benchmarks")
COMPAT = "search/ray_compat.py"

# The private Ray/Tune names the project uses, all in ray_compat (and each named in its docstring).
PRIVATE_NAMES = frozenset(
    {
        "_TrainingRunMetadata",
        "_latest_checkpoint_result",
        "_checkpoint_results",
        "_start_logging_actor",
        "_remote_logger_class",
        "_logger_actor_cls",
        "pickled_error_file",
        "get_cluster_config",
    }
)
PRIVATE_MODULES = ("ray.cloudpickle",)  # besides any ray module with a part starting with "_"


# ------------------------------------------------------------------------------------- version check


def test_the_installed_ray_is_the_tested_one() -> None:
    ray_compat.require_tested_ray("anything")
    assert ray_compat.installed_ray_version() == ray.__version__
    pin = re.search(r"^ray\[[^\]]*\]==([\d.]+)", (ROOT / "requirements.txt").read_text(), flags=re.M)
    assert pin, "requirements.txt pins no ray version"
    assert ".".join(pin.group(1).split(".")[:2]) == ray_compat.TESTED_RAY


def _state_dir(tmp_path: Path) -> Path:
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    return tmp_path


class _Hooked(ray_compat.WandbRunHook):
    pass


# Every private accessor, with arguments it never gets to use on an untested Ray.
ACCESSORS: dict[str, Callable[[Path], Any]] = {
    "autoscaler_node_types": lambda tmp: ray_compat.autoscaler_node_types(),
    "newest_experiment_state": lambda tmp: ray_compat.newest_experiment_state(_state_dir(tmp)),
    "load_experiment_state": lambda tmp: ray_compat.load_experiment_state(next(_state_dir(tmp).iterdir())),
    "trial_records": lambda tmp: ray_compat.trial_records({"trial_data": []}),
    "read_trial_states": lambda tmp: ray_compat.read_trial_states(_state_dir(tmp)),
    "run_metadata": lambda tmp: ray_compat.run_metadata({"trial_data": []}, 0),
    "put_run_metadata": lambda tmp: ray_compat.put_run_metadata({"trial_data": []}, 0, None),
    "latest_checkpoint_result": lambda tmp: ray_compat.latest_checkpoint_result(object()),
    "checkpoint_results": lambda tmp: ray_compat.checkpoint_results(object()),
    "set_checkpoint_results": lambda tmp: ray_compat.set_checkpoint_results(object(), [], None),
    "checkpoint_result_like": lambda tmp: ray_compat.checkpoint_result_like(None, "x", {}),
    "read_trial_error": lambda tmp: ray_compat.read_trial_error(object()),
    "WandbRunHook": lambda tmp: _Hooked(),
    "repair_checkpoint_refs": lambda tmp: repair_checkpoint_refs(_state_dir(tmp)),
}


@pytest.mark.parametrize("name", sorted(ACCESSORS))
def test_another_ray_version_fails_with_what_to_do(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ray, "__version__", "2.61.0")
    with pytest.raises(RayVersionError) as info:
        ACCESSORS[name](tmp_path)
    msg = str(info.value)
    for text in (
        "Ray 2.61.0 is installed",
        "Ray 2.60",
        "requirements.txt",
        COMPAT,
        "ray[tune,default]==2.60.*",
    ):
        assert text in msg, (text, msg)
    assert info.value.exit_code == 2 and isinstance(info.value, RuntimeError)


def test_the_message_names_the_feature_and_a_patch_release_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "__version__", "3.0.0.dev0")
    with pytest.raises(RayVersionError, match=r"^W&B logging .* but Ray 3\.0\.0\.dev0 is installed"):
        ray_compat.require_tested_ray(ray_compat.FEATURE_WANDB)
    monkeypatch.setattr(ray, "__version__", "2.60.7")
    ray_compat.require_tested_ray(ray_compat.FEATURE_WANDB)
    monkeypatch.setattr(ray, "__version__", "2.6.0")  # not 2.60
    with pytest.raises(RayVersionError):
        ray_compat.require_tested_ray(ray_compat.FEATURE_WANDB)


def test_the_project_imports_and_runs_its_ray_free_parts_on_another_ray() -> None:
    """Only a private feature fails: importing the modules that use ray_compat does not."""
    code = (
        "import ray; ray.__version__ = '2.99.0'\n"
        "import analysis.results, search.checkpoint_repair, search.failures, search.resources\n"
        "import search.ray_compat, search.tuner, search.wandb_setup\n"
        "assert search.resources.infeasible_reason({'CPU': 1.0}, [{'CPU': 2.0}]) is None\n"
        "try:\n"
        "    search.failures.stop_on_fatal_error()\n"
        "except search.ray_compat.RayVersionError as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "refused: stopping a search at a trial error" in out.stdout
    assert "Ray 2.99.0 is installed" in out.stdout


# --------------------------------------------------------------------------- the fence (AST, no import)


def _product_files() -> Iterator[Path]:
    for top in PRODUCT:
        path = ROOT / top
        yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of the module, its classes and functions (they may name anything)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_ray_module(module: str) -> bool:
    parts = module.split(".")
    return parts[0] == "ray" and (any(_private(p) for p in parts) or module in PRIVATE_MODULES)


def _root_name(node: ast.AST) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def private_ray_uses(file: str, source: str) -> list[str]:
    """``file:line: what`` for each use of a private Ray API in ``source``."""
    tree = ast.parse(source, filename=file)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Import):
            what = next((f"import {a.name}" for a in node.names if _private_ray_module(a.name)), None)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ray":
            names = [a.name for a in node.names if _private(a.name) or a.name in PRIVATE_NAMES]
            full = [f"{node.module}.{a.name}" for a in node.names]
            if _private_ray_module(node.module) or names or any(m in PRIVATE_MODULES for m in full):
                what = f"from {node.module} import {', '.join(a.name for a in node.names)}"
        elif isinstance(node, ast.Attribute) and (
            node.attr in PRIVATE_NAMES or (_private(node.attr) and _root_name(node) == "ray")
        ):
            what = f".{node.attr}"
        elif isinstance(node, ast.Name) and node.id in PRIVATE_NAMES:
            what = node.id
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in PRIVATE_NAMES:
            what = f"def {node.name}"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docs
            and ("experiment_state" in node.value or node.value in PRIVATE_NAMES)
        ):
            what = repr(node.value)
        if what:
            found.append(f"{file}:{getattr(node, 'lineno', '?')}: {what}")
    return found


def test_no_module_but_ray_compat_uses_private_ray_apis() -> None:
    files = list(_product_files())
    assert len(files) > 30 and ROOT / COMPAT in files
    violations = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel != COMPAT:
            violations += private_ray_uses(rel, path.read_text(encoding="utf-8"))
    assert violations == [], "private Ray APIs belong in search/ray_compat.py:\n" + "\n".join(violations)


def test_ray_compat_uses_and_documents_each_listed_private_name() -> None:
    source = (ROOT / COMPAT).read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source)) or ""
    uses = "\n".join(private_ray_uses(COMPAT, source))
    for name in PRIVATE_NAMES:
        assert name in doc, f"{name}: not listed in the docstring of {COMPAT}"
        assert name in uses, f"{name}: no longer used in {COMPAT}; drop it from PRIVATE_NAMES"
    assert "ray._private" in uses and "ray.cloudpickle" in uses


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("from ray._private.state import state", "from ray._private.state import state"),
        ("import ray._private.worker", "import ray._private.worker"),
        ("import ray\nx = ray._private.worker", "._private"),
        ("from ray.air.util.node import _force_on_current_node", "_force_on_current_node"),
        ("from ray.tune.trainable.metadata import _TrainingRunMetadata", "_TrainingRunMetadata"),
        ("import ray.cloudpickle as pickle", "import ray.cloudpickle"),
        ("from ray import cloudpickle", "cloudpickle"),
        ("m._latest_checkpoint_result = None", "._latest_checkpoint_result"),
        ("p = trial.pickled_error_file", ".pickled_error_file"),
        ("class C:\n    def _start_logging_actor(self): ...", "def _start_logging_actor"),
        ("files = folder.glob('experiment_state-*.json')", "'experiment_state-*.json'"),
        ("v = getattr(m, '_checkpoint_results')", "'_checkpoint_results'"),
    ],
)
def test_the_scan_finds_each_kind_of_private_use(source: str, what: str) -> None:
    (hit,) = private_ray_uses("x.py", source)
    assert what in hit


def test_the_scan_leaves_public_uses_and_docstrings_alone() -> None:
    source = (
        '"""Reads experiment_state-*.json through ray_compat."""\n'
        "import ray\nfrom ray import tune\nfrom ray.tune.search.optuna import OptunaSearch\n"
        "from search.ray_compat import read_trial_states\n"
        "nodes = ray.nodes()\nself._private_of_ours = 1\nprint(ray.__version__)\n"
    )
    assert private_ray_uses("x.py", source) == []


# --------------------------------------------------------------------------------- experiment state


def _write_state(folder: Path, name: str, trials: list[tuple[dict[str, Any], dict[str, Any]]]) -> Path:
    path = folder / f"experiment_state-{name}.json"
    data = [[json.dumps(t), json.dumps(m)] for t, m in trials]
    path.write_text(json.dumps({"trial_data": data, "runner_data": {}}), encoding="utf-8")
    return path


def test_the_newest_state_is_tunes_newest_by_name_not_by_mtime(tmp_path: Path) -> None:
    assert ray_compat.newest_experiment_state(tmp_path) is None
    old = _write_state(tmp_path, "2026-01-01_00-00-00", [({"trial_id": "a", "status": "RUNNING"}, {})])
    new = _write_state(tmp_path, "2026-01-02_00-00-00", [({"trial_id": "a", "status": "TERMINATED"}, {})])
    (tmp_path / f"{new.name}.before-repair").write_text("{}")  # a repair's backup is not a state
    os.utime(new, (1, 1))  # a copy that lost the times
    assert ray_compat.newest_experiment_state(tmp_path) == new
    assert ray_compat.read_trial_states(tmp_path)["a"]["status"] == "TERMINATED"
    assert old.exists()


def test_trial_states_as_plain_json(tmp_path: Path) -> None:
    trials = [
        ({"trial_id": "t1", "status": "ERROR", "relative_logdir": "train_t1"}, {"num_failures": 3}),
        ({"trial_id": 7, "status": "PENDING"}, {"num_failures": None}),
    ]
    _write_state(tmp_path, "2026-01-01_00-00-00", trials)
    assert ray_compat.read_trial_states(tmp_path) == {
        "t1": {"trial_id": "t1", "status": "ERROR", "relative_logdir": "train_t1", "num_failures": 3},
        "7": {"trial_id": "7", "status": "PENDING", "relative_logdir": None, "num_failures": 0},
    }


@pytest.mark.parametrize("text", ["{not json", "[]", '{"trial_data": {}}', '{"trial_data": [["{}", "{}"]]}'])
def test_an_unreadable_state_gives_no_statuses(tmp_path: Path, text: str) -> None:
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(text)
    assert ray_compat.read_trial_states(tmp_path) == {}


def test_load_experiment_state_rejects_what_tune_did_not_write(tmp_path: Path) -> None:
    path = tmp_path / "experiment_state-x.json"
    for text in ("{not json", '{"runner_data": {}}', "[1]"):
        path.write_text(text)
        with pytest.raises(ValueError):
            ray_compat.load_experiment_state(path)


# -------------------------------------------------------------------------------------- checkpoints


def _checkpoint_result(path: Path, epoch: int) -> Any:
    """A checkpoint result as Tune records it (Ray 2.60's internal class), without Ray running."""
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint

    return _TrainingResult(Checkpoint(str(path)), {"epoch": float(epoch), "training_iteration": epoch})


def _run_metadata_json(results: list[Any]) -> str:
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.tune import CheckpointConfig
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    manager = _CheckpointManager(CheckpointConfig())
    for result in results:
        manager.register_checkpoint(result)
    metadata = _TrainingRunMetadata()
    metadata.checkpoint_manager = manager
    return metadata.get_json_state()


def _tunes_latest(state: dict[str, Any], index: int = 0) -> str:
    """The checkpoint folder Tune's own reader resumes trial ``index`` from ("" for none)."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    meta = _TrainingRunMetadata.from_json_state(state["trial_data"][index][1])
    latest = meta.checkpoint_manager.latest_checkpoint_result
    return Path(latest.checkpoint.path).name if latest else ""


def test_checkpoint_results_round_trip_in_tunes_format(tmp_path: Path) -> None:
    one, two = (_checkpoint_result(tmp_path / f"checkpoint_00000{i}", i) for i in (1, 2))
    state = {"trial_data": [[json.dumps({"trial_id": "t"}), _run_metadata_json([one, two])]]}
    metadata = ray_compat.run_metadata(state, 0)
    manager = metadata.checkpoint_manager
    latest = ray_compat.latest_checkpoint_result(manager)
    assert Path(latest.checkpoint.path).name == "checkpoint_000002"
    assert [Path(r.checkpoint.path).name for r in ray_compat.checkpoint_results(manager)] == [
        "checkpoint_000001",
        "checkpoint_000002",
    ]

    three = ray_compat.checkpoint_result_like(latest, str(tmp_path / "checkpoint_000003"), {"epoch": 3.0})
    assert type(three) is type(latest) and type(three.checkpoint) is type(latest.checkpoint)
    assert three.metrics == {"epoch": 3.0} and three.checkpoint.filesystem is latest.checkpoint.filesystem
    kept = ray_compat.checkpoint_results(manager)[:1]
    ray_compat.set_checkpoint_results(manager, [*kept, three], latest=three)
    ray_compat.put_run_metadata(state, 0, metadata)
    assert _tunes_latest(state) == "checkpoint_000003"

    ray_compat.set_checkpoint_results(manager, [], latest=None)
    ray_compat.put_run_metadata(state, 0, metadata)
    assert _tunes_latest(state) == ""


def test_repair_without_ray_running(tmp_path: Path) -> None:
    """The repair through ray_compat on a state in Tune's format: the recorded checkpoint is gone, a newer
    one (with its result row) exists, and the trial is pointed at it; the original is kept beside it."""
    exp = tmp_path / "exp"
    trial = exp / "train_t"
    (trial / "checkpoint_000003").mkdir(parents=True)
    (trial / "checkpoint_000003" / "loop.pt").write_bytes(b"x")
    rows = [
        {"training_iteration": i, "epoch": float(i), "checkpoint_dir_name": f"checkpoint_00000{i}"}
        for i in (2, 3)
    ]
    (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recorded = _checkpoint_result(trial / "checkpoint_000002", 2)
    meta = _run_metadata_json([recorded])
    state = {"trial_data": [[json.dumps({"trial_id": "t", "relative_logdir": "train_t"}), meta]]}
    path = exp / "experiment_state-2026-01-01_00-00-00.json"
    path.write_text(json.dumps(state))

    assert repair_checkpoint_refs(exp) == [
        "trial t: checkpoint_000002 is gone -> checkpoint_000003 (epoch 3.0)"
    ]
    assert _tunes_latest(json.loads(path.read_text())) == "checkpoint_000003"
    assert json.loads(path.with_name(path.name + ".before-repair").read_text()) == state
    assert repair_checkpoint_refs(exp) == []


def test_repair_leaves_a_trial_without_folder_alone(tmp_path: Path) -> None:
    meta = _run_metadata_json([_checkpoint_result(tmp_path / "checkpoint_000001", 1)])
    state = {"trial_data": [[json.dumps({"trial_id": "t"}), meta]]}
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps(state))
    with pytest.warns(UserWarning, match="unknown trial state format .*no relative_logdir"):
        assert repair_checkpoint_refs(tmp_path) == []


# ------------------------------------------------------------------------------- resources and errors


def test_autoscaler_node_types_keep_the_launchable_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray._private.state

    def group(cpu: float, max_count: int) -> SimpleNamespace:
        return SimpleNamespace(resources={"CPU": cpu}, max_count=max_count)

    config = SimpleNamespace(node_group_configs=[group(4, 2), group(64, 0), group(8, -1)])
    fake = SimpleNamespace(get_cluster_config=lambda: config)
    monkeypatch.setattr(ray._private.state, "state", fake)
    assert ray_compat.autoscaler_node_types() == [{"CPU": 4.0}, {"CPU": 8.0}]
    monkeypatch.setattr(ray._private.state, "state", SimpleNamespace(get_cluster_config=lambda: None))
    assert ray_compat.autoscaler_node_types() == []

    def unpublished() -> None:
        raise RuntimeError("no autoscaler")

    monkeypatch.setattr(ray._private.state, "state", SimpleNamespace(get_cluster_config=unpublished))
    assert ray_compat.autoscaler_node_types() == []


def test_read_trial_error(tmp_path: Path) -> None:
    import ray.cloudpickle as pickle

    path = tmp_path / "error.pkl"
    path.write_bytes(pickle.dumps(ValueError("boom")))
    error = ray_compat.read_trial_error(SimpleNamespace(pickled_error_file=str(path)))
    assert isinstance(error, ValueError) and str(error) == "boom"
    assert ray_compat.read_trial_error(SimpleNamespace(pickled_error_file=None)) is None
    path.write_bytes(b"not a pickle")
    assert ray_compat.read_trial_error(SimpleNamespace(pickled_error_file=str(path))) is None
    path.write_bytes(pickle.dumps("a string, not an exception"))
    assert ray_compat.read_trial_error(SimpleNamespace(pickled_error_file=str(path))) is None
    path.write_bytes(pickle.dumps(ValueError("from an older run")))  # e.g. in a folder handed to resume
    os.utime(path, (0, ray_compat._DRIVER_STARTED - 60))
    assert ray_compat.read_trial_error(SimpleNamespace(pickled_error_file=str(path))) is None


# ------------------------------------------------------------------------------------------------- W&B


def test_rays_wandb_callback_still_has_the_hooked_internals() -> None:
    import inspect

    from ray.air.integrations.wandb import WandbLoggerCallback

    params = list(inspect.signature(WandbLoggerCallback._start_logging_actor).parameters)
    assert params == ["self", "trial", "exclude_results", "wandb_init_kwargs"]
    assert isinstance(WandbLoggerCallback._logger_actor_cls, type)
    assert WandbLoggerCallback(project="p", mode="offline")._remote_logger_class is None


def test_the_hook_edits_each_run_and_makes_the_actor_class_without_a_runtime_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray.air.integrations.wandb import WandbLoggerCallback

    from search.config import WandbConfig
    from search.wandb_setup import ExperimentWandbCallback, build_wandb_callback

    started: list[tuple[Any, list[str], dict[str, Any]]] = []
    made: list[tuple[dict[str, Any], type]] = []

    def rays_start(self: Any, trial: Any, exclude_results: list[str], **init_kwargs: Any) -> None:
        started.append((trial, exclude_results, init_kwargs))

    def remote(**options: Any) -> Callable[[type], str]:
        def decorate(cls: type) -> str:
            made.append((options, cls))
            return "actor class"

        return decorate

    node = SimpleNamespace(get_node_id=lambda: "ab" * 28)
    monkeypatch.setattr(WandbLoggerCallback, "_start_logging_actor", rays_start)
    monkeypatch.setattr(ray, "remote", remote)
    monkeypatch.setattr(ray, "get_runtime_context", lambda: node)
    mro = ExperimentWandbCallback.__mro__
    assert mro.index(ray_compat.WandbRunHook) < mro.index(WandbLoggerCallback)  # the hook runs first
    callback = build_wandb_callback(
        WandbConfig(mode="offline", project="p"), "exp", {"model.encoder": "x", "train.lr": 0.1}, dict
    )
    assert callback is not None
    import pyarrow.fs

    storage = SimpleNamespace(
        storage_filesystem=pyarrow.fs.LocalFileSystem(), experiment_fs_path=str(tmp_path)
    )
    trial = SimpleNamespace(config={"train.lr": 0.5}, storage=storage)
    for _ in range(2):
        callback._start_logging_actor(trial, ["config"], id="t", config={"raw": 1})
    ((options, cls),) = made  # once, pinned to this node, and without a runtime_env (the key)
    assert cls is WandbLoggerCallback._logger_actor_cls
    strategy = options.pop("scheduling_strategy")
    assert (strategy.node_id, strategy.soft) == ("ab" * 28, False)
    assert options == {"num_cpus": 0, "max_restarts": 0}  # see logging_actor_options
    assert callback._remote_logger_class == "actor class"
    (one, _) = started
    assert one[0] is trial and one[1] == ["config"]
    config = {"model.encoder": "x", "train.lr": 0.5}
    assert one[2] == {"id": "t", "config": config, "dir": str(tmp_path), "reinit": "finish_previous"}
