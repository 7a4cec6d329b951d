"""Checking a BUSI-format folder: one decode pass over every image and mask, then a report.

:func:`run_audit` is shared with the cache: a caller may pass ``process`` to do more with each decoded
pair in the same pass (the cache resizes and stores it), so a set is decoded once. The report is exactly
the ``audit --json`` contract of the data layer (paths relative to the root, forward slashes, sorted).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainables.data.config import DEFAULT_CLASSES, DedupConfig
from trainables.data.dedup import group_duplicates, group_ids, image_hash
from trainables.data.errors import DataError, listing
from trainables.data.frames import FrameRule, FrameSignature, frame_signature
from trainables.data.imageio import centre_crop_mask, read_gray_with_depth, read_mask_file
from trainables.data.scan import ImageRecord, ScanResult, printable, scan_folder

# process(index, gray uint8[H, W], mask bool[H, W]) -> anything; runs in a worker thread.
Process = Callable[[int, np.ndarray, np.ndarray], Any]


@dataclass(frozen=True)
class Mismatch:
    """A mask whose size differs from its image; ``repaired`` when it was centre-cropped to fit."""

    image: str
    mask: str
    image_size: tuple[int, int]
    mask_size: tuple[int, int]
    repaired: bool

    def describe(self) -> str:
        (iw, ih), (mw, mh) = self.image_size, self.mask_size
        how = "centre-cropped to fit" if self.repaired else "cannot be aligned"
        return f"{printable(self.mask)} is {mw}x{mh} but {printable(self.image)} is {iw}x{ih} ({how})"


@dataclass
class Inspection:
    """What decoding one record found."""

    size: tuple[int, int] | None = None  # (w, h) of the image
    hash: np.ndarray | None = None
    frame: FrameSignature | None = None
    bits: int | None = None  # a 16/32-bit image: the bit depth its values were scaled from
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, error)
    mismatches: list[Mismatch] = field(default_factory=list)
    result: Any = None


@dataclass
class Audit:
    """A folder's report (the JSON contract), its scan, duplicate group ids per record, and the reasons
    the set is not usable (empty when it is)."""

    report: dict
    scan: ScanResult
    groups: np.ndarray
    problems: list[str]
    inspections: list[Inspection]

    @property
    def usable(self) -> bool:
        return not self.problems


def default_workers() -> int:
    """Decode threads: Pillow releases the GIL while decoding, so threads scale with cores."""
    return max(1, min(8, os.cpu_count() or 1))


def inspect_record(
    root: Path, record: ImageRecord, index: int = 0, process: Process | None = None
) -> Inspection:
    """Decode one image and its masks, check sizes, hash the image, then call ``process`` if all is well."""
    found = Inspection()
    try:
        gray, found.bits = read_gray_with_depth(root / record.path)
    except DataError as exc:
        found.unreadable.append((record.path, exc.reason))
        gray = None
    if gray is not None:
        found.size = (int(gray.shape[1]), int(gray.shape[0]))
        found.hash = image_hash(gray)
        found.frame = frame_signature(gray)
    mask = None if gray is None else np.zeros(gray.shape, dtype=bool)
    for rel in record.mask_paths:
        try:
            part = read_mask_file(root / rel)
        except DataError as exc:
            found.unreadable.append((rel, exc.reason))
            continue
        if mask is None:
            continue
        if part.shape != mask.shape:
            fitted = centre_crop_mask(part, mask.shape[1], mask.shape[0])
            mask_size = (int(part.shape[1]), int(part.shape[0]))
            found.mismatches.append(Mismatch(record.path, rel, found.size, mask_size, fitted is not None))
            if fitted is None:
                continue
            part = fitted
        mask |= part
    fatal = any(not m.repaired for m in found.mismatches)
    if process is not None and gray is not None and not found.unreadable and not fatal:
        found.result = process(index, gray, mask)
    return found


def inspect_records(
    root: str | Path,
    records: Sequence[ImageRecord],
    process: Process | None = None,
    workers: int | None = None,
    progress: bool = False,
    desc: str = "decode",
) -> list[Inspection]:
    """:func:`inspect_record` for every record in a thread pool, results in record order."""
    root = Path(root)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(records), desc=desc, unit="img")

    def one(item: tuple[int, ImageRecord]) -> Inspection:
        found = inspect_record(root, item[1], item[0], process)
        if bar is not None:
            bar.update(1)
        return found

    try:
        with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
            return list(pool.map(one, enumerate(records)))
    finally:
        if bar is not None:
            bar.close()


def _size_summary(sizes: list[tuple[int, int]]) -> dict[str, list[int]]:
    """Per-axis min / median / max of (w, h); zeros when no image could be read."""
    if not sizes:
        return {"min": [0, 0], "median": [0, 0], "max": [0, 0]}
    wh = np.array(sizes, dtype=np.int64)
    median = [round(float(v)) for v in np.median(wh, axis=0)]
    return {"min": wh.min(axis=0).tolist(), "median": median, "max": wh.max(axis=0).tolist()}


def build_report(
    scan: ScanResult, inspections: Sequence[Inspection], duplicate_groups: list[list[int]]
) -> dict:
    """The audit JSON object (exactly the contract's keys) from a scan and its inspections."""
    records = scan.records
    groups = [sorted(records[i].path for i in g) for g in duplicate_groups]
    groups.sort()
    class_of = {r.path: r.class_name for r in records}
    cross = [g for g in groups if len({class_of[p] for p in g}) > 1]
    conflicting = sorted(p for g in cross for p in g)
    unreadable = sorted({(p, e) for found in inspections for p, e in found.unreadable})
    mismatches = sorted({(m.image, m.mask) for found in inspections for m in found.mismatches})
    wide = sorted((r.path, f.bits) for r, f in zip(records, inspections) if f.bits is not None)
    return {
        "root": scan.root,
        "images": scan.n_images,
        "classes": {c: scan.class_counts[c] for c in scan.classes},
        "multi_mask_images": scan.multi_mask_images,
        "orphan_masks": list(scan.orphan_masks),
        "missing_masks": list(scan.missing_masks),
        "unreadable": [{"path": p, "error": e} for p, e in unreadable],
        "size_mismatch": [{"image": i, "mask": m} for i, m in mismatches],
        "ignored_files": list(scan.ignored_files),
        "duplicate_groups": groups,
        "cross_class_duplicates": cross,
        "conflicting_labels": conflicting,
        "sixteen_bit_images": [{"path": p, "bits": b} for p, b in wide],
        "image_size": _size_summary([f.size for f in inspections if f.size is not None]),
    }


def find_problems(scan: ScanResult, inspections: Sequence[Inspection]) -> list[str]:
    """Why the set cannot be used as configured (empty list: usable), one line per kind of problem."""
    problems: list[str] = []
    unreadable = sorted({f"{printable(p)} ({e})" for f in inspections for p, e in f.unreadable})
    if unreadable:
        problems.append(f"{len(unreadable)} unreadable file(s): {listing(unreadable, 5)}")
    details = sorted(m.describe() for f in inspections for m in f.mismatches if not m.repaired)
    if details:
        problems.append(f"{len(details)} mask(s) whose size differs from the image: {listing(details, 5)}")
    if scan.missing_mask == "error" and scan.missing_masks:
        problems.append(
            f"{len(scan.missing_masks)} image(s) without a mask under missing_mask=error: "
            f"{listing([printable(m) for m in scan.missing_masks])} (use missing_mask empty or skip to "
            "accept them)"
        )
    used = {c: 0 for c in scan.classes}
    for r in scan.records:
        used[r.class_name] += 1
    empty = [c for c, n in used.items() if n == 0]
    if empty:
        problems.append(
            f"no usable image left in class(es) {', '.join(empty)} (missing_mask={scan.missing_mask})"
        )
    return problems


def frame_rule(dedup: DedupConfig) -> FrameRule | None:
    """The same-lesion frame rule of a ``data.dedup`` section (None when ``frames`` is off)."""
    if not dedup.frames:
        return None
    return FrameRule(
        appearance=dedup.appearance,
        structure=dedup.structure,
        appearance_floor=dedup.appearance_floor,
        strong_structure=dedup.strong_structure,
        neighbours=dedup.neighbours,
    )


def find_groups(
    inspections: Sequence[Inspection],
    dedup: DedupConfig,
    workers: int | None = None,
    progress: bool = False,
) -> list[list[int]]:
    """Duplicate groups of decoded records: hash copies plus, unless off, same-lesion frames."""
    return group_duplicates(
        [f.hash for f in inspections],
        threshold=dedup.hash_bits,
        signatures=[f.frame for f in inspections],
        rule=frame_rule(dedup),
        workers=workers or default_workers(),
        progress=progress,
    )


def run_audit(
    root: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    missing_mask: str = "error",
    workers: int | None = None,
    progress: bool = False,
    process: Process | None = None,
    scan: ScanResult | None = None,
    dedup: DedupConfig | None = None,
) -> Audit:
    """Scan (leniently), decode every record once in a thread pool, find duplicates, and report.

    ``conflicting_labels`` in the report lists every image of a duplicate group that spans classes
    (contradictory labels); ``data.conflicting_labels: drop`` leaves them out of training and splits.
    """
    if scan is None:
        scan = scan_folder(root, classes, missing_mask, strict=False)
    inspections = inspect_records(scan.root, scan.records, process, workers, progress, desc="audit")
    dup = find_groups(inspections, dedup or DedupConfig(), workers, progress)
    return Audit(
        report=build_report(scan, inspections, dup),
        scan=scan,
        groups=group_ids(len(scan.records), dup),
        problems=find_problems(scan, inspections),
        inspections=inspections,
    )


def audit_folder(
    root: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    missing_mask: str = "error",
    workers: int | None = None,
    progress: bool = False,
) -> dict:
    """The audit report of a folder (the ``audit --json`` object). Raises :class:`DataError` only for
    problems that prevent reading the folder at all (no root, missing or empty class folders)."""
    return run_audit(root, classes, missing_mask, workers, progress).report


def _section(title: str, items: Sequence[str], limit: int = 10) -> list[str]:
    lines = [f"  {title}: {len(items)}"]
    lines += [f"    {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"    ... and {len(items) - limit} more (see --json)")
    return lines


def _sixteen_bit_section(report: dict) -> list[str]:
    """The 16-bit images and the depth each was scaled from; a set whose images got several depths says so."""
    wide = report.get("sixteen_bit_images", [])
    depths = sorted({w["bits"] for w in wide})
    title = "16-bit images (scaled to 8 bits from the depth shown, see README)"
    if len(depths) > 1:
        title += f"; several depths: {', '.join(map(str, depths))} bits"
    return _section(title, [f"{printable(w['path'])}: {w['bits']} bits" for w in wide])


def format_report(report: dict, problems: Sequence[str] = (), mismatch_notes: Sequence[str] = ()) -> str:
    """A readable terminal summary of an audit report, ending with the verdict (``problems``).

    File names that hold a newline or another non-printable character are shown with ``repr``.
    """
    counts = ", ".join(f"{c} {n}" for c, n in report["classes"].items())
    size = report["image_size"]
    show = printable
    lines = [
        f"Audit of {show(report['root'])}",
        f"  images: {report['images']} ({counts})",
        "  image size (w x h): min {}x{}, median {}x{}, max {}x{}".format(
            *size["min"], *size["median"], *size["max"]
        ),
    ]
    lines += _section("images with several lesion masks (merged)", [*map(show, report["multi_mask_images"])])
    lines += _section("orphan masks (no image; not used)", [*map(show, report["orphan_masks"])])
    lines += _section("images without a mask", [*map(show, report["missing_masks"])])
    lines += _section("unreadable files", [f"{show(u['path'])}: {u['error']}" for u in report["unreadable"]])
    mismatches = list(mismatch_notes) or [
        f"{show(m['mask'])} vs {show(m['image'])}" for m in report["size_mismatch"]
    ]
    lines += _section("mask/image size mismatches", mismatches)
    lines += _section("ignored files", [*map(show, report["ignored_files"])])
    cross = {tuple(g) for g in report["cross_class_duplicates"]}
    dups = [
        ("[cross-class] " if tuple(g) in cross else "") + " = ".join(map(show, g))
        for g in report["duplicate_groups"]
    ]
    lines += _section(f"duplicate groups ({len(cross)} across classes)", dups)
    lines += _section(
        "images with conflicting labels (dropped unless data.conflicting_labels: keep)",
        [*map(show, report.get("conflicting_labels", []))],
    )
    lines += _sixteen_bit_section(report)
    if problems:
        lines.append("NOT USABLE:")
        lines += [f"  - {p}" for p in problems]
    else:
        warned = report["orphan_masks"] or report["size_mismatch"] or report["missing_masks"] or dups
        lines.append("usable" + (" (see warnings above)" if warned else ""))
    return "\n".join(lines)


def format_audit(audit: Audit) -> str:
    """:func:`format_report` of an :class:`Audit`, with the sizes of mismatched masks."""
    notes = sorted(m.describe() for f in audit.inspections for m in f.mismatches)
    return format_report(audit.report, audit.problems, notes)
