"""The project's error hierarchy: what went wrong decides the exit status, once, in ``launch.py``.

- :class:`UserError` (exit 2): the input is at fault and the user can fix it: a spec, a data folder, an
  argument, an output or experiment folder, a missing GPU or weight file. Nothing was trained, or a run
  refused to continue.
- :class:`RunFailedError` (exit 1): the input was fine and a run started, then failed (a non-finite loss,
  every trial of a search, a pipeline stage).

Every error the project raises on purpose derives from one of them (and from the built-in type callers
already catch, e.g. ``ValueError``), so a command needs no list of exceptions of its own and an error
that is not ours (a bug) still ends with its traceback. The module sits in the model zoo because that is
the bottom of the import order: every layer can derive from it.
"""

from __future__ import annotations


class ProjectError(Exception):
    """Base of the errors the project raises on purpose; ``exit_code`` is the command's exit status.

    ``source`` (optional): the file the error is about, printed above the message.
    """

    exit_code = 1
    source: str | None = None

    def describe(self) -> str:
        """The message a command prints: ``error: ...`` (input) or ``failed: ...`` (a run), with the
        file first where there is one."""
        head = "failed" if self.exit_code == RunFailedError.exit_code else "error"
        source = getattr(self, "source", None)
        return f"{head} in {source}:\n{self}" if source else f"{head}: {self}"


class UserError(ProjectError):
    """Bad input the user can fix (spec, data, arguments, folders, devices, weight files): exit 2."""

    exit_code = 2


class RunFailedError(ProjectError):
    """A run that started and failed: exit 1."""

    exit_code = 1
