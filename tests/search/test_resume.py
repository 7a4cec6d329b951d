"""The driver killed with SIGKILL mid-search, then ``resume EXP_DIR``: the experiment completes, finished
trials are not re-run, unfinished ones continue from their checkpoints (Ray's test_tuner_restore.py)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.search.helpers import results, trial_dirs, write_spec

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = str(ROOT / "launch.py")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        tree.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_own(pids: list[int]) -> None:
    """SIGKILL those of ``pids`` (recorded as the driver's descendants a moment ago) still running Ray."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if "ray" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                os.kill(pid, signal.SIGKILL)


def _statuses(exp: Path) -> dict[str, str]:
    states = sorted(exp.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except ValueError:  # being written
        return {}
    trials = (json.loads(t[0]) for t in data["trial_data"])
    return {t["trial_id"]: t["status"] for t in trials}


@pytest.mark.slow
def test_resume_after_driver_sigkill(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        {
            "search": {
                "algorithm": "optuna",
                "num_samples": 3,
                "space": {
                    "model.attention": {"choice": ["none", "se"]},
                    "train.lr": {"loguniform": [5e-4, 2e-3]},
                },
            },
            "train": {"epochs": 5},
            "checkpoint": {"num_to_keep": 1},
        },
    )
    storage, exp = tmp_path / "runs", tmp_path / "runs" / "killed"
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1", "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "driver.log").open("w")
    driver = subprocess.Popen(
        [sys.executable, LAUNCH, "search", str(spec), "--storage", str(storage), "--name", "killed"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and driver.poll() is None:
        status = _statuses(exp)
        running = [t for t, s in status.items() if s != "TERMINATED"]
        midway = [t for t in running if 1 <= len(results(exp / f"train_trial_{t}")) < 5]
        if "TERMINATED" in status.values() and midway:
            break
        time.sleep(0.5)
    assert driver.poll() is None, (
        f"the search ended before it could be killed:\n{(tmp_path / 'driver.log').read_text()}"
    )
    leftovers = _descendants(driver.pid)
    finished = {tid for tid, s in _statuses(exp).items() if s == "TERMINATED"}
    before = {d.name: len(results(d)) for d in trial_dirs(exp)}
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(2)
    _kill_own(leftovers)  # the local Ray the killed driver started and could not stop
    resumed = subprocess.run(
        [sys.executable, LAUNCH, "resume", str(exp)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    final = _statuses(exp)
    assert len(final) == 3 and set(final.values()) == {"TERMINATED"}, final
    dirs = {d.name: results(d) for d in trial_dirs(exp)}
    assert len(dirs) == 3 and all(rows[-1]["epoch"] == 5.0 for rows in dirs.values())
    for tid in finished:
        name = f"train_trial_{tid}"
        assert len(dirs[name]) == before[name]  # finished before the kill: not run again
    continued = [
        rows for name, rows in dirs.items() if 0 < before.get(name, 0) < 5 and name[12:] not in finished
    ]
    assert continued, "no trial was killed midway"
    for rows in continued:
        assert max(r["restored_from_epoch"] for r in rows) >= 1  # resumed from a checkpoint
