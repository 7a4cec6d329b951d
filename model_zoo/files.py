"""Atomic file writes and standard JSON, shared by every layer of the project.

A run's files are its source of truth (spec, splits, summaries, checkpoints, bundles), so none of them may be
left half-written by a crash, a kill -9 or a full disk: each is written to a temporary file in the same
folder and renamed over the target (``os.replace`` is atomic on POSIX file systems). The module sits in the
model zoo because that is the bottom of the import order (bundles use it too); it imports no project code
and nothing heavy (torch only inside :func:`save_torch_atomic`).
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def replace_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path beside ``path``, then rename it to ``path``.

    The temporary name is unique (two writers never share it); on any failure it is removed and the
    previous ``path``, if any, is left as it was. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would stay on the target; a file made by ``write`` follows the umask.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return replace_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_torch_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically: a crash never leaves a half-written state."""
    import torch

    return replace_atomically(path, lambda tmp: torch.save(obj, tmp))


def json_safe(x: Any) -> Any:
    """``x`` as standard JSON data: NaN and infinities become ``None`` (JSON has neither), mapping keys
    become strings, tuples lists, and NumPy / torch scalars Python numbers."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if not isinstance(x, str | bytes | int | bool) and hasattr(x, "item") and callable(x.item):
        try:
            return json_safe(x.item())  # NumPy / torch scalars; arrays with more than one element raise
        except (TypeError, ValueError, RuntimeError):
            return x
    return x


def write_json_atomic(path: str | Path, data: Any, indent: int = 2) -> Path:
    """``data`` as standard JSON (:func:`json_safe`) written to ``path`` atomically, newline-terminated."""
    return write_text_atomic(path, json.dumps(json_safe(data), indent=indent) + "\n")
