"""The dataset cache on a full disk and after a killed build: a clear DataError instead of SIGBUS, no
temporary folder left behind, dead builders' leftovers removed, and clear_cache touching only its own."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

import trainables.data.cache as cache
from trainables.data.cache import clear_cache, load_dataset
from trainables.data.config import DataConfig
from trainables.data.errors import DataError

ROOT = Path(__file__).resolve().parents[3]
KEY = "0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("BUS_CACHE_DIR", str(path))
    return path


def _cfg(root: Path) -> DataConfig:
    return DataConfig(root=str(root), image_size=32)


def _leftovers(cache_root: Path) -> list[str]:
    folder = cache_root / "datasets"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_too_little_free_space_is_a_data_error(
    busi_dir: Path, own_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))
    with pytest.raises(DataError, match=r"not enough disk space for the dataset cache.*BUS_CACHE_DIR"):
        load_dataset(_cfg(busi_dir), progress=False)
    assert _leftovers(own_cache) == []


@pytest.mark.parametrize("where", ["fallocate", "save"])
def test_a_full_disk_while_writing_is_a_data_error(
    busi_dir: Path, own_cache: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "fallocate":  # allocating the arrays' blocks: where a sparse memmap would SIGBUS later
        monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    else:
        monkeypatch.setattr(np, "save", full)
    with pytest.raises(DataError, match=r"is full \(No space left on device\).*BUS_CACHE_DIR"):
        load_dataset(_cfg(busi_dir), progress=False)
    assert _leftovers(own_cache) == []
    monkeypatch.undo()
    assert len(load_dataset(_cfg(busi_dir), progress=False)) == 8  # fine once there is space


def test_temp_folders_of_dead_builders_are_removed(busi_dir: Path, own_cache: Path) -> None:
    folder = own_cache / "datasets"
    dead, host = _dead_pid(), cache._host()
    names = {
        "old_format_dead": f".tmp-{KEY}-{dead}-deadbeef",  # what a killed build of the old code left
        "dead": f".tmp-{KEY}-{host}-{dead}-cafebabe",
        "alive": f".tmp-{KEY}-{host}-{os.getppid()}-0badf00d",  # a running build: kept
        "other_host": f".tmp-{KEY}-elsewhere-{dead}-12345678",  # cannot tell from here: kept
    }
    for name in names.values():
        (folder / name).mkdir(parents=True)
        (folder / name / "images.npy").write_bytes(b"\0" * 1024)
    assert len(load_dataset(_cfg(busi_dir), progress=False)) == 8
    left = set(_leftovers(own_cache))
    assert names["old_format_dead"] not in left and names["dead"] not in left
    assert names["alive"] in left and names["other_host"] in left


def test_a_build_killed_with_sigkill_leaves_nothing_for_the_next(busi_dir: Path, own_cache: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import trainables.data.cache as cache
        from trainables.data.config import DataConfig

        def stuck(*args, **kwargs):
            time.sleep(120)

        cache.run_audit = stuck
        cache.load_dataset(DataConfig(root={str(busi_dir)!r}, image_size=32), progress=False)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], env={**os.environ, "BUS_CACHE_DIR": str(own_cache)}
    )
    try:
        deadline = time.monotonic() + 60
        while not [n for n in _leftovers(own_cache) if n.startswith(".tmp-")]:
            assert child.poll() is None and time.monotonic() < deadline, "the build did not start"
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert [n for n in _leftovers(own_cache) if n.startswith(".tmp-")]  # the killed build's arrays
    dataset = load_dataset(_cfg(busi_dir), progress=False)
    assert len(dataset) == 8 and not [n for n in _leftovers(own_cache) if n.startswith(".tmp-")]


def test_clear_cache_removes_only_its_own(busi_dir: Path, own_cache: Path) -> None:
    load_dataset(_cfg(busi_dir), progress=False)
    datasets = own_cache / "datasets"
    (datasets / "notes.txt").write_text("mine", encoding="utf-8")  # BUS_CACHE_DIR at a shared folder
    (datasets / "thesis_data").mkdir()
    (datasets / "thesis_data" / "a.png").write_bytes(b"png")
    (datasets / KEY).mkdir()  # a key-like folder without meta.json: not an entry
    live = datasets / f".tmp-{KEY}-{cache._host()}-{os.getppid()}-0badf00d"
    live.mkdir()
    dead = datasets / f".tmp-{KEY}-{cache._host()}-{_dead_pid()}-cafebabe"
    dead.mkdir()
    assert clear_cache() == 1
    assert sorted(p.name for p in datasets.iterdir()) == sorted(["notes.txt", "thesis_data", KEY, live.name])
    assert (datasets / "thesis_data" / "a.png").read_bytes() == b"png"
