"""The error of an experiment folder, shared by the search (start, resume, overwrite) and the analysis
(read, choose, refit): one class, so a caller catches one type whichever layer noticed the problem."""

from __future__ import annotations

from model_zoo.errors import UserError


class ExperimentError(UserError, ValueError):
    """The experiment folder (or a choice made in it: a trial, a metric, a filter) does not allow the
    requested action: it is missing, not an experiment, half-written, has no such trial, ..."""
