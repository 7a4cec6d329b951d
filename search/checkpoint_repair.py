"""Point a Tune experiment state that names deleted checkpoints at checkpoints that exist, before resume.

When a trial saves a checkpoint, Tune deletes the oldest one beyond ``checkpoint.num_to_keep`` at once,
while the experiment state (``experiment_state-*.json``, what ``Tuner.restore`` reads) is written
and copied to storage later. A driver killed in between (SIGKILL, a lost head node) leaves a state that
names a deleted checkpoint; Tune then cannot restore that trial ("Could not recover from checkpoint as
it does not exist on storage anymore"), and the trial fails on every retry. :func:`repair_checkpoint_refs`
points each such trial at its newest checkpoint that exists, with the metrics Tune reported with it (from
the trial's ``result.json``), or at none (the trial starts again). The original file is kept beside it.

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


def _newest_existing(trial_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The trial's newest checkpoint folder that exists and has its result row."""
    rows = _result_rows(trial_dir)
    found = [
        (int(row.get("training_iteration", 0)), trial_dir / name, row)
        for name, row in rows.items()
        if (trial_dir / name).is_dir() and any((trial_dir / name).iterdir())
    ]
    if not found:
        return None
    _, path, row = max(found, key=lambda item: item[0])
    return path, row


def _repair_manager(manager: Any, trial_dir: Path) -> str | None:
    """Fix one trial's checkpoint manager in place; what was done, or None when nothing was needed.

    Checkpoints are looked up by folder name in ``trial_dir`` (the experiment may have been moved: Tune
    maps the recorded paths to its new place when it restores), and recorded in the original form.
    """

    def exists(result: Any) -> bool:
        return (trial_dir / Path(result.checkpoint.path).name).is_dir()

    latest = ray_compat.latest_checkpoint_result(manager)
    if latest is None or exists(latest):
        return None
    gone = Path(latest.checkpoint.path).name
    kept = [r for r in ray_compat.checkpoint_results(manager) if exists(r)]
    newest = _newest_existing(trial_dir)
    if newest is None:
        ray_compat.set_checkpoint_results(manager, kept, latest=kept[-1] if kept else None)
        what = Path(kept[-1].checkpoint.path).name if kept else "no checkpoint: the trial starts again"
        return f"{gone} is gone -> {what}"
    path, row = newest
    recorded = str(Path(latest.checkpoint.path).with_name(path.name))
    result = ray_compat.checkpoint_result_like(latest, recorded, row)
    if all(Path(r.checkpoint.path).name != path.name for r in kept):
        kept.append(result)
    ray_compat.set_checkpoint_results(manager, kept, latest=result)
    return f"{gone} is gone -> {path.name} (epoch {row.get('epoch', '?')})"


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
