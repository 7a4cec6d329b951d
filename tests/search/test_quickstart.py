"""The quickstart search end to end on the CPU: Optuna proposes, ASHA stops, the experiment folder holds
everything, and W&B has one offline run per trial with the trial's config."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import yaml

from tests.search.helpers import results, trial_dirs
from tests.search.wandb_records import read_run

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "spaces" / "quickstart.yaml"


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9)  # type: ignore[arg-type]
    return a == b


@pytest.mark.slow
def test_quickstart_search(tmp_path: Path, no_ray: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import launch
    from search.config import load_search_spec
    from search.space import space_from_spec

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    spec = load_search_spec(QUICKSTART)
    # An earlier experiment of the same name: --overwrite keeps it aside until the first trial starts
    # (a Tune callback, pickled into tuner.pkl with the run), then deletes it.
    old = tmp_path / "runs" / "quickstart" / "train_trial_old_00000"
    old.mkdir(parents=True)
    for name in ("spec.yaml", "tuner.pkl", "train_trial_old_00000/result.json"):
        (old.parent / name).write_text("old\n", encoding="utf-8")
    assert launch.main(["search", str(QUICKSTART), "--storage", str(tmp_path / "runs"), "--overwrite"]) == 0
    exp = tmp_path / "runs" / "quickstart"
    assert not old.exists() and not list(exp.parent.glob(".quickstart.replaced-*"))

    # The folder describes itself: resolved spec, splits, data fingerprint, Tune's state and trials.
    saved = yaml.safe_load((exp / "spec.yaml").read_text())
    assert saved["search"]["space"] == spec.search.space and saved["data"]["image_size"] == 64
    splits = yaml.safe_load((exp / "splits.json").read_text())
    assert len(splits["folds"]) == spec.data.folds and splits["test"]
    assert len(yaml.safe_load((exp / "data.json").read_text())["fingerprint"]) > 8
    dirs = trial_dirs(exp)
    assert len(dirs) == spec.search.num_samples
    rows = {d.name.removeprefix("train_trial_"): results(d) for d in dirs}
    assert all(r and list(d.glob("checkpoint_*")) for d, r in zip(dirs, rows.values()))

    # Optuna proposed every config (the searcher's saved study holds each trial's parameters).
    (state_file,) = exp.glob("searcher-state-*.pkl")
    searcher = pickle.loads(state_file.read_bytes())
    assert set(searcher["_ot_trials"]) == set(rows)
    first = spec.search.points_to_evaluate[0]
    configs = {tid: r[-1]["config"] for tid, r in rows.items()}
    assert any(all(_same(c.get(k), v) for k, v in first.items()) for c in configs.values())
    space = space_from_spec(spec)
    for tid, config in configs.items():
        params = searcher["_ot_trials"][tid].params
        assert set(params) == set(config)  # inactive conditional parameters were never sampled
        # Optuna stores a list/mapping choice (the slim decoder's channels) by its label
        assert all(_same(params[k], space[k].optuna_value(config[k])) for k in params)

    # ASHA stopped at least one trial before train.epochs; the metric every trial reported is there.
    epochs = {tid: int(r[-1]["training_iteration"]) for tid, r in rows.items()}
    assert min(epochs.values()) < spec.train.epochs <= max(epochs.values())
    assert all("val/score_best" in r[-1] and "fold1/val/dice" in r[-1] for r in rows.values())

    # The Optuna study lives in the folder's journal (what optuna-dashboard reads): Optuna's own API finds
    # every trial with its parameters, the value reported at each epoch and the final value.
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal = JournalStorage(JournalFileBackend(str(exp / "optuna.journal")))
    study = optuna.load_study(study_name=spec.name, storage=journal)
    assert len(study.trials) == len(rows)
    for tid, reported in rows.items():
        trial = study.trials[searcher["_ot_trials"][tid].number]
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.params == searcher["_ot_trials"][tid].params
        per_epoch = {int(r["training_iteration"]): r["val/score_best"] for r in reported}
        # Tune hands a trial's last result to the searcher as its final value (on_trial_complete), not as
        # an intermediate one: the journal holds every epoch before the last, then the final value
        last = max(per_epoch)
        assert set(trial.intermediate_values) | {last} == set(per_epoch)
        assert trial.intermediate_values == pytest.approx(
            {e: per_epoch[e] for e in trial.intermediate_values}
        )
        assert trial.value == pytest.approx(reported[-1]["val/score_best"])

    # One offline W&B run per trial in the experiment folder, its config the trial's.
    run_files = sorted((exp / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == len(rows)
    for path in run_files:
        run = read_run(path)
        assert run["group"] == "quickstart" and run["id"] in rows
        for key, value in configs[run["id"]].items():
            assert _same(run["config"][key], value), key
        assert [h["training_iteration"] for h in run["history"]] == list(range(1, epochs[run["id"]] + 1))
