"""Build, run and restore the Tuner, and keep the experiment folder self-describing.

``<storage>/<name>/`` (a local folder, an NFS path, ``s3://`` or ``gs://``) holds Tune's own state and
trial folders plus ``spec.yaml`` (the resolved spec), ``splits.json`` (the one split every trial used) and
``data.json`` (data fingerprint and audit summary): analysis and resume need nothing else. Starting a
search whose folder exists is an error unless ``resume`` (continue it) or ``overwrite`` (delete it first).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.checkpoint_repair import repair_checkpoint_refs
from search.config import SearchSpec, load_search_spec, scheduler_milestones
from search.space import Space, space_from_spec
from trainables.spec import dump_spec, spec_to_dict

SPEC_FILE = "spec.yaml"
SPLITS_FILE = "splits.json"
DATA_FILE = "data.json"
DEFAULT_STORAGE = "runs"


class ExperimentError(RuntimeError):
    """The experiment folder is in a state that does not allow the requested action."""


@dataclass(frozen=True)
class Location:
    """Where an experiment lives: ``storage`` (absolute path or URI) + ``name`` = ``path``."""

    storage: str
    name: str

    @property
    def is_uri(self) -> bool:
        return "://" in self.storage

    @property
    def path(self) -> str:
        return (
            f"{self.storage.rstrip('/')}/{self.name}" if self.is_uri else str(Path(self.storage) / self.name)
        )

    def fs(self) -> tuple[Any, str]:
        """``(pyarrow filesystem, path on it)`` of the experiment folder."""
        import pyarrow.fs

        if self.is_uri:
            return pyarrow.fs.FileSystem.from_uri(self.path)
        return pyarrow.fs.LocalFileSystem(), self.path

    def exists(self) -> bool:
        import pyarrow.fs

        fs, path = self.fs()
        return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound

    def write_text(self, filename: str, text: str) -> None:
        fs, path = self.fs()
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(f"{path}/{filename}") as out:
            out.write(text.encode("utf-8"))

    def read_text(self, filename: str) -> str:
        fs, path = self.fs()
        try:
            with fs.open_input_stream(f"{path}/{filename}") as src:
                return src.read().decode("utf-8")
        except FileNotFoundError:
            raise ExperimentError(f"{self.path}: no {filename}; is this an experiment folder?") from None

    def delete(self) -> None:
        fs, path = self.fs()
        fs.delete_dir(path)


def location(storage: str | None, name: str) -> Location:
    """Normalise ``--storage`` (default ./runs; local paths made absolute, URIs kept) and ``--name``."""
    storage = storage or DEFAULT_STORAGE
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    return Location(storage, name)


def location_of(exp_dir: str) -> Location:
    """The :class:`Location` of an existing experiment folder (path or URI)."""
    exp_dir = exp_dir.rstrip("/")
    if "://" in exp_dir:
        storage, _, name = exp_dir.rpartition("/")
        return Location(storage, name)
    path = Path(exp_dir).expanduser().resolve()
    return Location(str(path.parent), path.name)


# ------------------------------------------------------------------------------------------- data


def load_data(spec: SearchSpec) -> tuple[Any, dict]:
    """The cached dataset and the splits every trial uses (``data.splits`` if given, else made)."""
    from trainables.data.cache import load_dataset
    from trainables.data.splits import resolve_splits

    dataset = load_dataset(spec.data)
    return dataset, resolve_splits(spec.data, dataset)


def data_summary(dataset: Any) -> dict[str, Any]:
    """``data.json``: what the trials trained on (fingerprint, classes, sizes, audit)."""
    return {
        "fingerprint": dataset.fingerprint,
        "root": dataset.root,
        "n_images": len(dataset),
        "image_size": dataset.image_size,
        "resize": dataset.resize,
        "class_names": list(dataset.class_names),
        "class_counts": [int(c) for c in dataset.class_counts()],
        "audit": dataset.audit,
    }


def write_experiment_files(loc: Location, spec: SearchSpec, dataset: Any, splits: dict) -> None:
    loc.write_text(SPEC_FILE, dump_spec(spec))
    loc.write_text(SPLITS_FILE, json.dumps(splits, indent=1, ensure_ascii=False) + "\n")
    loc.write_text(DATA_FILE, json.dumps(data_summary(dataset), indent=1, default=str) + "\n")


def read_experiment(loc: Location) -> tuple[SearchSpec, dict, dict]:
    """The saved spec, splits and data summary of an experiment folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / SPEC_FILE
        spec_path.write_text(loc.read_text(SPEC_FILE), encoding="utf-8")
        spec = load_search_spec(spec_path)
    return spec, json.loads(loc.read_text(SPLITS_FILE)), json.loads(loc.read_text(DATA_FILE))


