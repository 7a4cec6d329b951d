"""Finding the images, their masks and their classes in a BUSI-format folder.

Layout: ``ROOT/<class>/<name>.<ext>`` with ``<name>_mask.png`` and, for more lesions,
``<name>_mask_1.png``, ``<name>_mask_2.png``, ... Class folders match the configured class names
case-insensitively. The scan reads directory entries only (no pixels), so it is fast on any set;
decoding, size checks and duplicate search happen in :mod:`audit` and :mod:`cache`.

A file name may hold any character Linux allows, newlines included: names are matched as whole strings,
and :func:`printable` shows an odd one as a Python string literal in reports and errors, so that one
name stays one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from trainables.data.config import DEFAULT_CLASSES
from trainables.data.errors import DataError, listing

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MISSING_MASK_POLICIES = ("error", "empty", "skip")
FINGERPRINT_VERSION = 1
# fullmatch + DOTALL: a newline in a name is a character like any other (``$`` alone would also match
# before a trailing newline, and ``.`` would stop at one)
_MASK_STEM = re.compile(r"(?P<base>.+)_mask(?:_(?P<index>\d+))?", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ImageRecord:
    """One image: path relative to the root (forward slashes), label index, class, its mask files."""

    path: str
    label: int
    class_name: str
    mask_paths: tuple[str, ...]


@dataclass
class ScanResult:
    """What a folder holds. ``records`` are the images to use, in class order then path order.

    ``missing_masks`` lists images without a mask whatever the policy: under ``empty`` they are records
    with no mask paths, under ``skip`` they are left out of ``records``, under ``error`` the scan raises
    unless it was called with ``strict=False`` (then they are records with no mask paths).
    """

    root: str
    classes: tuple[str, ...]
    missing_mask: str
    records: list[ImageRecord]
    class_counts: dict[str, int]
    class_folders: dict[str, str]
    orphan_masks: list[str] = field(default_factory=list)
    missing_masks: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)

    @property
    def multi_mask_images(self) -> list[str]:
        return sorted(r.path for r in self.records if len(r.mask_paths) > 1)

    @property
    def n_images(self) -> int:
        return sum(self.class_counts.values())


def printable(name: str) -> str:
    """``name`` as is, or as a quoted Python literal (``repr``) when it holds a newline or another
    non-printable character, so that printing it cannot break a line-oriented report."""
    return name if name.isprintable() else repr(name)


def _key(name: str) -> str:
    """Loose name key: Unicode NFC (macOS writes NFD) and case-folded."""
    return unicodedata.normalize("NFC", name).casefold()


def check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """The class list as a tuple; raises :class:`DataError` if empty or with names equal up to case."""
    names = tuple(classes)
    if not names or not all(isinstance(c, str) and c.strip() for c in names):
        raise DataError(f"classes: expected a non-empty list of non-empty names, got {list(names)!r}")
    keys = [_key(c) for c in names]
    if len(set(keys)) != len(keys):
        raise DataError(f"classes: names must differ (case-insensitively), got {list(names)}")
    return names


def _check_policy(missing_mask: str) -> None:
    if missing_mask not in MISSING_MASK_POLICIES:
        raise DataError(
            f"missing_mask: expected one of {', '.join(MISSING_MASK_POLICIES)}, got {missing_mask!r}"
        )


def _class_folders(root: Path, classes: tuple[str, ...], ignored: list[str]) -> dict[str, str]:
    """Map each class to its folder name; non-class entries of the root go to ``ignored``."""
    wanted = {_key(c): c for c in classes}
    found: dict[str, str] = {}
    seen_dirs: list[str] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        is_dir = entry.is_dir()
        if is_dir:
            seen_dirs.append(entry.name + "/")
        cls = wanted.get(_key(entry.name)) if is_dir and not entry.name.startswith(".") else None
        if cls is None:
            ignored.append(entry.name + ("/" if is_dir else ""))
            continue
        if cls in found:
            raise DataError(
                f"{root}: two folders match class {cls!r}: {found[cls]}/ and {entry.name}/ "
                "(class folders match case-insensitively)"
            )
        found[cls] = entry.name
    missing = [c for c in classes if c not in found]
    if missing:
        what = listing(seen_dirs) if seen_dirs else "no folders"
        raise DataError(
            f"{root}: missing class folder(s) {', '.join(missing)}; expected one folder per class "
            f"({', '.join(classes)}, any case), found: {what}"
        )
    return found


def _mask_index(stem: str) -> tuple[str, int] | None:
    match = _MASK_STEM.fullmatch(stem)
    if match is None:
        return None
    index = match.group("index")
    return match.group("base"), -1 if index is None else int(index)


def _scan_class(
    root: Path, folder: str, ignored: list[str]
) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Images, masks per image name, and orphan masks of one class folder (relative paths)."""
    images: dict[str, str] = {}  # stem -> relative path
    masks: list[tuple[str, int, str]] = []  # (base stem, index, relative path)
    for entry in sorted(os.scandir(root / folder), key=lambda e: e.name):
        rel = f"{folder}/{entry.name}"
        if entry.name.startswith("."):
            ignored.append(rel + ("/" if entry.is_dir() else ""))
            continue
        if entry.is_dir():
            ignored.append(rel + "/")
            continue
        stem, ext = os.path.splitext(entry.name)
        if ext.lower() not in IMAGE_EXTENSIONS or not entry.is_file():
            ignored.append(rel)
            continue
        mask = _mask_index(stem)
        if mask is not None:
            masks.append((mask[0], mask[1], rel))
        elif stem in images:
            raise DataError(
                f"{root / folder}: two images share the name {stem!r} ({printable(images[stem])}, "
                f"{printable(rel)}); "
                "their masks could not be told apart: rename one"
            )
        else:
            images[stem] = rel
    loose = {}
    for stem in images:
        loose.setdefault(_key(stem), []).append(stem)
    by_image: dict[str, list[tuple[int, str]]] = {}
    orphans: list[str] = []
    for base, index, rel in masks:
        owner = base if base in images else None
        if owner is None and len(loose.get(_key(base), [])) == 1:
            owner = loose[_key(base)][0]
        if owner is None:
            orphans.append(rel)
        else:
            by_image.setdefault(images[owner], []).append((index, rel))
    mask_map = {img: [rel for _, rel in sorted(items)] for img, items in by_image.items()}
    if not images:
        names = sorted(r for _, _, r in masks) + sorted(i for i in ignored if i.startswith(folder + "/"))
        found = listing([printable(name) for name in names])
        raise DataError(
            f"{root / folder}: class folder has no images (extensions {' '.join(IMAGE_EXTENSIONS)}, "
            f"any case); found: {found or 'nothing'}"
        )
    return sorted(images.values()), mask_map, orphans


