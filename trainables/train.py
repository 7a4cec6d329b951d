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
import importlib
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trainables.spec import Spec, flatten, load_spec, save_spec, set_dotted, spec_from_dict, spec_to_dict

if TYPE_CHECKING:
    from trainables.loop import CrossValLoop

STATE_FILE = "state.pt"


class TrainError(RuntimeError):
    """A problem with the output folder or a resume request."""


# ------------------------------------------------------------------------------------ files


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves a half-written state."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_safe(x: Any) -> Any:
    """NaN/inf become None so the JSON is standard."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Mapping):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def write_json(path: Path, data: Any) -> None:
    _write_text_atomic(path, json.dumps(_json_safe(data), indent=2) + "\n")


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
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------- W&B (optional)


def apply_sweep_params(spec: Spec, params: Mapping[str, Any]) -> Spec:
    """``spec`` with a W&B sweep's parameters applied as dotted overrides (``train.lr`` or nested), validated."""
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
        if not (out / STATE_FILE).is_file():
            raise TrainError(f"--resume: {out} has no {STATE_FILE} to continue from")
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


def _load_splits(spec: Spec, dataset: Any, out: Path, resume: bool) -> dict:
    """The run's splits: the saved ``splits.json`` on resume, else ``data.splits`` or new ones."""
    from trainables.data.splits import load_splits, resolve_splits, validate_splits

    if resume:
        splits = load_splits(out / "splits.json")
        validate_splits(splits, dataset)
        return splits
    return resolve_splits(spec.data, dataset)


def _data_info(dataset: Any) -> dict[str, Any]:
    counts = [int((dataset.labels == c).sum()) for c in range(len(dataset.class_names))]
    return {
        "fingerprint": dataset.fingerprint,
        "root": dataset.root,
        "n_images": len(dataset.labels),
        "image_size": int(dataset.images.shape[-1]),
        "class_names": list(dataset.class_names),
        "class_counts": counts,
    }


def _save_bundles(loop: CrossValLoop, out: Path, spec: Spec) -> None:
    """``fold{k}_best.safetensors`` for each fold that just improved, if the model zoo can write bundles."""
    save_bundle = getattr(importlib.import_module("model_zoo"), "save_bundle", None)
    if save_bundle is None:
        return
    for k in loop.improved:
        fold = loop.folds[k]
        meta = {
            "spec": spec_to_dict(spec),
            "fold": k,
            "epoch": fold.best_epoch,
            "metrics": _json_safe(fold.best_metrics),
            "class_names": list(loop.class_names),
            "image_size": spec.data.image_size,
        }
        save_bundle(out / f"fold{k}_best.safetensors", fold.model, meta)


def _progress(loop: CrossValLoop, enabled: bool) -> Any:
    from tqdm import tqdm

    epoch = loop.epoch + 1
    return tqdm(
        total=loop.batches_per_epoch(),
        desc=f"epoch {epoch}/{loop.cfg.epochs}",
        unit="batch",
        disable=not enabled,
        leave=True,
        file=sys.stderr,
        dynamic_ncols=True,
    )


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
    from trainables.data.cache import load_dataset
    from trainables.data.splits import save_splits, split_indices
    from trainables.device import resolve_device
    from trainables.loop import CrossValLoop

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
        dataset = load_dataset(spec.data, progress=progress)
        info = _data_info(dataset)
        if resume and (out / "data.json").is_file():
            saved = json.loads((out / "data.json").read_text(encoding="utf-8"))
            if saved.get("fingerprint") != info["fingerprint"]:
                raise TrainError(
                    f"--resume: the dataset changed since {out} was started "
                    f"(fingerprint {saved.get('fingerprint')} -> {info['fingerprint']})"
                )
        splits = _load_splits(spec, dataset, out, resume)
        loop = CrossValLoop(spec, dataset, split_indices(splits, dataset), device=device)
        if resume:
            loop.load_state_dict(torch.load(out / STATE_FILE, map_location="cpu", weights_only=True))
            print(f"resumed {out} after epoch {loop.epoch}", file=sys.stderr)
        else:
            save_spec(spec, out / "spec.yaml")
            save_splits(splits, out / "splits.json")
            write_json(out / "data.json", info)
            save_atomic(loop.state_dict(), out / STATE_FILE)
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
    n_folds = len(loop.folds)
    saved = loop.epoch
    try:
        while not loop.done:
            bar = _progress(loop, progress)

            def on_batch(fold: int, batch: int, total: int, loss: float, bar: Any = bar) -> None:
                bar.update(1)
                bar.set_postfix_str(f"fold {fold} loss {loss:.4f}", refresh=False)

            try:
                result = loop.step(on_batch=on_batch)
            except BaseException:
                bar.close()
                raise
            bar.set_postfix_str(_fold_line(result, n_folds))
            bar.close()
            save_atomic(loop.state_dict(), out / STATE_FILE)
            saved = loop.epoch
            write_epochs_csv(out / "epochs.csv", loop.history, n_folds)
            write_json(out / "summary.json", loop.summary())
            _save_bundles(loop, out, spec)
            if run is not None:
                run.log(result, step=loop.epoch)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: {out / STATE_FILE} holds the state after epoch {saved}; "
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
