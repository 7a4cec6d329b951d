"""An experiment folder -> a tidy table of every trial x epoch, and one row of facts per trial.

Reads only files (no Ray cluster, no W&B): ``spec.yaml``, each trial directory Ray Tune wrote
(``params.json`` = the flat dotted config, ``result.json`` = one JSON line per reported epoch, or
``progress.csv`` when that is missing, ``error.txt`` after a failure) and, when present, Ray's
``experiment_state-*.json`` for each trial's final status (read by
:func:`search.ray_compat.read_trial_states`, where the project's knowledge of Tune's file formats lives).

A trial's ``status`` is one of:

- ``completed``: ran all ``train.epochs`` epochs;
- ``patience_stopped``: ended early because every fold hit ``train.patience`` (every ``fold{k}/stopped``
  flag of its last result is set);
- ``budget_stopped``: ended early without an error, not by patience, at an epoch where the scheduler
  cannot have stopped it, in a search with ``search.time_budget``: Tune stops the running trials when
  the budget runs out and records them like the scheduler's stops, so the epoch is what tells them
  apart (:func:`budget_stop_rule`): with ASHA / HyperBand any epoch that is not one of
  :func:`scheduler_rungs`, with fifo any early end;
- ``scheduler_stopped``: ended early without an error otherwise: the scheduler (ASHA, ...) stopped it.
  Ray marks the last result ``done`` in all three cases, so the fold flags are what tells a patience
  stop apart. With a time budget this is ambiguous where the budget could have ended the trial as well:
  at a rung epoch (ASHA / HyperBand) and at any epoch with the median rule (it may stop a trial at any
  epoch after its grace period); the scheduler gets the benefit of the doubt there, as it does where
  ``spec.yaml`` is not a valid search spec (the rungs are unknown);
- ``error``: failed (``error.txt``), after any retries;
- ``diverged``: its loss became NaN or infinite; the trainable ended it with a last result flagged
  ``diverged`` whose metrics are NaN (``error`` holds the loop's message);
- ``unfinished``: Ray's state says pending, running or paused (an interrupted search).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from search.errors import ExperimentError
from search.ray_compat import read_trial_states

if TYPE_CHECKING:
    from search.config import SearchSpec

PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
ERROR_FILE = "error.txt"
SPEC_FILE = "spec.yaml"

# Ray's bookkeeping keys that are not metrics of the loop; kept in the table only where useful.
_RAY_KEYS = {
    "timestamp",
    "checkpoint_dir_name",
    "should_checkpoint",
    "done",
    "trial_id",
    "date",
    "time_this_iter_s",
    "time_total_s",
    "pid",
    "hostname",
    "node_ip",
    "config",
    "time_since_restore",
    "iterations_since_restore",
    "training_iteration",
    "experiment_tag",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNFINISHED = {"PENDING", "RUNNING", "PAUSED"}


@dataclass
class ExperimentResults:
    """Everything analysis needs from one experiment folder.

    ``epochs``: one row per trial and epoch (``trial_id``, ``epoch``, ``time_total_s``, every reported
    metric). ``trials``: one row per trial (``trial_id``, ``status``, ``epochs_run``, ``max_epochs``,
    ``scheduler_stopped``, ``budget_stopped``, ``error``, ``num_failures``, ``time_total_s``, ``trial_dir``).
    ``params[trial_id]``: the trial's flat dotted config as Ray stored it. ``param_names``: the searched
    keys, in the order of the spec's ``search.space``.
    """

    exp_dir: Path
    spec: dict[str, Any]
    epochs: pd.DataFrame
    trials: pd.DataFrame
    params: dict[str, dict[str, Any]]
    param_names: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.exp_dir.name)

    @property
    def space(self) -> dict[str, dict[str, Any]]:
        """The spec's ``search.space`` (dotted key -> distribution), empty when there is none."""
        return dict((self.spec.get("search") or {}).get("space") or {})

    def table(self) -> pd.DataFrame:
        """The tidy trials x epochs table with each trial's parameters as columns (``trials.csv``)."""
        params = self.param_frame()
        info = self.trials[["trial_id", "status"]]
        out = info.merge(params, on="trial_id", how="left").merge(self.epochs, on="trial_id", how="right")
        return out.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)

    def param_frame(self) -> pd.DataFrame:
        """One row per trial: ``trial_id`` and each searched parameter (lists/dicts as JSON text)."""
        rows = [
            {"trial_id": tid, **{k: display_value(p.get(k)) for k in self.param_names}}
            for tid, p in self.params.items()
        ]
        return pd.DataFrame(rows, columns=["trial_id", *self.param_names])

    def subset(self, trial_ids: Iterable[str]) -> ExperimentResults:
        """The same experiment restricted to ``trial_ids``."""
        keep = set(trial_ids)
        return ExperimentResults(
            exp_dir=self.exp_dir,
            spec=self.spec,
            epochs=self.epochs[self.epochs["trial_id"].isin(keep)].reset_index(drop=True),
            trials=self.trials[self.trials["trial_id"].isin(keep)].reset_index(drop=True),
            params={k: v for k, v in self.params.items() if k in keep},
            param_names=list(self.param_names),
            notes=list(self.notes),
        )


