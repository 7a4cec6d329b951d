"""Build, run and restore the Tuner, and keep the experiment folder self-describing.

``<storage>/<name>/`` (a local folder, an NFS path, ``s3://`` or ``gs://``) holds Tune's own state and
trial folders plus ``spec.yaml`` (the resolved spec), ``splits.json`` (the one split every trial used) and
``data.json`` (data fingerprint and audit summary): analysis and resume need nothing else. Starting a
search whose folder exists is an error unless ``resume`` (continue it) or ``overwrite`` (replace it).

``overwrite`` never loses anything by mistake: the name must be a valid experiment name (no paths, so the
folder lies strictly inside the storage), the folder must be an experiment of this tool (its ``spec.yaml``
beside Tune's ``tuner.pkl``), the data, space and resources are validated first, and the old folder is
only moved aside (``<storage>/.<name>.replaced-<time>-<pid>``) until the new run's first trial starts;
if the new run never starts, it is moved back.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search import console
from search.checkpoint_repair import repair_checkpoint_refs
from search.config import SearchSpec, load_search_spec, max_epochs_of, scheduler_milestones
from search.errors import ExperimentError
from search.space import Space, check_weights, space_from_spec
from trainables.data.run_data import data_summary, load_run_data
from trainables.schema import SpecError
from trainables.spec import check_name, dump_spec, spec_to_dict

SPEC_FILE = "spec.yaml"
SPLITS_FILE = "splits.json"
DATA_FILE = "data.json"
TUNE_STATE_FILE = "tuner.pkl"  # written by Tune when the Tuner is built (what Tuner.can_restore looks for)
DEFAULT_STORAGE = "runs"
OPTUNA_JOURNAL = "optuna.journal"  # the Optuna study of an optuna search (search.algorithms.optuna_storage)
REPLACED_TAG = ".replaced-"


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

    def names(self) -> set[str]:
        """The names of the folder's direct entries (empty when it is not a folder)."""
        import pyarrow.fs

        fs, path = self.fs()
        if fs.get_file_info(path).type != pyarrow.fs.FileType.Directory:
            return set()
        return {info.base_name for info in fs.get_file_info(pyarrow.fs.FileSelector(path))}

    def is_experiment(self) -> bool:
        """Whether the folder is an experiment of this tool: its ``spec.yaml`` beside Tune's state, or
        nothing but the files written before Tune starts (:func:`write_experiment_files`, the journal)."""
        names = self.names()
        own = {SPEC_FILE, SPLITS_FILE, DATA_FILE, OPTUNA_JOURNAL}
        return SPEC_FILE in names and (TUNE_STATE_FILE in names or names <= own)


def location(storage: str | None, name: str) -> Location:
    """Normalise ``--storage`` (default ./runs; local paths made absolute, URIs kept) and check ``--name``
    against the spec's name rule, so that the experiment folder lies strictly inside the storage."""
    try:
        check_name(name)
    except ValueError as exc:
        raise ExperimentError(f"--name: {exc}") from None
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


def write_experiment_files(loc: Location, spec: SearchSpec, dataset: Any, splits: dict) -> None:
    loc.write_text(SPEC_FILE, dump_spec(spec))
    loc.write_text(SPLITS_FILE, json.dumps(splits, indent=1, ensure_ascii=False) + "\n")
    loc.write_text(DATA_FILE, json.dumps(data_summary(dataset), indent=1, default=str) + "\n")


