"""External validation: a saved model bundle on any labelled folder in the BUSI layout, never training.

``launch.py evaluate --model BUNDLE --data DIR`` first checks that the folder's class folders are the
bundle's classes (labels are read from folder names, so anything else would mislabel images), then reads
and audits the folder through the data layer at the bundle's working size and resize mode (any image
size and mode the data layer accepts; an unusable folder is refused with the audit's reasons), predicts
every image (optionally with flip TTA) and writes the same test report as ``refit``
(:mod:`analysis.evaluate`: metrics at working and original resolution with cluster-bootstrap intervals,
per-class Dice, ``test_report.json`` and ``.md``, confusion matrix, ROC curves, best/worst gallery). The
audit's warnings (duplicates, orphan or repaired masks, ignored files, ...) go into the report. Each run
appends one JSON line to ``<bundle stem>.evaluations.jsonl`` beside the bundle.
"""

from __future__ import annotations

import os
import time
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analysis.evaluate import (
    HEADLINE,
    append_jsonl,
    evaluate,
    heldout_from_dataset,
    write_figures,
    write_markdown,
)
from analysis.predict import Predictor, predict_arrays
from analysis.refit import REPORT_MD, REPORT_NAME
from model_zoo.errors import UserError
from trainables.data.errors import DataError, listing
from trainables.data.scan import IMAGE_EXTENSIONS

LOG_SUFFIX = ".evaluations.jsonl"


class EvaluateError(UserError, ValueError):
    """An evaluation that cannot run: class folders that differ from the bundle's, an output in use."""


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def folder_classes(root: str | Path) -> list[str]:
    """Names of the sub-folders of ``root`` that hold at least one image file (hidden ones aside)."""
    found = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            with os.scandir(entry.path) as files:
                if any(
                    f.is_file() and os.path.splitext(f.name)[1].lower() in IMAGE_EXTENSIONS for f in files
                ):
                    found.append(entry.name)
    return found


