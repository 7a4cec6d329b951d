"""The ``audit``, ``splits`` and ``make-synthetic`` verbs of ``launch.py``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from trainables.data.audit import format_audit, run_audit
from trainables.data.scan import data_fingerprint, printable
from trainables.data.splits import SplitSource, make_splits, save_splits, subsample_training


def _fail(verb: str, message: str) -> int:
    """A finished audit that found the folder unusable: its problems, exit 2 (raised errors: launch.py)."""
    print(f"{verb}: {message}", file=sys.stderr)
    return 2


def cmd_audit(args: argparse.Namespace) -> int:
    """Print the audit report of ``args.data_dir`` (and write ``--json``); 0 usable, 2 not usable."""
    audit = run_audit(args.data_dir, args.classes, args.missing_mask, progress=sys.stderr.isatty())
    print(format_audit(audit))
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(audit.report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    if audit.problems:
        return _fail("audit", f"{args.data_dir} is not usable:\n  - " + "\n  - ".join(audit.problems))
    return 0


def cmd_splits(args: argparse.Namespace) -> int:
    """Write a hold-out test part + stratified group K folds of ``args.data_dir`` to ``args.out``."""
    if not 0.0 < args.train_fraction <= 1.0:
        return _fail("splits", f"--train-fraction {args.train_fraction}: expected a number in (0, 1]")
    audit = run_audit(args.data_dir, args.classes, args.missing_mask, progress=sys.stderr.isatty())
    if audit.problems:
        return _fail(
            "splits", f"{args.data_dir} is not usable (run audit):\n  - " + "\n  - ".join(audit.problems)
        )
    scan = audit.scan
    conflicting = set(audit.report["conflicting_labels"]) if args.conflicting_labels == "drop" else set()
    use = [i for i, r in enumerate(scan.records) if r.path not in conflicting]
    if conflicting:
        print(
            f"left out {len(conflicting)} image(s) whose duplicates are filed under another class "
            f"(--conflicting-labels keep to use them): {', '.join(map(printable, sorted(conflicting)))}"
        )
    source = SplitSource(
        paths=[scan.records[i].path for i in use],
        labels=np.array([scan.records[i].label for i in use], dtype=np.int64),
        groups=audit.groups[use],
        fingerprint=data_fingerprint(scan),
        class_names=scan.classes,
    )
    splits = subsample_training(
        make_splits(source, args.folds, args.test_fraction, args.seed), source, args.train_fraction, args.seed
    )
    path = save_splits(splits, args.out)
    class_of = {r.path: r.class_name for r in scan.records}

    def summary(paths: list[str]) -> str:
        counts = {c: 0 for c in scan.classes}
        for p in paths:
            counts[class_of[p]] += 1
        return f"{len(paths):4d} (" + ", ".join(f"{c} {n}" for c, n in counts.items()) + ")"

    print(f"test   {summary(splits['test'])}")
    for k, fold in enumerate(splits["folds"]):
        print(f"fold {k} val {summary(fold['val'])}  train {len(fold['train'])}")
    print(f"{len(audit.report['duplicate_groups'])} duplicate group(s) kept together; wrote {path}")
    return 0


def cmd_make_synthetic(args: argparse.Namespace) -> int:
    """Write the built-in synthetic set to ``args.out`` (BUSI layout)."""
    from trainables.data.synthetic import make_synthetic

    kwargs: dict = {"seed": args.seed}
    if args.n_per_class is not None:
        kwargs["n_per_class"] = tuple(args.n_per_class)
    if args.size is not None:
        kwargs["size"] = args.size
    out = make_synthetic(args.out, progress=sys.stderr.isatty(), **kwargs)
    print(f"wrote the synthetic set to {out}")
    return 0