def display_value(value: Any) -> Any:
    """A parameter value fit for a table cell: scalars as they are, lists and dicts as compact JSON."""
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


# ----------------------------------------------------------------------------------------- loading


def load_results(exp_dir: str | Path) -> ExperimentResults:
    """Read an experiment folder (see the module docstring); raise :class:`ExperimentError` if unusable."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise ExperimentError(f"{exp_dir}: experiment folder not found")
    spec = read_spec_dict(exp_dir)
    trial_dirs = find_trial_dirs(exp_dir)
    if not trial_dirs:
        raise ExperimentError(
            f"{exp_dir}: no trial folders (subfolders holding {PARAMS_FILE}); is this a search's experiment "
            "folder (runs/<name>)?"
        )
    states = read_trial_states(exp_dir)
    budget_stopped = budget_stop_rule(spec)
    default_epochs = int(((spec.get("train") or {}).get("epochs")) or 0) or None

    frames, infos, params, notes = [], [], {}, []
    for trial_dir in trial_dirs:
        p = _read_json(trial_dir / PARAMS_FILE)
        if not isinstance(p, dict):
            raise ExperimentError(f"{trial_dir / PARAMS_FILE}: expected a JSON object of dotted keys")
        rows = read_trial_rows(trial_dir)
        tid = _trial_id(trial_dir, rows, states)
        if tid in params:
            notes.append(f"{trial_dir.name}: a second folder of trial {tid}; kept the first")
            continue
        params[tid] = p
        epochs = _epoch_frame(tid, rows)
        frames.append(epochs)
        infos.append(
            _trial_info(
                tid, exp_dir, trial_dir, p, rows, epochs, states.get(tid), default_epochs, budget_stopped
            )
        )

    epochs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["trial_id", "epoch"])
    trials = pd.DataFrame(infos).sort_values("trial_id", kind="stable").reset_index(drop=True)
    names = _param_names(spec, params)
    return ExperimentResults(exp_dir, spec, epochs, trials, params, names, notes)


def read_spec_dict(exp_dir: Path) -> dict[str, Any]:
    """The experiment's ``spec.yaml`` as a plain dict (validated later, by whoever builds a Spec)."""
    path = exp_dir / SPEC_FILE
    if not path.is_file():
        raise ExperimentError(f"{path}: missing; the search writes the resolved spec there")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def find_trial_dirs(exp_dir: Path) -> list[Path]:
    """Every folder below ``exp_dir`` holding ``params.json`` (Ray's trial folders), sorted by path."""
    skip = {"analysis", "refit", "wandb"}
    found = [
        p.parent
        for p in exp_dir.rglob(PARAMS_FILE)
        if not (set(p.relative_to(exp_dir).parts[:-1]) & skip) and p.parent != exp_dir
    ]
    return sorted(found)