def read_experiment(loc: Location) -> tuple[SearchSpec, dict, dict]:
    """The saved spec, splits and data summary of an experiment folder; a bad spec is a
    :class:`SpecError` naming the experiment's ``spec.yaml`` (not the temporary copy it is read from)."""
    import tempfile

    shown = f"{loc.path.rstrip('/')}/{SPEC_FILE}" if loc.is_uri else str(Path(loc.path) / SPEC_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / SPEC_FILE
        spec_path.write_text(loc.read_text(SPEC_FILE), encoding="utf-8")
        try:
            spec = load_search_spec(spec_path)
        except SpecError as exc:
            errors = [e.replace(str(spec_path), shown) for e in exc.errors]
            raise SpecError(errors, source=shown) from None
    return spec, json.loads(loc.read_text(SPLITS_FILE)), json.loads(loc.read_text(DATA_FILE))


# ---------------------------------------------------------------------------------- replacing


def check_replaceable(loc: Location) -> None:
    """Raise :class:`ExperimentError` unless ``--overwrite`` may replace ``loc``: a real folder (not a link)
    strictly inside the storage that is an experiment of this tool (:meth:`Location.is_experiment`)."""
    how = "choose another --name or --storage, or move that folder away yourself"
    if not loc.is_uri:
        path = Path(loc.path)
        if path.is_symlink() or not path.is_dir():
            kind = "a link" if path.is_symlink() else "not a folder"
            raise ExperimentError(f"--overwrite: {loc.path} is {kind}; nothing was deleted ({how})")
        if path.resolve().parent != Path(loc.storage).resolve():
            raise ExperimentError(f"--overwrite: {loc.path} is not inside {loc.storage}; nothing was deleted")
    if not loc.is_experiment():
        raise ExperimentError(
            f"--overwrite: {loc.path} is not an experiment folder of this tool (no {SPEC_FILE} beside "
            f"Tune's {TUNE_STATE_FILE}); it is kept as it is ({how})"
        )


class Replaced:
    """An experiment moved aside for a new run under its name (:meth:`set_aside`): :meth:`discard` deletes
    it once the new run has started, :meth:`restore` moves it back when the new run never started."""

    def __init__(self, loc: Location, backup: Location | None, kind: str = "experiment") -> None:
        self.loc = loc
        self.backup = backup
        self.kind = kind
        self.started = backup is None

    @classmethod
    def set_aside(cls, loc: Location, kind: str = "experiment") -> Replaced:
        """Move ``loc`` to ``<storage>/.<name>.replaced-<time>-<pid>``; an object store that cannot
        rename folders deletes it instead (everything was validated before)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = Location(loc.storage, f".{loc.name}{REPLACED_TAG}{stamp}-{os.getpid()}")
        fs, path = loc.fs()
        try:
            fs.move(path, backup.fs()[1])
        except (OSError, NotImplementedError) as exc:
            if not loc.is_uri:
                raise ExperimentError(f"cannot move the old {kind} {loc.path} aside ({exc})") from None
            _note(f"{loc.storage} cannot rename folders ({exc}); deleting the old {kind} {loc.path}")
            loc.delete()
            return cls(loc, None, kind)
        _note(f"moved the old {kind} to {backup.path} until the new run has started")
        return cls(loc, backup, kind)

    def discard(self) -> None:
        """The new run has started: delete the old experiment (once; a failure is reported, not raised)."""
        self.started = True
        backup, self.backup = self.backup, None
        try:
            if backup is not None and backup.exists():  # a restored Tuner calls this again: a no-op
                backup.delete()
        except OSError as exc:
            _note(f"could not delete the old {self.kind} {backup.path} ({exc}); delete it yourself")

    def restore(self) -> None:
        """The new run never started: put the old experiment back in place of what the new run wrote."""
        if self.started or self.backup is None:
            return
        if self.loc.exists():
            self.loc.delete()
        fs, path = self.backup.fs()
        fs.move(path, self.loc.fs()[1])
        self.backup = None
        _note(f"the new run did not start; the old {self.kind} is back at {self.loc.path}")


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def discard_on_start(replaced: Replaced) -> Any:
    """A Tune callback that deletes the replaced experiment when the first trial of the new run starts."""
    from ray import tune

    class DiscardReplaced(tune.Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            replaced.discard()

    return DiscardReplaced()


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


def optuna_journal(loc: Location) -> Path | None:
    """The experiment's Optuna journal (``optuna.journal``), for a folder on this machine or a shared
    mount; None for object storage (s3://, gs://), where a journal cannot be appended to."""
    return None if loc.is_uri else Path(loc.path) / OPTUNA_JOURNAL


def make_trainable(spec: SearchSpec, space: Space, dataset: Any, splits: dict) -> Any:
    """``with_resources(with_parameters(train_trial, data in the object store once, checkpoint
    parameters), {cpu, gpu})``."""
    from ray import tune

    from trainables.spec import trial_spec_dict
    from trainables.trainable import train_trial

    base = trial_spec_dict(spec_to_dict(spec), {})
    fn = tune.with_parameters(
        train_trial,
        base_spec=base,
        resolve=space.resolve,
        dataset=dataset,
        splits=splits,
        **checkpoint_parameters(spec, space),
        verbose=console.is_verbose(),
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
    from search.failures import stop_on_fatal_error
    from search.progress import build_reporter
    from search.wandb_setup import build_wandb_callback
    from trainables.spec import Spec, flatten, spec_sections

    metric, mode = algorithms.tune_metric_mode(spec)
    total = algorithms.num_samples(spec, space)
    sections = set(spec_sections(Spec)) - {"name"}  # the run's name is W&B's own field
    base_flat = {k: v for k, v in flatten(spec).items() if k.split(".")[0] in sections}
    callback = build_wandb_callback(spec.wandb, loc.name, base_flat, space.resolve)
    return tune.Tuner(
        trainable,
        param_space=algorithms.param_space(spec, space),
        tune_config=tune.TuneConfig(
            search_alg=algorithms.build_searcher(spec, space, optuna_journal(loc)),
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
            callbacks=[
                *([callback] if callback else []),
                stop_on_fatal_error(),
                console.trial_lines_callback(max_epochs_of(spec, space), metric),
                *callbacks,
            ],
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint.num_to_keep),
            progress_reporter=build_reporter(spec, space, total),
            verbose=2 if console.is_verbose() else 1,
        ),
    )


def _fit(tuner: Any, spec: SearchSpec, space: Space) -> Any:
    from search import algorithms
    from search.failures import fatal_cause
    from search.progress import format_leaderboard, leaderboard_rows

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray's new output engine ignores CLIReporter
    # With a searcher such as Optuna, Tune keeps one pending trial only: a new actor (~6 s to import
    # torch & co.) then loses the race to the running one and concurrent trials never start (measured in
    # benchmarks/packing.py). Let as many trials pend as may run at once.
    pending = spec.search.max_concurrent or min(algorithms.num_samples(spec, space), 16)
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(max(1, pending)))
    try:
        results = tuner.fit()
    except Exception as exc:  # a fatal trial error reaches here wrapped in Tune's TuneError
        fatal = fatal_cause(exc)
        if fatal is None:
            raise
        raise fatal from None
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
    verbose: bool | None = None,
) -> Any:
    """Run (or, with ``resume``, continue) the search of ``spec``; return Tune's ResultGrid. ``verbose``:
    Ray's full output (None: as ``BUS_VERBOSE`` says; see :mod:`search.console`)."""
    from search.resources import check_feasible

    console.configure(console.is_verbose() if verbose is None else verbose)
    if resume and overwrite:
        raise ExperimentError("give --resume or --overwrite, not both")
    loc = location(storage, name or spec.name)
    exists = loc.exists()
    if exists:
        if resume:
            return restore_search(loc.path, address=address)
        if not overwrite:
            raise ExperimentError(
                f"{loc.path} exists: pass --resume to continue that experiment or --overwrite to replace it "
                "and start again (nothing is overwritten silently)"
            )
        check_replaceable(loc)
    elif resume:
        raise ExperimentError(f"--resume: {loc.path} does not exist; nothing to resume")
    if address and not loc.is_uri:
        print(
            f"note: trials on other nodes write checkpoints to {loc.storage}; "
            "on a multi-node cluster it must be "
            "shared storage (NFS, or --storage s3://... / gs://...)",
            file=sys.stderr,
        )
    space = space_from_spec(spec)
    check_weights(spec, space)  # every encoder the space can draw, before anything is started or moved
    dataset, splits = load_run_data(spec.data)  # data.splits if given, else made from the seed
    init_ray(address)
    check_feasible(spec.resources)
    if not exists:
        write_experiment_files(loc, spec, dataset, splits)
        tuner = build_tuner(spec, loc, make_trainable(spec, space, dataset, splits), space, callbacks)
        return _fit(tuner, spec, space)
    replaced = Replaced.set_aside(loc)
    try:
        write_experiment_files(loc, spec, dataset, splits)
        callbacks = [*callbacks, discard_on_start(replaced)]
        tuner = build_tuner(spec, loc, make_trainable(spec, space, dataset, splits), space, callbacks)
        results = _fit(tuner, spec, space)
    finally:
        # No trial started (an error, or Ctrl-C while the first trial was being placed): the old
        # experiment goes back; once one has started, the callback has deleted it.
        replaced.restore()
    return results


def restore_search(exp_dir: str, address: str | None = None, verbose: bool | None = None) -> Any:
    """Continue an experiment from its folder: finished trials stay, unfinished and errored ones resume
    from their last checkpoint, and the searcher's state is kept (``Tuner.restore``)."""
    console.configure(console.is_verbose() if verbose is None else verbose)
    loc = location_of(exp_dir)
    spec, splits, data = read_experiment(loc)
    from ray import tune

    from search import algorithms
    from search.resources import check_feasible

    if not tune.Tuner.can_restore(loc.path):
        raise ExperimentError(
            f"{loc.path}: Tune saved no state there yet (stopped before the first trial?); "
            "start again with --overwrite"
        )
    space = space_from_spec(spec)
    check_weights(spec, space)
    hint = f"{loc.path} recorded that fingerprint in {DATA_FILE}; resuming would mix datasets"
    dataset, splits = load_run_data(spec.data, splits, data["fingerprint"], hint=hint)
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
