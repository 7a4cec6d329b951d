"""Atomic writes and standard JSON (model_zoo/files.py), shared by every layer."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from model_zoo.files import (
    json_safe,
    replace_atomically,
    save_torch_atomic,
    write_json_atomic,
    write_text_atomic,
)


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old\n", encoding="utf-8")

    def crash(tmp: Path) -> None:
        tmp.write_text("half", encoding="utf-8")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomically(target, crash)
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_writes_create_parent_folders_and_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "a" / "b" / "spec.yaml", "name: x\n")
    finally:
        os.umask(old)
    assert path.read_text(encoding="utf-8") == "name: x\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600: others may read run files


def test_json_safe_gives_standard_json() -> None:
    data = {
        1: math.nan,
        "inf": -math.inf,
        "tuple": (1, 2.5),
        "np": np.float32(0.5),
        "np_int": np.int64(3),
        "torch": torch.tensor(2.0),
        "array": np.zeros(2),  # not a scalar: left as it is (json.dumps would then say so)
        "flag": True,
        "text": "a",
    }
    out = json_safe(data)
    assert out["1"] is None and out["inf"] is None
    assert out["tuple"] == [1, 2.5] and out["np"] == 0.5 and out["np_int"] == 3 and out["torch"] == 2.0
    assert isinstance(out["np_int"], int) and out["flag"] is True and out["text"] == "a"
    assert isinstance(out["array"], np.ndarray)


def test_write_json_atomic_writes_nan_as_null(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "s.json", {"dice": math.nan, "f1": 0.5})
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "NaN" not in text
    assert json.loads(text) == {"dice": None, "f1": 0.5}


def test_save_torch_atomic_round_trips(tmp_path: Path) -> None:
    state = {"epoch": 3, "w": torch.arange(4.0)}
    path = save_torch_atomic(state, tmp_path / "loop.pt")
    back = torch.load(path, weights_only=True)
    assert back["epoch"] == 3 and torch.equal(back["w"], state["w"])