# ------------------------------------------------------------------------------------------- Ray


def init_ray(address: str | None) -> None:
    """Join ``address`` (auto, HOST:PORT, ray://...) or start a local Ray for this run (no dashboard)."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
        return
    # "local": a new Ray for this run, never a cluster that happens to run on this machine (RAY_ADDRESS,
    # as set inside a Ray job, still wins).
    ray.init(address="local", include_dashboard=False, runtime_env=local_runtime_env())


def local_runtime_env(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runtime env of a local Ray: workers import this project from its root (as a job's --working-dir
    provides on a cluster), plus ``env``."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path, **(env or {})}}


def make_trainable(spec: SearchSpec, space: Space, dataset: Any, splits: dict) -> Any:
    """``with_resources(with_parameters(train_trial, data in the object store once, checkpoint
    parameters), {cpu, gpu})``."""
    from ray import tune

    from trainables.trainable import SPEC_SECTIONS, train_trial

    base = {k: v for k, v in spec_to_dict(spec).items() if k in SPEC_SECTIONS}
    fn = tune.with_parameters(
        train_trial,
        base_spec=base,
        resolve=space.resolve,
        dataset=dataset,
        splits=splits,
        **checkpoint_parameters(spec, space),
    )
    return tune.with_resources(fn, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def checkpoint_parameters(spec: SearchSpec, space: Space | None = None) -> dict[str, Any]:
    """``train_trial``'s checkpoint keywords: ``checkpoint.every_epochs`` and the epochs at which the
    scheduler may stop or pause a trial (:func:`search.config.scheduler_milestones`)."""
    return {
        "checkpoint_every": spec.checkpoint.every_epochs,
        "milestones": scheduler_milestones(spec, space),
    }


def trial_dirname(trial: Any) -> str:
    """``train_trial_<id>``: short and stable (Tune's default packs the config into the name)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def build_tuner(
    spec: SearchSpec, loc: Location, trainable: Any, space: Space, callbacks: Sequence[Any] = ()
) -> Any:
    """The Tuner: searcher, scheduler, resources, failure retries, checkpoints, W&B, progress table;
    ``callbacks`` are extra Tune callbacks (tests, monitoring)."""
    from ray import tune

    from search import algorithms
    from search.progress import build_reporter
    from search.wandb_setup import build_wandb_callback
    from trainables.spec import flatten

    metric, mode = algorithms.tune_metric_mode(spec)
    total = algorithms.num_samples(spec, space)
    base_flat = {k: v for k, v in flatten(spec).items() if k.split(".")[0] in ("data", "model", "train")}
    callback = build_wandb_callback(spec.wandb, loc.name, base_flat, space.resolve)
    return tune.Tuner(
        trainable,
        param_space=algorithms.param_space(spec, space),
        tune_config=tune.TuneConfig(
            search_alg=algorithms.build_searcher(spec, space),
            scheduler=algorithms.build_scheduler(spec, space),
            metric=metric,
            mode=mode,
            num_samples=total,
            max_concurrent_trials=spec.search.max_concurrent,
            time_budget_s=spec.search.time_budget_s,
            reuse_actors=True,  # a trial's worker keeps torch & co. imported for the next trial
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=loc.name,
            storage_path=loc.storage,
            callbacks=[*([callback] if callback else []), *callbacks],
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint.num_to_keep),
            progress_reporter=build_reporter(spec, space, total),
            verbose=1,
        ),
    )


