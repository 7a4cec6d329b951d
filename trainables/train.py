"""``launch.py train``: run the K-fold lockstep loop for one spec, without Ray, into an output folder.

The folder holds everything needed to inspect or continue the run:

- ``spec.yaml``: the resolved spec (overrides applied); ``--resume`` refuses a different one.
- ``splits.json``: the hold-out test set and folds used; ``data.json``: dataset fingerprint and counts.
- ``epochs.csv``: one row per epoch and fold with every scalar metric (rewritten from the loop history
  after each epoch, so it always matches ``state.pt``).
- ``summary.json``: CV mean +- std at the best common epoch and each fold's best epoch.
- ``state.pt``: the loop state after the last completed epoch (written atomically; also before epoch 1),
  loaded with ``weights_only=True``. Ctrl-C leaves it at the last completed epoch; ``--resume`` goes on.
- ``learning_curves.png``: CV mean +- std per epoch (loss, Dice, macro-F1, AUC, normal specificity,
  score), the best common epoch marked; drawn when the run finishes (``trainables.run_curves``).
- ``fold{k}_best.safetensors``: fold k's model at its best epoch, when ``model_zoo.save_bundle`` exists.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model_zoo.errors import UserError
from model_zoo.files import json_safe, replace_atomically, write_json_atomic
from trainables.spec import Spec, flatten, load_spec, save_spec, set_dotted, spec_from_dict, spec_to_dict

if TYPE_CHECKING:
    from trainables.loop import CrossValLoop

TRAIN_STATE_FILE = "state.pt"  # the loop state of a run folder, for --resume


class TrainError(UserError, RuntimeError):
    """A problem with the output folder or a resume request."""


# ------------------------------------------------------------------------------------ files


def write_json(path: Path, data: Any) -> None:
    """``data`` as standard JSON (NaN -> null), written atomically."""
    write_json_atomic(path, data)


def epoch_rows(history: list[Mapping[str, float]], n_folds: int) -> list[dict[str, Any]]:
    """One row per epoch and fold: ``epoch``, ``fold``, the fold's metrics (unprefixed), ``lr``, and the
    epoch's wall time and training throughput (shared by its folds), so a run's speed can be audited."""
    rows = []
    for h in history:
        for k in range(n_folds):
            prefix = f"fold{k}/"
            row: dict[str, Any] = {"epoch": int(h["epoch"]), "fold": k}
            row.update({key[len(prefix) :]: v for key, v in h.items() if key.startswith(prefix)})
            row["lr"] = h["lr"]
            for key in ("time_this_epoch_s", "samples_per_s"):
                if key in h:
                    row[key] = h[key]
            rows.append(row)
    return rows


def write_epochs_csv(path: Path, history: list[Mapping[str, float]], n_folds: int) -> None:
    rows = epoch_rows(history, n_folds)
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)

    replace_atomically(path, write)


# ------------------------------------------------------------------------------- W&B (optional)


def apply_sweep_params(spec: Spec, params: Mapping[str, Any]) -> Spec:
    """``spec`` with a W&B sweep's parameters applied as dotted overrides (``train.lr`` or nested),
    validated."""
    flat = {k: v for k, v in flatten(dict(params), type(spec)).items() if not k.startswith("_")}
    if not flat:
        return spec
    d = spec_to_dict(spec)
    for key, value in flat.items():
        set_dotted(d, key, value)
    return spec_from_dict(d, type(spec))


def _wandb_start(spec: Spec, out_dir: Path) -> tuple[Any, Spec]:
    import wandb  # optional: only with --wandb

    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "bus-search"),
        name=spec.name,
        dir=str(out_dir),
        job_type="train",
    )
    spec = apply_sweep_params(spec, dict(run.config))
    run.config.update(flatten(spec), allow_val_change=True)
    return run, spec


# ----------------------------------------------------------------------------------- the run


def _check_out_dir(out: Path, resume: bool) -> None:
    if resume:
        if not (out / TRAIN_STATE_FILE).is_file():
            raise TrainError(f"--resume: {out} has no {TRAIN_STATE_FILE} to continue from")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainError(
            f"{out} already exists and is not empty: continue it with --resume, or choose another --out"
        )


def _check_same_spec(spec: Spec, out: Path) -> None:
    saved = load_spec(out / "spec.yaml", spec_cls=type(spec))
    old, new = flatten(saved), flatten(spec)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        diffs = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise TrainError(
            f"--resume: the spec differs from the one {out} was trained with ({diffs}); "
            "resume with the same spec and overrides, or start a new --out"
        )


def fold_bundle_path(out: Path, fold: int) -> Path:
    """Where a train run keeps fold ``fold``'s model at its best epoch: ``<out>/fold{k}_best.safetensors``."""
    return out / f"fold{fold}_best.safetensors"