def scan_folder(
    root: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    missing_mask: str = "error",
    strict: bool = True,
) -> ScanResult:
    """List the images, masks and classes of a BUSI-format folder without decoding any pixel.

    Raises :class:`DataError` for a missing root, missing or empty class folders, and (when ``strict``
    and ``missing_mask == "error"``) images without a mask, naming them.
    """
    classes = check_classes(classes)
    _check_policy(missing_mask)
    root_path = Path(root)
    if not root_path.is_dir():
        raise DataError(
            f"{root}: not a folder (expected ROOT/<class>/<image> with classes {', '.join(classes)})"
        )
    ignored: list[str] = []
    folders = _class_folders(root_path, classes, ignored)
    records: list[ImageRecord] = []
    counts: dict[str, int] = {}
    orphans: list[str] = []
    missing: list[str] = []
    for label, cls in enumerate(classes):
        images, mask_map, class_orphans = _scan_class(root_path, folders[cls], ignored)
        counts[cls] = len(images)
        orphans += class_orphans
        for rel in images:
            masks = tuple(mask_map.get(rel, ()))
            if not masks:
                missing.append(rel)
                if missing_mask == "skip":
                    continue
            records.append(ImageRecord(rel, label, cls, masks))
    if strict and missing_mask == "error" and missing:
        shown = listing([printable(m) for m in missing])
        raise DataError(
            f"{root}: {len(missing)} image(s) without a mask ({shown}); masks are named "
            "<image name>_mask.png; set missing_mask to 'empty' (no lesion) or 'skip' (leave them out)"
        )
    return ScanResult(
        root=os.path.abspath(root_path),
        classes=classes,
        missing_mask=missing_mask,
        records=records,
        class_counts=counts,
        class_folders=folders,
        orphan_masks=sorted(orphans),
        missing_masks=sorted(missing),
        ignored_files=sorted(ignored),
    )


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc})", path=path, reason=str(exc)) from exc
    return digest.hexdigest()


def data_fingerprint(scan: ScanResult, workers: int | None = None) -> str:
    """Content fingerprint of the data a scan selected: sha256 over each record's relative path, label,
    class list and the sha256 of the bytes of its image and mask files.

    Content, not modification times: a copy of the same files on another node, or a fresh checkout,
    gets the same fingerprint; any changed byte, added, removed or renamed file changes it.
    """
    root = Path(scan.root)
    files = sorted({p for r in scan.records for p in (r.path, *r.mask_paths)})
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = dict(zip(files, pool.map(lambda rel: _file_digest(root / rel), files)))
    payload = {
        "version": FINGERPRINT_VERSION,
        "classes": list(scan.classes),
        "records": [
            [r.path, r.label, digests[r.path], [[m, digests[m]] for m in r.mask_paths]] for r in scan.records
        ],
    }
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode("utf-8")).hexdigest()
