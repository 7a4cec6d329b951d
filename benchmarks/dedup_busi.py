"""Benchmark: duplicate and same-lesion grouping on the full BUSI development set, measured three ways.

1. Against the published curation (``busi_curated/``, Aumente-Maestro et al. 2025): every BUSI image it
   did not keep was a member of a duplicate group, so each should be grouped (recall); its kept images
   that we group are listed (they may be same-lesion frames, which the curation did not look for).
   Its 19 images with duplicates under another class should be our ``conflicting_labels``.
2. Against the hand-checked pair list (``tests/trainables/data/busi_frame_pairs.csv``): the share of
   "same" pairs in one group and of "different" pairs joined (both should be 1 and 0).
3. Against the hand-checked sample of 50 groups (``busi_group_sample.csv``): each is still a group.

Plus the group-size histogram and the largest group (chaining shows there first).

    python -m benchmarks.dedup_busi --data ../shared/data     # or BUS_REAL_DATA=../shared/data

Writes ``benchmarks/results/dedup_busi.json`` and ends with ``RESULT dedup_busi: ...``.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import banner, final, finish, main_guard

NAME = "dedup_busi"
COMPARED = "audit grouping (hash + same-lesion frames) vs the curation and hand-checked lists"
TESTS_DATA = Path(__file__).resolve().parents[1] / "tests" / "trainables" / "data"
PAIRS_CSV = TESTS_DATA / "busi_frame_pairs.csv"
GROUPS_CSV = TESTS_DATA / "busi_group_sample.csv"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def read_curation(curated: Path) -> tuple[set[str], set[str]]:
    """(kept, conflicting) ``class/image`` paths of the curation's two lists."""

    def names(file: str) -> set[str]:
        return {f"{r['class']}/{r['image']}" for r in _rows(curated / file)}

    return names("kept.csv"), names("conflicting.csv")


def read_pairs(path: Path = PAIRS_CSV) -> list[tuple[str, str, str]]:
    """(image_a, image_b, verdict) of the hand-checked candidate pairs."""
    return [(r["image_a"], r["image_b"], r["verdict"]) for r in _rows(path)]


def read_group_sample(path: Path = GROUPS_CSV) -> list[tuple[list[str], str]]:
    """(members, verdict) of the hand-checked group sample."""
    return [(r["members"].split(";"), r["verdict"]) for r in _rows(path)]


def measure(
    report: dict,
    paths: Iterable[str],
    curated: Path,
    pairs: Sequence[tuple[str, str, str]],
    group_sample: Sequence[tuple[list[str], str]],
) -> dict[str, Any]:
    """The grouping figures of an audit ``report`` of a folder holding ``paths`` (``class/image``)."""
    paths = list(paths)
    groups = [list(g) for g in report["duplicate_groups"]]
    group_of = {p: k for k, g in enumerate(groups) for p in g}
    kept, conflicting = read_curation(curated)
    removed = [p for p in paths if p not in kept]  # the curation's duplicate-group members
    kept_here = [p for p in paths if p in kept]
    conflicting_here = sorted(p for p in paths if p in conflicting)

    def together(a: str, b: str) -> bool:
        return a in group_of and group_of.get(a) == group_of.get(b)

    same = [(a, b) for a, b, v in pairs if v == "same"]
    different = [(a, b) for a, b, v in pairs if v == "different"]
    group_set = {tuple(sorted(g)) for g in groups}
    sample_ok = [m for m, v in group_sample if v == "one_lesion"]
    largest = max(groups, key=len) if groups else []
    return {
        "images": len(paths),
        "groups": len(groups),
        "grouped_images": len(group_of),
        "curation_removed": len(removed),
        "curation_removed_grouped": sum(p in group_of for p in removed),
        "curation_removed_recall": _share(sum(p in group_of for p in removed), len(removed)),
        "curation_removed_missed": sorted(p for p in removed if p not in group_of),
        "curation_kept": len(kept_here),
        "curation_kept_grouped": sorted(p for p in kept_here if p in group_of),
        "curation_conflicting": len(conflicting_here),
        "curation_conflicting_found": sum(p in set(report["conflicting_labels"]) for p in conflicting_here),
        "conflicting_labels": len(report["conflicting_labels"]),
        "hand_same_pairs": len(same),
        "hand_same_grouped": sum(together(a, b) for a, b in same),
        "hand_same_recall": _share(sum(together(a, b) for a, b in same), len(same)),
        "hand_same_missed": [[a, b] for a, b in same if not together(a, b)],
        "hand_different_pairs": len(different),
        "hand_different_joined": [[a, b] for a, b in different if together(a, b)],
        "group_sample": len(sample_ok),
        "group_sample_unchanged": sum(tuple(sorted(m)) in group_set for m in sample_ok),
        "group_sample_wrong_joins": sum(v != "one_lesion" for _, v in group_sample),
        "group_size_histogram": {str(k): v for k, v in sorted(Counter(map(len, groups)).items())},
        "largest_group": largest,
    }


def _share(n: int, total: int) -> float:
    return round(n / total, 4) if total else float("nan")


def run(data: Path, progress: bool = True) -> tuple[dict[str, Any], float]:
    """Audit ``data/busi`` with the default ``data.dedup`` and measure it; (figures, audit seconds)."""
    from trainables.data.audit import run_audit

    start = time.perf_counter()
    audit = run_audit(data / "busi", progress=progress)
    seconds = time.perf_counter() - start
    paths = [r.path for r in audit.scan.records]
    figures = measure(audit.report, paths, data / "busi_curated", read_pairs(), read_group_sample())
    return figures, seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("BUS_REAL_DATA"))
    args = parser.parse_args(argv)
    if args.data is None or not (Path(args.data) / "busi").is_dir():
        print("dedup_busi: needs --data (or BUS_REAL_DATA) with busi/ and busi_curated/; skipped")
        final(NAME, "skipped (no BUSI data)")
        return 0
    machine = banner(NAME, COMPARED)
    figures, seconds = run(Path(args.data))
    figures["audit_seconds"] = round(seconds, 1)
    for key, value in figures.items():
        print(f"  {key}: {value}")
    ratio = (
        f"curation recall {figures['curation_removed_recall']:.3f}, hand same-lesion recall "
        f"{figures['hand_same_recall']:.3f}, different joined {len(figures['hand_different_joined'])}, "
        f"largest group {len(figures['largest_group'])}"
    )
    return finish(NAME, COMPARED, figures, ratio, machine)


if __name__ == "__main__":
    raise SystemExit(main_guard(main))
