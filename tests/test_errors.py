"""The error hierarchy (model_zoo/errors.py): every error the project raises on purpose is a UserError
(exit 2) or a RunFailedError (exit 1), and launch.py alone turns them into exit codes."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import launch
from model_zoo.errors import ProjectError, RunFailedError, UserError

PACKAGES = ("model_zoo", "trainables", "search", "analysis", "pipeline")
# Exceptions that are not errors to report: control flow, or a simulated crash that must look like a bug.
NOT_REPORTED = {
    "analysis.plots.PlotSkipped": "control flow: a figure that cannot be drawn is listed as not drawn",
    "trainables.trainable.InjectedFault": "the test-only fault switch simulates an unexpected crash",
}


def project_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class (warnings aside) defined in the product packages, by dotted name."""
    found: dict[str, type[BaseException]] = {}
    for pkg in PACKAGES:
        root = importlib.import_module(pkg)
        names = [pkg, *(m.name for m in pkgutil.walk_packages(root.__path__, pkg + "."))]
        for name in names:
            module = importlib.import_module(name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and not issubclass(cls, Warning) and cls.__module__ == name:
                    found[f"{name}.{cls.__qualname__}"] = cls
    return found


def test_every_project_exception_is_a_user_error_or_a_failed_run() -> None:
    found = project_exceptions()
    assert len(found) > 15  # the walk saw the packages
    stray = {
        name: [b.__name__ for b in cls.__mro__[1:]]
        for name, cls in found.items()
        if name not in NOT_REPORTED
        and not issubclass(cls, UserError | RunFailedError)
        and cls is not ProjectError
    }
    assert not stray, f"derive these from model_zoo.errors.UserError or RunFailedError: {stray}"
    assert set(NOT_REPORTED) <= set(found)  # the allow-list names classes that exist


def test_there_is_one_experiment_error() -> None:
    found = project_exceptions()
    assert [n for n in found if n.endswith(".ExperimentError")] == ["search.errors.ExperimentError"]


def _raising(exc: BaseException) -> object:
    def command(args: object) -> int:
        raise exc

    return command


@pytest.mark.parametrize(
    ("exc", "code", "head"),
    [
        (UserError("bad input"), 2, "error: bad input"),
        (RunFailedError("loss is nan"), 1, "failed: loss is nan"),
    ],
)
def test_launch_turns_project_errors_into_exit_codes(
    exc: ProjectError, code: int, head: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import trainables.commands

    monkeypatch.setattr(trainables.commands, "cmd_train", _raising(exc))
    assert launch.main(["train", "spec.yaml"]) == code
    assert capsys.readouterr().err.strip() == head


def test_a_spec_error_names_its_file_and_a_bug_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import trainables.commands
    from trainables.schema import SpecError

    monkeypatch.setattr(
        trainables.commands, "cmd_train", _raising(SpecError("train.lr: expected > 0", "s.yaml"))
    )
    assert launch.main(["train", "spec.yaml"]) == 2
    assert capsys.readouterr().err.strip() == "error in s.yaml:\ntrain.lr: expected > 0"
    monkeypatch.setattr(trainables.commands, "cmd_train", _raising(ZeroDivisionError("a bug")))
    with pytest.raises(ZeroDivisionError):
        launch.main(["train", "spec.yaml"])
