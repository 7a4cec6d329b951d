"""The one exception type of the data layer."""

from __future__ import annotations

from pathlib import Path

from model_zoo.errors import UserError


class DataError(UserError, ValueError):
    """A problem with the data on disk or with a data setting; file problems name the file.

    ``path`` and ``reason`` are set for problems with one file, so that reports can list them apart.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.reason = reason or message


def file_error(path: str | Path, reason: str) -> DataError:
    """A :class:`DataError` for one file: ``'<path>: <reason>'``."""
    return DataError(f"{path}: {reason}", path=path, reason=reason)


def listing(items: list[str], limit: int = 10) -> str:
    """``a, b, c ... and N more``: a bounded list for error messages."""
    shown = ", ".join(items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")
