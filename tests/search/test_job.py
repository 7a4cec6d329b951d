"""Job submission on loopback: a token-authenticated head (``ray start --head``), ``ray job submit
--working-dir .`` runs a tiny search to completion, and a wrong token is refused."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.search.helpers import results, trial_dirs, write_spec
from tests.search.test_resume import _descendants, _kill_own

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def token_head():
    """A head node on 127.0.0.1 with token auth, in a private temp dir (so no other ``ray.init()`` on this
    machine attaches to it); stopped by killing only the processes it started."""
    token = secrets.token_hex(32)
    temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    dashboard = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={_free_port()}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            "--num-cpus=2",
            "--num-gpus=0",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run(
                [RAY, "job", "list", "--address", address],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline and head.poll() is None, probe.stderr[-2000:]
            time.sleep(2)
        yield address, env
    finally:
        started = _descendants(head.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        time.sleep(3)
        _kill_own([head.pid, *started])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_job_submission_with_token_auth(tmp_path: Path, token_head) -> None:
    address, env = token_head
    spec = write_spec(tmp_path, {"search": {"num_samples": 2}, "train": {"epochs": 2}})
    storage = tmp_path / "runs"

    wrong = {**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    refused = subprocess.run(
        [RAY, "job", "list", "--address", address], env=wrong, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0
    print("REFUSED:", (refused.stdout + refused.stderr)[-1500:])
    assert "auth" in (refused.stdout + refused.stderr).lower()

    command = [
        RAY,
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        str(ROOT),
        "--",
        sys.executable,
        "launch.py",
        "search",
        str(spec),
        "--address",
        "auto",
        "--storage",
        str(storage),
        "--name",
        "job",
    ]
    for _ in range(20):  # the dashboard answers before its job agent is ready
        submitted = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if "No available agent to submit job" not in submitted.stderr + submitted.stdout:
            break
        time.sleep(3)
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0, output[-4000:]
    assert "succeeded" in output.lower()
    dirs = trial_dirs(storage / "job")
    assert len(dirs) == 2 and all(results(d)[-1]["epoch"] == 2.0 for d in dirs)
    assert (storage / "job" / "spec.yaml").exists()