def check_classes(root: str | Path, class_names: Sequence[str]) -> None:
    """Raise :class:`EvaluateError` unless the image folders of ``root`` are exactly ``class_names``
    (matched case-insensitively, as the data layer matches them)."""
    folders = folder_classes(root)
    have, want = {_key(f): f for f in folders}, {_key(c): c for c in class_names}
    if have.keys() == want.keys():
        return
    missing = [c for k, c in want.items() if k not in have]
    extra = [f for k, f in have.items() if k not in want]
    parts = ([f"no folder for {', '.join(missing)}"] if missing else []) + (
        [f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not a class of the bundle"]
        if extra
        else []
    )
    raise EvaluateError(
        f"{root}: its class folders ({', '.join(folders) or 'none'}) differ from the bundle's classes "
        f"({', '.join(class_names)}): {'; '.join(parts)}. Labels are read from the folder names (any "
        "case), so the folder needs one image folder per class of the bundle, named like it"
    )


def audit_warnings(audit: Mapping[str, Any], missing_mask: str = "error") -> list[str]:
    """What a usable folder's audit report found that the reader of the figures should know."""
    out = []
    dup = audit.get("duplicate_groups") or []
    if dup:
        n = sum(len(g) for g in dup)
        out.append(
            f"{len(dup)} group(s) of near-identical images ({n} images, e.g. {' = '.join(dup[0])}); "
            "the confidence intervals resample groups, not images"
        )
    cross = audit.get("cross_class_duplicates") or []
    if cross:
        shown = listing([" = ".join(g) for g in cross], 3)
        out.append(f"{len(cross)} duplicate group(s) span classes (one image under two labels?): {shown}")
    dropped = list(audit.get("dropped_conflicting") or [])
    if dropped:
        out.append(
            f"{len(dropped)} image(s) left out, their near copies being filed under another class "
            f"(data.conflicting_labels: drop): {listing(dropped, 5)}"
        )
    what = {
        "missing_masks": (
            f"image(s) without a mask, {'treated as no lesion' if missing_mask == 'empty' else 'left out'}"
        ),
        "orphan_masks": "mask(s) without an image, not used",
        "ignored_files": "file(s) or folder(s) ignored (not an image of a class folder)",
    }
    for key, text in what.items():
        items = list(audit.get(key) or [])
        if items:
            out.append(f"{len(items)} {text}: {listing(items, 5)}")
    mismatch = [f"{m['mask']} vs {m['image']}" for m in audit.get("size_mismatch") or []]
    if mismatch:
        out.append(
            f"{len(mismatch)} mask(s) larger than their image, centre-cropped to fit: {listing(mismatch, 5)}"
        )
    return out


def default_out(bundle: Path, data_dir: Path) -> Path:
    """``<bundle dir>/evaluations/<bundle stem>-<data folder>``, with ``-2``, ``-3``, ... when taken."""
    name = f"{bundle.stem}-{data_dir.resolve().name or 'data'}"
    base = bundle.parent / "evaluations" / name
    path, k = base, 1
    while (path / REPORT_NAME).exists():
        k += 1
        path = base.with_name(f"{name}-{k}")
    return path


def log_path(bundle: str | Path) -> Path:
    """The evaluation log beside a bundle: ``<bundle stem>.evaluations.jsonl``."""
    bundle = Path(bundle)
    return bundle.with_name(bundle.stem + LOG_SUFFIX)


def append_log(bundle: str | Path, entry: Mapping[str, Any]) -> Path:
    """Append ``entry`` (plus the time) as one JSON line to :func:`log_path` of ``bundle``."""
    path = log_path(bundle)
    append_jsonl(path, {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry})
    return path


def run_evaluation(
    bundle: str | Path,
    data_dir: str | Path,
    out_dir: str | Path | None = None,
    device: str = "auto",
    tta: bool = False,
    missing_mask: str = "error",
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Evaluate ``bundle`` on the labelled folder ``data_dir``; returns the report (``outputs`` names the
    files, ``log`` the evaluation log). Raises :class:`EvaluateError`, :class:`DataError` or
    :class:`~analysis.predict.PredictError` before writing anything when it cannot run."""
    from model_zoo.files import write_json_atomic
    from trainables.data.cache import load_dataset
    from trainables.data.config import DataConfig

    bundle, root = Path(bundle), Path(data_dir)
    if n_boot < 1:
        raise EvaluateError(f"--n-boot {n_boot}: expected at least 1 bootstrap resample")
    predictor = Predictor(bundle, device, tta)
    if not root.is_dir():
        raise DataError(f"--data {root}: not a folder (expected ROOT/<class>/<image> in the BUSI layout)")
    check_classes(root, predictor.class_names)
    out = Path(out_dir) if out_dir is not None else default_out(bundle, root)
    if (out / REPORT_NAME).exists():
        raise EvaluateError(
            f"{out} already holds {REPORT_NAME}; choose another --out (nothing is overwritten)"
        )
    cfg = DataConfig(
        root=str(root),
        image_size=predictor.image_size,
        resize=predictor.resize,
        classes=list(predictor.class_names),
        missing_mask=missing_mask,
    )
    dataset = load_dataset(cfg, progress=progress)  # audits the folder; DataError when unusable
    warnings = audit_warnings(dataset.audit, missing_mask)
    source = predictor.meta.get("source") or {}
    if source.get("data_fingerprint") == dataset.fingerprint:
        warnings.insert(
            0,
            "the bundle was refitted on this very data (same fingerprint): its development "
            "images are among these, so the figures are not an external validation",
        )

    test = heldout_from_dataset(dataset, np.arange(len(dataset)))
    seg_prob, probs = predict_arrays(
        [predictor.model],
        test.images,
        predictor.device,
        tta=tta,
        progress=progress,
        lesion_gate=predictor.lesion_gate,
    )
    train = (predictor.meta.get("spec") or {}).get("train") or {}
    tau = float(predictor.meta.get("tau", train.get("tau", 2.0)))
    result = evaluate(
        test,
        seg_prob,
        probs,
        tau,
        predictor.min_area,
        n_boot,
        seed,
        progress=progress,
        lesion_gate=predictor.lesion_gate,
    )
    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(test, seg_prob, probs, result, out)
    log = log_path(bundle)
    report = {
        "kind": "external",
        "bundle": str(bundle),
        "bundle_source": source,
        "data_root": dataset.root,
        "data_fingerprint": dataset.fingerprint,
        "preprocessing": {"image_size": predictor.image_size, "resize": predictor.resize},
        "tta": tta,
        "device": str(predictor.device),
        "warnings": warnings,
        "audit": dataset.audit,
        **result,
        "outputs": {
            "report": str(out / REPORT_NAME),
            "report_md": str(out / REPORT_MD),
            "log": str(log),
            **{k: str(v) for k, v in figures.items()},
        },
    }
    write_json_atomic(out / REPORT_NAME, report)
    write_markdown(report, out / REPORT_MD, f"External evaluation of {bundle.name} on {dataset.root}")
    headline = {k: report["metrics"][k]["value"] for k in HEADLINE if k in report["metrics"]}
    append_log(
        bundle,
        {
            "data_root": dataset.root,
            "data_fingerprint": dataset.fingerprint,
            "n_images": report["n_images"],
            "n_per_class": dict(zip(report["class_names"], report["n_per_class"])),
            "metrics": headline,
            "tta": tta,
            "device": str(predictor.device),
            "out_dir": str(out),
            "command": command,
        },
    )
    return report