def read_trial_rows(trial_dir: Path) -> list[dict[str, Any]]:
    """The trial's reported results in order, one per ``training_iteration`` (a restored trial's
    re-reported iterations keep their latest value). ``result.json`` first, else ``progress.csv``."""
    rows: list[dict[str, Any]] = []
    result = trial_dir / RESULT_FILE
    if result.is_file():
        lines = result.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                # A last line cut by a crash mid-write is the only expected damage: skip it.
                if n < len(lines):
                    raise ExperimentError(f"{result}: line {n} is not JSON") from None
    elif (trial_dir / PROGRESS_FILE).is_file():
        try:
            frame = pd.read_csv(trial_dir / PROGRESS_FILE)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            frame = pd.DataFrame()
        rows = frame.to_dict("records")
    by_iter: dict[Any, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        key = row.get("training_iteration", row.get("epoch", i))
        by_iter[key] = row
    return list(by_iter.values())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExperimentError(f"{path}: missing") from None
    except ValueError as exc:
        raise ExperimentError(f"{path}: invalid JSON ({exc})") from None


def _trial_id(trial_dir: Path, rows: Sequence[Mapping[str, Any]], states: Mapping[str, Any]) -> str:
    for row in rows:
        if row.get("trial_id"):
            return str(row["trial_id"])
    for tid, state in states.items():
        if state.get("relative_logdir") == trial_dir.name:
            return tid
    return trial_dir.name


def _is_metric(key: str, value: Any) -> bool:
    return key not in _RAY_KEYS and isinstance(value, int | float) and not isinstance(value, bool)


def _epoch_frame(tid: str, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    records = []
    for i, row in enumerate(rows, start=1):
        rec: dict[str, Any] = {"trial_id": tid}
        rec["epoch"] = int(row.get("epoch") or row.get("training_iteration") or i)
        rec["time_total_s"] = _float(row.get("time_total_s"))
        rec.update({k: float(v) for k, v in row.items() if _is_metric(k, v) and k != "epoch"})
        records.append(rec)
    return pd.DataFrame(records, columns=None if records else ["trial_id", "epoch", "time_total_s"])


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _last_error(trial_dir: Path) -> tuple[str | None, int]:
    """The last non-empty line of the last failure in ``error.txt`` and how many failures it records."""
    path = trial_dir / ERROR_FILE
    if not path.is_file():
        return None, 0
    text = _ANSI.sub("", path.read_text(encoding="utf-8", errors="replace"))
    failures = max(1, len(re.findall(r"^Failure # \d+", text, flags=re.M)))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "unknown error"), failures


def _trial_info(
    tid: str,
    exp_dir: Path,
    trial_dir: Path,
    params: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    epochs: pd.DataFrame,
    state: Mapping[str, Any] | None,
    default_epochs: int | None,
    budget_stopped: Callable[[int], bool],
) -> dict[str, Any]:
    max_epochs = params.get("train.epochs", default_epochs)
    max_epochs = int(max_epochs) if max_epochs else None
    epochs_run = int(epochs["epoch"].max()) if len(epochs) else 0
    error, failures = _last_error(trial_dir)
    stop_flags = [v for k, v in (rows[-1].items() if rows else ()) if re.fullmatch(r"fold\d+/stopped", k)]
    all_folds_stopped = bool(stop_flags) and all(float(v) == 1.0 for v in stop_flags)
    ray_status = (state or {}).get("status", "")
    full = max_epochs is not None and epochs_run >= max_epochs
    diverged = bool(rows) and _float(rows[-1].get("diverged")) == 1.0
    if ray_status in _UNFINISHED:
        status = "unfinished"
    elif diverged:
        status, error = "diverged", str(rows[-1].get("diverged_error") or "non-finite loss")
    elif ray_status == "ERROR" or (not ray_status and error is not None and not full):
        status = "error"
    elif full:
        status = "completed"
    elif all_folds_stopped:
        status = "patience_stopped"
    elif budget_stopped(epochs_run):
        status = "budget_stopped"
    else:
        status = "scheduler_stopped"
    time_total = _float(rows[-1].get("time_total_s")) if rows else math.nan
    return {
        "trial_id": tid,
        "status": status,
        "epochs_run": epochs_run,
        "max_epochs": max_epochs,
        "scheduler_stopped": status == "scheduler_stopped",
        "budget_stopped": status == "budget_stopped",
        "error": error if status in ("error", "diverged") else None,
        "num_failures": max(failures, int((state or {}).get("num_failures") or 0)),
        "time_total_s": time_total,
        "trial_dir": trial_dir.relative_to(exp_dir).as_posix(),
    }


def _param_names(spec: Mapping[str, Any], params: Mapping[str, Mapping[str, Any]]) -> list[str]:
    space = list(((spec.get("search") or {}).get("space") or {}).keys())
    seen = list(dict.fromkeys(k for p in params.values() for k in p))
    return [*space, *(k for k in seen if k not in space)]


# ---------------------------------------------------------------------------------------- scheduler


def _search_spec(spec: Mapping[str, Any]) -> SearchSpec:
    """``spec.yaml``'s dict validated as a search spec; raises ``SpecError`` when it is not one."""
    from search.config import SearchSpec
    from trainables.config import DoubleImbalanceCorrectionWarning
    from trainables.spec import spec_from_dict

    with warnings.catch_warnings():  # the search warned about the spec already; analysis only reads it
        warnings.simplefilter("ignore", DoubleImbalanceCorrectionWarning)
        return spec_from_dict(spec, SearchSpec)


def _rungs_of(spec: SearchSpec) -> tuple[str, list[int]]:
    from search.config import max_epochs_of, scheduler_milestones
    from search.space import space_from_spec

    space = space_from_spec(spec)
    last = max_epochs_of(spec, space)
    return spec.search.scheduler.type, [e for e in scheduler_milestones(spec, space) if e < last]


def scheduler_rungs(spec: Mapping[str, Any]) -> tuple[str, list[int]]:
    """The search's scheduler type and the epochs before the last at which it may stop a trial.

    The epochs are :func:`search.config.scheduler_milestones` of the experiment's spec (``spec.yaml``
    as a dict, :attr:`ExperimentResults.spec`), which follows Ray's own rules (ASHA: rung
    ``grace * rf**k``, decided at the first epoch that reaches it; HyperBand: each bracket's pause
    points): the only epochs where Ray decides. A decision at the last epoch ends nothing early and is
    left out; fifo and median have none. Raises ``SpecError`` when ``spec`` is not a valid search spec.
    """
    return _rungs_of(_search_spec(spec))


def _never(epoch: int) -> bool:
    return False


def budget_stop_rule(spec: Mapping[str, Any]) -> Callable[[int], bool]:
    """``rule(epoch)``: whether a trial of this search that ended early (not completed, not stopped by
    patience, no error) after ``epoch`` epochs was stopped by ``search.time_budget``, the scheduler being
    unable to stop it there (Tune records both kinds of stop alike).

    True only with a time budget: for ASHA / HyperBand at an epoch that is not one of
    :func:`scheduler_rungs` (Ray decides only there), for fifo at any epoch (it stops nothing). False,
    i.e. left to the scheduler, where both could have stopped it: at a rung epoch, and at any epoch with
    the median rule (it may stop a trial at any epoch after its grace period); false too without a
    budget and when ``spec`` is not a valid search spec (the rungs are unknown).
    """
    from trainables.schema import SpecError

    search = spec.get("search")
    if not isinstance(search, Mapping) or search.get("time_budget") is None:
        return _never
    try:
        valid = _search_spec(spec)
        scheduler, rungs = _rungs_of(valid)
    except SpecError:
        return _never
    if valid.search.time_budget_s is None:
        return _never
    if scheduler == "fifo":
        return lambda epoch: True
    if scheduler in ("asha", "hyperband"):
        return lambda epoch: epoch not in rungs
    return _never


# ------------------------------------------------------------------------------------------ filters


def parse_where(items: Sequence[str]) -> list[tuple[str, Any]]:
    """``["model.encoder=efficientnet-b6", "train.lr=1e-3"]`` -> ``[(key, value)]`` (values as YAML)."""
    from trainables.spec import parse_assignment

    out = []
    for item in items:
        try:
            out.append(parse_assignment(item))
        except ValueError:
            raise ExperimentError(
                f"--where {item!r}: expected KEY=VALUE, e.g. model.encoder=efficientnet-b6"
            ) from None
    return out


def _number(x: Any) -> float | None:
    """``x`` as a float when it is a number or numeric text (PyYAML reads ``1e-3`` as text)."""
    if isinstance(x, bool):
        return None
    if isinstance(x, int | float):
        return float(x)
    try:
        return float(x) if isinstance(x, str) else None
    except ValueError:
        return None


def _same(a: Any, b: Any) -> bool:
    x, y = _number(a), _number(b)
    if x is not None and y is not None and (isinstance(a, int | float) or isinstance(b, int | float)):
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=0.0)
    return a == b or str(a) == str(b)