def _fit(tuner: Any, spec: SearchSpec, space: Space) -> Any:
    from search import algorithms
    from search.progress import format_leaderboard, leaderboard_rows

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray's new output engine ignores CLIReporter
    # With a searcher such as Optuna, Tune keeps one pending trial only: a new actor (~6 s to import
    # torch & co.) then loses the race to the running one and concurrent trials never start (measured in
    # benchmarks/packing.py). Let as many trials pend as may run at once.
    pending = spec.search.max_concurrent or min(algorithms.num_samples(spec, space), 16)
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(1, pending)))
    results = tuner.fit()
    rows = leaderboard_rows(list(results), spec, space)
    print(f"\nLeaderboard ({spec.search.metrics[0]}, {spec.search.modes[0]}):", file=sys.stderr)
    print(format_leaderboard(rows), file=sys.stderr)
    return results


def run_search(
    spec: SearchSpec,
    *,
    storage: str | None = None,
    name: str | None = None,
    address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[Any] = (),
) -> Any:
    """Run (or, with ``resume``, continue) the search of ``spec``; return Tune's ResultGrid."""
    from search.resources import check_feasible

    if resume and overwrite:
        raise ExperimentError("give --resume or --overwrite, not both")
    loc = location(storage, name or spec.name)
    if loc.exists():
        if resume:
            return restore_search(loc.path, address=address)
        if not overwrite:
            raise ExperimentError(
                f"{loc.path} exists: pass --resume to continue that experiment or --overwrite to delete it "
                "and start again (nothing is overwritten silently)"
            )
        loc.delete()
    elif resume:
        raise ExperimentError(f"--resume: {loc.path} does not exist; nothing to resume")
    if address and not loc.is_uri:
        print(
            f"note: trials on other nodes write checkpoints to {loc.storage}; on a multi-node cluster it must be "
            "shared storage (NFS, or --storage s3://... / gs://...)",
            file=sys.stderr,
        )
    space = space_from_spec(spec)
    dataset, splits = load_data(spec)
    init_ray(address)
    check_feasible(spec.resources)
    write_experiment_files(loc, spec, dataset, splits)
    tuner = build_tuner(spec, loc, make_trainable(spec, space, dataset, splits), space, callbacks)
    return _fit(tuner, spec, space)


def restore_search(exp_dir: str, address: str | None = None) -> Any:
    """Continue an experiment from its folder: finished trials stay, unfinished and errored ones resume
    from their last checkpoint, and the searcher's state is kept (``Tuner.restore``)."""
    from ray import tune

    from search import algorithms
    from search.resources import check_feasible

    loc = location_of(exp_dir)
    spec, splits, data = read_experiment(loc)
    if not tune.Tuner.can_restore(loc.path):
        raise ExperimentError(
            f"{loc.path}: Tune saved no state there yet (stopped before the first trial?); "
            "start again with --overwrite"
        )
    space = space_from_spec(spec)
    from trainables.data.cache import load_dataset

    dataset = load_dataset(spec.data)
    if dataset.fingerprint != data["fingerprint"]:
        raise ExperimentError(
            f"{loc.path}: the data changed since the experiment started (fingerprint {dataset.fingerprint} "
            f"!= {data['fingerprint']} in {DATA_FILE}); resuming would mix datasets"
        )
    for note in [] if loc.is_uri else repair_checkpoint_refs(loc.path):
        print(f"resume: repaired the experiment state: {note}", flush=True)
    init_ray(address)
    check_feasible(spec.resources)
    tuner = tune.Tuner.restore(
        loc.path,
        trainable=make_trainable(spec, space, dataset, splits),
        resume_errored=True,
        param_space=algorithms.param_space(spec, space),
    )
    return _fit(tuner, spec, space)