def _save_bundles(loop: CrossValLoop, out: Path, spec: Spec) -> None:
    """:func:`fold_bundle_path` for each fold that just improved."""
    from model_zoo import save_bundle

    for k in loop.improved:
        fold = loop.folds[k]
        meta = {
            "spec": spec_to_dict(spec),
            "fold": k,
            "epoch": fold.best_epoch,
            "metrics": json_safe(fold.best_metrics),
            "class_names": list(loop.class_names),
            "image_size": spec.data.image_size,
        }
        save_bundle(fold_bundle_path(out, k), fold.eval_module, meta)


def _fold_line(result: Mapping[str, float], n_folds: int) -> str:
    def per_fold(name: str) -> str:
        return "/".join(f"{result.get(f'fold{k}/val/{name}', math.nan):.3f}" for k in range(n_folds))

    return (
        f"dice {per_fold('dice')} f1 {per_fold('macro_f1')} "
        f"score {result['val/score']:.3f} (best {result['val/score_best']:.3f})"
    )


def run_train(
    spec: Spec,
    out_dir: str | Path,
    device: str = "auto",
    resume: bool = False,
    wandb: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``spec``'s K folds into ``out_dir`` (see the module docstring); return the summary.

    Raises :class:`TrainError` for a non-empty ``out_dir`` without ``resume`` or a changed spec on
    resume, and lets ``KeyboardInterrupt`` through after saying where the state is.
    """
    from trainables.data.run_data import data_summary, load_run_data
    from trainables.data.splits import load_splits, save_splits, split_indices
    from trainables.device import resolve_device
    from trainables.loop import CrossValLoop, read_loop_state, save_loop_state

    out = Path(out_dir)
    resolve_device(device)  # fail before any work when the device is unusable
    _check_out_dir(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    run = None
    if wandb:
        run, spec = _wandb_start(spec, out)
    try:
        if resume:
            _check_same_spec(spec, out)
        # On --resume: the run's own splits.json and data.json fingerprint, not a recomputation.
        saved_splits = load_splits(out / "splits.json") if resume else None
        saved_fp = None
        if resume and (out / "data.json").is_file():
            saved_fp = json.loads((out / "data.json").read_text(encoding="utf-8")).get("fingerprint")
        hint = f"--resume: {out} was started on other images; resume with the same --data"
        dataset, splits = load_run_data(spec.data, saved_splits, saved_fp, hint=hint, progress=progress)
        info = data_summary(dataset)
        loop = CrossValLoop(spec, dataset, split_indices(splits, dataset), device=device)
        if resume:
            loop.load_state_dict(read_loop_state(out / TRAIN_STATE_FILE))
            print(f"resumed {out} after epoch {loop.epoch}", file=sys.stderr)
        choice = loop.choose_amp()  # train.amp auto on a CPU with bf16 hardware: timed once, kept on resume
        if choice is not None and progress:
            print(f"train.amp auto: {choice.describe()}", file=sys.stderr)
        if not resume:
            save_spec(spec, out / "spec.yaml")
            save_splits(splits, out / "splits.json")
            write_json(out / "data.json", info)
            save_loop_state(loop, out / TRAIN_STATE_FILE)
        _train_epochs(loop, spec, out, run, progress)
        summary = loop.summary()
        write_json(out / "summary.json", summary)
        _draw_curves(out, summary, progress)
        return summary
    finally:
        if run is not None:
            run.finish()


def _draw_curves(out: Path, summary: Mapping[str, Any], progress: bool) -> None:
    """Write ``learning_curves.png``; a figure that cannot be drawn never fails a finished run."""
    from trainables.run_curves import FIGURE, plot_run_curves

    try:
        path = plot_run_curves(
            out, out / FIGURE, summary=summary, title=f"{out.name}: CV mean ± std per epoch"
        )
    except (ImportError, ValueError, OSError) as exc:
        print(f"learning curves not drawn: {exc}", file=sys.stderr)
        return
    if progress:
        print(f"learning curves: {path}", file=sys.stderr)


def _train_epochs(loop: CrossValLoop, spec: Spec, out: Path, run: Any, progress: bool) -> None:
    from trainables.epoch_bar import step_with_bar
    from trainables.loop import save_loop_state

    n_folds = len(loop.folds)
    saved = loop.epoch
    try:
        while not loop.done:
            result = step_with_bar(loop, progress, summary=lambda r: _fold_line(r, n_folds))
            save_loop_state(loop, out / TRAIN_STATE_FILE)
            saved = loop.epoch
            write_epochs_csv(out / "epochs.csv", loop.history, n_folds)
            write_json(out / "summary.json", loop.summary())
            _save_bundles(loop, out, spec)
            if run is not None:
                run.log(result, step=loop.epoch)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: {out / TRAIN_STATE_FILE} holds the state after epoch {saved}; "
            f"continue with --resume --out {out}",
            file=sys.stderr,
        )
        raise
    if not progress:
        return
    summary = loop.summary()
    cv = summary.get("cv", {})
    figures = ", ".join(
        f"{name} {cv[name]['mean']:.3f} ± {cv[name]['std']:.3f}"
        for name in ("dice", "macro_f1", "score")
        if name in cv
    )
    print(f"CV at best epoch {summary.get('best_epoch')}: {figures}; written to {out}", file=sys.stderr)