def filter_where(results: ExperimentResults, where: Sequence[str]) -> ExperimentResults:
    """Only the trials whose parameter (or, for a key not searched, the spec's fixed value) equals each
    ``KEY=VALUE``. Unknown keys and filters that match nothing are errors listing what exists."""
    conditions = parse_where(where)
    if not conditions:
        return results
    keep = []
    for tid, p in results.params.items():
        ok = True
        for key, value in conditions:
            if key in results.param_names:
                ok = ok and key in p and _same(p[key], value)
            else:
                ok = ok and _same(_spec_value(results.spec, key), value)
        if ok:
            keep.append(tid)
    for key, _ in conditions:
        if key not in results.param_names and _spec_value(results.spec, key) is _MISSING:
            raise ExperimentError(
                f"--where {key}: not a parameter of this experiment nor a field of its spec; "
                f"searched parameters: {', '.join(results.param_names) or 'none'}"
            )
    if not keep:
        seen = {
            key: sorted({str(p.get(key)) for p in results.params.values()})
            for key, _ in conditions
            if key in results.param_names
        }
        raise ExperimentError(f"--where {' '.join(where)}: no trial matches; values present: {seen}")
    return results.subset(keep)


_MISSING = object()


def _spec_value(spec: Mapping[str, Any], key: str) -> Any:
    node: Any = spec
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node
