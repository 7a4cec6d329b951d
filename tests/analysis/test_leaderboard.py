"""Leaderboard: the CV figure at the best common epoch, order by the metric's direction, output files."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.leaderboard import (
    LOWER_IS_BETTER,
    build_leaderboard,
    display_frame,
    leaderboard_metrics,
    to_markdown,
    write_leaderboard,
)
from analysis.report import write_report
from analysis.results import load_results


def _expected_best(r, metric: str, lower: bool) -> dict[str, float]:
    out = {}
    for tid, frame in r.epochs.groupby("trial_id"):
        col = frame[f"val/{metric}"]
        out[tid] = float(col.min() if lower else col.max())
    return out


def test_order_matches_score(fake_exp: Path) -> None:
    r = load_results(fake_exp)
    board = build_leaderboard(r)
    expected = _expected_best(r, "score", lower=False)
    ok = board[board["status"] != "error"]
    assert list(ok["score"]) == sorted(ok["score"], reverse=True)
    for row in board.itertuples():
        assert row.score == pytest.approx(expected[row.trial_id])
    # a failed trial ranks after every trial that did not fail, whatever its partial score
    assert (
        board.iloc[-1]["trial_id"] == "abc12_00005" and board.iloc[-1]["score"] > board.iloc[0]["score"] - 0.1
    )
    assert list(board["rank"]) == list(range(1, len(board) + 1))


def test_lower_is_better_metric_orders_ascending(fake_exp: Path) -> None:
    r = load_results(fake_exp)
    board = build_leaderboard(r, metric="hd95")
    ok = board[board["status"] != "error"]
    assert list(ok["score"]) == sorted(ok["score"])
    expected = _expected_best(r, "hd95", lower=True)
    assert all(row.score == pytest.approx(expected[row.trial_id]) for row in board.itertuples())
    with pytest.raises(ValueError, match=r"not reported; reported: .*dice"):
        build_leaderboard(r, metric="dicee")


def test_row_reads_every_metric_at_the_best_mean_epoch(fake_exp: Path) -> None:
    r = load_results(fake_exp)
    board = build_leaderboard(r).set_index("trial_id")
    frame = r.epochs[r.epochs["trial_id"] == "abc12_00002"].reset_index(drop=True)
    best = frame.loc[frame["val/score"].idxmax()]
    row = board.loc["abc12_00002"]
    assert row["best_epoch"] == best["epoch"]
    assert row["dice"] == pytest.approx(best["val/dice"]) and row["dice_std"] == pytest.approx(
        best["val/dice_std"]
    )
    assert row["fold_scores"] == pytest.approx([best["fold0/val/score"], best["fold1/val/score"]])
    assert row["fold_best_epochs"] == pytest.approx(
        [frame.iloc[-1]["fold0/best_epoch"], frame.iloc[-1]["fold1/best_epoch"]]
    )
    assert np.mean(row["fold_scores"]) == pytest.approx(row["score"])


def test_metrics_shown_and_direction_agrees_with_trainables() -> None:
    from trainables.metrics import HIGHER_IS_BETTER

    assert leaderboard_metrics(["normal", "benign", "malignant"])[-1] == "recall_malignant"
    assert leaderboard_metrics(["a", "b"])[-1] == "recall_b"
    lower = {name for name, higher in HIGHER_IS_BETTER.items() if not higher}
    assert lower | {"loss"} == set(LOWER_IS_BETTER)


def test_files_and_markdown(fake_exp: Path, tmp_path: Path) -> None:
    board = build_leaderboard(load_results(fake_exp))
    csv_path, md_path = write_leaderboard(board, tmp_path / "out")
    back = pd.read_csv(csv_path)
    assert list(back["trial_id"]) == list(board["trial_id"])
    md = md_path.read_text(encoding="utf-8")
    assert md.count("\n| ") == len(board) + 1  # header + one line per trial
    assert "0.725 ± 0.005" in md and "scheduler stopped" in md and "1.00e-03" in md
    shown = display_frame(board, top=3, compact=True)
    assert len(shown) == 3 and "hd95" not in shown.columns and "dice" in shown.columns
    assert to_markdown(pd.DataFrame({"a": ["x|y"]})).splitlines()[2] == "| x\\|y |"


def test_the_cv_figure_is_called_what_it_is(fake_exp: Path, tmp_path: Path) -> None:
    """leaderboard.md and report.md say the CV figure is a maximum over epochs and trials and that the
    hold-out test is the unbiased estimate; no sentence calls anything else unbiased."""
    results = load_results(fake_exp)
    board = build_leaderboard(results)
    _, md_path = write_leaderboard(board, tmp_path)
    best = tmp_path / "best_config.yaml"
    best.write_text("name: fake\n", encoding="utf-8")
    chosen = {"trial_id": "abc12_00000", "score": 0.7, "best_epoch": 4, "refit_epochs": 3}
    report = write_report(tmp_path, results, board, {}, chosen, best)
    for text in (md_path.read_text(encoding="utf-8"), report.read_text(encoding="utf-8")):
        assert "maximum over epochs" in text and "hold-out test set" in text
        sentences = [s for s in re.split(r"(?<=[.;])\s", text) if "unbiased" in s]
        assert sentences and all("hold-out test" in s for s in sentences)


def test_trial_without_results_ranks_last(fake_exp: Path) -> None:
    (fake_exp / "train_trial_abc12_00001" / "result.json").write_text("", encoding="utf-8")
    (fake_exp / "train_trial_abc12_00001" / "progress.csv").unlink()
    board = build_leaderboard(load_results(fake_exp))
    last = board.iloc[-1]
    assert last["trial_id"] == "abc12_00001" and math.isnan(last["score"]) and last["epochs_run"] == 0
