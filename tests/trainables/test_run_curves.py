"""The learning-curve figure of a ``launch.py train`` run, drawn from ``epochs.csv``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from trainables.run_curves import FIGURE, plot_run_curves, read_fold_curves

COLUMNS = [
    "epoch",
    "fold",
    "train/loss",
    "val/loss",
    "val/dice",
    "val/macro_f1",
    "val/acc",
    "val/score",
    "lr",
]


def _write_run(run: Path, rows: list[dict[str, object]], best_epoch: int | None = 2) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    with (run / "epochs.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    if best_epoch is not None:
        (run / "summary.json").write_text(json.dumps({"best_epoch": best_epoch}), encoding="utf-8")
    return run


def _row(epoch: int, fold: int, dice: float, **extra: object) -> dict[str, object]:
    return {
        "epoch": epoch,
        "fold": fold,
        "train/loss": 2.0 / epoch,
        "val/loss": 2.5 / epoch,
        "val/dice": dice,
        "val/macro_f1": dice / 2,
        "val/acc": 0.5,
        "val/score": dice,
        "lr": 1e-3,
        **extra,
    }


def test_read_fold_curves_keeps_folds_apart_and_marks_missing_rows(tmp_path: Path) -> None:
    rows = [_row(1, 0, 0.2), _row(1, 1, 0.4), _row(2, 0, 0.5)]  # fold 1 has no epoch-2 row (still running)
    epochs, columns = read_fold_curves(_write_run(tmp_path / "run", rows) / "epochs.csv")
    assert epochs.tolist() == [1, 2]
    assert columns["val/dice"].shape == (2, 2)
    assert columns["val/dice"][0].tolist() == [0.2, 0.4]
    assert columns["val/dice"][1, 0] == 0.5 and math.isnan(columns["val/dice"][1, 1])


def test_blank_cells_read_as_nan(tmp_path: Path) -> None:
    rows = [_row(1, 0, 0.2, **{"val/acc": ""}), _row(1, 1, 0.4)]
    _, columns = read_fold_curves(_write_run(tmp_path / "run", rows) / "epochs.csv")
    assert np.isnan(columns["val/acc"][0, 0]) and columns["val/acc"][0, 1] == 0.5


def test_plot_run_curves_writes_a_png_beside_the_run(tmp_path: Path) -> None:
    rows = [_row(e, f, 0.1 * e + 0.05 * f) for e in (1, 2, 3) for f in (0, 1, 2)]
    run = _write_run(tmp_path / "run", rows)
    path = plot_run_curves(run)
    assert path == run / FIGURE
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_plot_run_curves_refuses_a_run_without_epochs(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", [], best_epoch=None)
    with pytest.raises(ValueError, match="no epochs recorded"):
        plot_run_curves(run)
