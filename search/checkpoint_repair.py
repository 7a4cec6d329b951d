"""Point a Tune experiment state at each trial's newest checkpoint that exists, before resume.

A trial persists a checkpoint and then reports it; the driver writes its ``result.json`` row, registers
the checkpoint, deletes the oldest one beyond ``checkpoint.num_to_keep``, and writes the experiment state
(``experiment_state-*.json``, what ``Tuner.restore`` reads) a moment later. A driver killed in between
(SIGKILL, a lost head node) leaves a state that
- names a deleted checkpoint: Tune cannot restore that trial ("Could not recover from checkpoint as it
  does not exist on storage anymore"), and the trial fails on every retry; or
- names an older checkpoint than the trial persisted, or none: Tune repeats the epochs since (from the
  first, for none; seen in CI, a kill 0.5 s after a trial's first result row).
:func:`repair_checkpoint_refs` points each such trial at its newest checkpoint that exists and has its
``result.json`` row (written only after the checkpoint was complete on storage), with the metrics Tune
reported with it, or at none (the trial starts again). The original file is kept beside it. The scheduler
and searcher states are restored as recorded: a trial continued from a checkpoint the state did not know
skips an ASHA rung it passed in that gap (it is not stopped there); nothing else is lost.

Only local experiment folders are repaired. Each trial's run metadata is read and written with Tune's
own functions, the ones ``Tuner.restore`` uses on the same file (through :mod:`search.ray_compat`, which
holds every private Ray API the project uses; a state they cannot read is left untouched with a warning).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

from model_zoo.files import write_text_atomic
from search import ray_compat


def _result_rows(trial_dir: Path) -> dict[str, dict[str, Any]]:
    """``checkpoint_dir_name`` -> the result row Tune wrote with that checkpoint."""
    rows: dict[str, dict[str, Any]] = {}
    path = trial_dir / "result.json"
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line cut by the kill
            continue
        name = row.get("checkpoint_dir_name")
        if name:
            rows[str(name)] = row
    return rows


def _newest_existing(trial_dir: Path) -> tuple[int, Path, dict[str, Any]] | None:
    """The trial's newest checkpoint folder that exists and has its result row: (iteration, path, row)."""
    rows = _result_rows(trial_dir)
    found = [
        (int(row.get("training_iteration", 0)), trial_dir / name, row)
        for name, row in rows.items()
        if (trial_dir / name).is_dir() and any((trial_dir / name).iterdir())
    ]
    return max(found, key=lambda item: item[0]) if found else None


def _repair_manager(manager: Any, trial_dir: Path) -> str | None:
    """Fix one trial's checkpoint manager in place; what was done, or None when nothing was needed.

    Checkpoints are looked up by folder name in ``trial_dir`` (the experiment may have been moved: Tune
    maps the recorded paths to its new place when it restores), and recorded in the original form.
    """

    def exists(result: Any) -> bool:
        return (trial_dir / Path(result.checkpoint.path).name).is_dir()

    latest = ray_compat.latest_checkpoint_result(manager)
    newest = _newest_existing(trial_dir)
    kept = [r for r in ray_compat.checkpoint_results(manager) if exists(r)]
    if latest is not None and exists(latest):
        recorded_iteration = int(latest.metrics.get("training_iteration", 0) or 0)
        if newest is None or newest[0] <= recorded_iteration:
            return None
        was = f"{Path(latest.checkpoint.path).name} is older than the trial's newest"
    elif latest is not None:
        was = f"{Path(latest.checkpoint.path).name} is gone"
        if newest is None:
            ray_compat.set_checkpoint_results(manager, kept, latest=kept[-1] if kept else None)
            what = Path(kept[-1].checkpoint.path).name if kept else "no checkpoint: the trial starts again"
            return f"{was} -> {what}"
    else:
        if newest is None:
            return None
        was = "no checkpoint recorded"
    _, path, row = newest
    if latest is not None:
        result = ray_compat.checkpoint_result_like(
            latest, str(Path(latest.checkpoint.path).with_name(path.name)), row
        )
    else:
        result = ray_compat.new_checkpoint_result(str(path.resolve()), row)
    if all(Path(r.checkpoint.path).name != path.name for r in kept):
        kept.append(result)
    ray_compat.set_checkpoint_results(manager, kept, latest=result)
    return f"{was} -> {path.name} (epoch {row.get('epoch', '?')})"


def repair_checkpoint_refs(exp_dir: str | Path) -> list[str]:
    """Repair the newest experiment state of ``exp_dir`` (see the module docstring); one line per trial
    repaired (empty when the state names only checkpoints that exist)."""
    exp = Path(exp_dir)
    state_path = ray_compat.newest_experiment_state(exp)  # the one Tune restores
    if state_path is None:
        return []
    try:
        state = ray_compat.load_experiment_state(state_path)
    except (ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"{state_path}: unreadable experiment state ({exc}); not repaired", stacklevel=2)
        return []
    try:
        trials = ray_compat.trial_records(state)  # plain JSON: each trial's folder and id
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        warnings.warn(f"{state_path}: unknown trial state format ({exc}); not repaired", stacklevel=2)
        return []
    notes: list[str] = []
    for index, trial in enumerate(trials):
        try:
            # Tune's own reader of this file (what Tuner.restore runs on it next)
            metadata = ray_compat.run_metadata(state, index)
            if not trial["relative_logdir"]:
                raise ValueError(f"trial {trial['trial_id']} has no relative_logdir")
            note = _repair_manager(metadata.checkpoint_manager, exp / trial["relative_logdir"])
        except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            warnings.warn(f"{state_path}: unknown trial state format ({exc}); not repaired", stacklevel=2)
            return []
        if note is None:
            continue
        ray_compat.put_run_metadata(state, index, metadata)
        notes.append(f"trial {trial['trial_id']}: {note}")
    if notes:
        backup = state_path.with_name(state_path.name + ".before-repair")
        if not backup.exists():
            shutil.copy2(state_path, backup)
        write_text_atomic(state_path, json.dumps(state))
    return notes
