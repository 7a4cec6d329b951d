"""``launch.py compare``: paired per-fold differences of train runs on the same folds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import launch
from analysis.compare_runs import check_paired, compare_runs, load_run, paired_delta
from model_zoo.errors import UserError

SPLITS = {
    "test": ["t1.png", "t2.png"],
    "folds": [{"train": ["a"], "val": ["b"]}, {"train": ["b"], "val": ["a"]}],
}
COLUMNS = ["epoch", "fold", "val/dice", "val/acc", "train/seg"]


def _run(path: Path, dice, epochs: int = 6, splits=SPLITS, skip=(), score: float | None = None) -> Path:
    """A run folder whose fold ``k`` has Dice ``dice(epoch, k)``; ``skip``: (epoch, fold) rows left out."""
    path.mkdir(parents=True)
    with (path / "epochs.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for epoch in range(1, epochs + 1):
            for fold in range(2):
                if (epoch, fold) in skip:
                    continue
                d = dice(epoch, fold)
                writer.writerow(
                    {"epoch": epoch, "fold": fold, "val/dice": d, "val/acc": 0.5, "train/seg": 1.0 / epoch}
                )
    if splits is not None:
        (path / "splits.json").write_text(json.dumps(splits), encoding="utf-8")
    if score is not None:
        (path / "summary.json").write_text(
            json.dumps({"best_epoch": epochs, "score": score}), encoding="utf-8"
        )
    return path


def _reference(epoch: int, fold: int) -> float:
    return 0.1 * epoch / 6 + 0.1 * fold


def test_paired_delta_is_the_per_fold_difference(tmp_path: Path) -> None:
    ref = load_run(_run(tmp_path / "ref", _reference))
    # fold 0 gains 0.04 from epoch 4 on, fold 1 loses 0.01 everywhere
    other = load_run(
        _run(tmp_path / "other", lambda e, k: _reference(e, k) + (0.04 * (e >= 4) if k == 0 else -0.01))
    )
    d = paired_delta(ref, other, "val/dice", window=3)
    assert d is not None
    assert d.last_epoch == 6 and d.epochs_common == 6
    assert d.fold_deltas == pytest.approx((0.04, -0.01))
    assert d.delta == pytest.approx(0.015)
    assert d.reference == pytest.approx((0.1 + 0.2) / 2)
    assert d.window == (4, 6)
    assert d.window_fold_deltas == pytest.approx((0.04, -0.01))
    assert d.epochs_ahead == 3  # epochs 1-3: -0.005 behind; 4-6: +0.015 ahead
    flat = paired_delta(ref, other, "val/acc")
    assert flat is not None and flat.delta == 0 and flat.epochs_ahead == 0
    assert paired_delta(ref, other, "val/auc") is None  # not recorded: no row, no invented number


def test_only_epochs_every_fold_of_both_runs_reached_are_compared(tmp_path: Path) -> None:
    ref = load_run(_run(tmp_path / "ref", _reference, epochs=6))
    running = load_run(
        _run(tmp_path / "running", lambda e, k: _reference(e, k) + 0.02, epochs=5, skip={(5, 1)})
    )
    d = paired_delta(ref, running, "val/dice", window=10)
    assert d is not None
    assert d.last_epoch == 4 and d.epochs_common == 4  # epoch 5 has fold 0 only; 6 not reached
    assert d.delta == pytest.approx(0.02) and d.window == (1, 4)


def test_runs_on_other_folds_or_without_splits_are_refused(tmp_path: Path) -> None:
    ref = load_run(_run(tmp_path / "ref", _reference))
    other_folds = {**SPLITS, "folds": [{"train": ["a"], "val": ["c"]}, {"train": ["c"], "val": ["a"]}]}
    moved = load_run(_run(tmp_path / "moved", _reference, splits=other_folds))
    with pytest.raises(UserError, match="split differently"):
        check_paired([ref, moved])
    other_test = load_run(_run(tmp_path / "other_test", _reference, splits={**SPLITS, "test": ["t3.png"]}))
    with pytest.raises(UserError, match="split differently"):
        check_paired([ref, other_test])
    bare = load_run(_run(tmp_path / "bare", _reference, splits=None))
    with pytest.raises(UserError, match=r"no readable splits\.json"):
        check_paired([ref, bare])
    check_paired([ref, load_run(_run(tmp_path / "same", lambda e, k: 0.5))])


def test_compare_writes_report_figure_and_json(tmp_path: Path) -> None:
    ref = _run(tmp_path / "ref", _reference, score=0.61)
    seed1 = _run(tmp_path / "seed1", lambda e, k: _reference(e, k) + 0.01, score=0.62)
    change = _run(tmp_path / "change", lambda e, k: _reference(e, k) - 0.03)
    figure = tmp_path / "out" / "compare.png"
    report, data = compare_runs([ref, seed1, change], ["recipe", "seed 1", "change"], window=2, figure=figure)
    assert "**seed 1** against **recipe**" in report and "**change** against **recipe**" in report
    assert "| lesion Dice | 6 | 0.150 | 0.160 | +0.010 (+0.010, +0.010) | 5-6 |" in report
    assert "-0.030 (-0.030, -0.030)" in report
    assert "recipe: best common epoch 6, score 0.610" in report
    assert figure.stat().st_size > 10_000 and figure.read_bytes()[:4] == b"\x89PNG"
    assert [r["label"] for r in data["runs"]] == ["seed 1", "change"]
    assert data["runs"][1]["deltas"][0]["metric"] == "val/dice"
    assert data["runs"][1]["deltas"][0]["delta"] == pytest.approx(-0.03)
    json.dumps(data)  # serialisable as written by --json


def test_cli_prints_the_table_and_exits_2_on_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ref = _run(tmp_path / "ref", _reference)
    other = _run(tmp_path / "other", lambda e, k: _reference(e, k) + 0.02)
    out_json = tmp_path / "d.json"
    assert (
        launch.main(["compare", str(ref), str(other), "--metrics", "val/dice", "--json", str(out_json)]) == 0
    )
    printed = capsys.readouterr().out
    assert "| lesion Dice |" in printed and "accuracy" not in printed
    assert json.loads(out_json.read_text())["runs"][0]["deltas"][0]["delta"] == pytest.approx(0.02)
    assert launch.main(["compare", str(ref)]) == 2
    assert launch.main(["compare", str(ref), str(tmp_path / "missing")]) == 2
    assert "no epochs.csv" in capsys.readouterr().err
    assert launch.main(["compare", str(ref), str(other), "--labels", "only-one"]) == 2
    assert launch.main(["compare", str(ref), str(other), "--window", "0"]) == 2
    capsys.readouterr()
    assert launch.main(["compare", str(ref), str(other), "--metrics", "val/dcie"]) == 2
    assert "did you mean 'val/dice'?" in capsys.readouterr().err  # a typo fails, never an empty table
