"""Decoded, resized training arrays on disk, built once per content fingerprint and settings.

Where: ``$BUS_CACHE_DIR``, else ``$XDG_CACHE_HOME/bus-search``, else ``~/.cache/bus-search``; inside,
``datasets/<key>/`` holds ``images.npy``, ``masks.npy``, ``labels.npy``, ``groups.npy``,
``orig_sizes.npy`` and ``meta.json`` (paths, classes, settings, audit report), and ``synthetic/<key>/``
the generated synthetic set. Delete the folder, or call :func:`clear_cache`, to clear it.

Key: the data fingerprint (:func:`scan.data_fingerprint`: sha256 of the bytes of every image and mask
with its relative path, label and the class list) plus the preprocessing settings (``image_size``,
``resize``, ``classes``, ``missing_mask``, ``dedup``) and :data:`CACHE_VERSION`. Content, not
modification times, so another node or a fresh copy of the same files reuses the entry, and any changed
byte, file or setting makes a new one. An entry is written into a temporary folder and renamed into
place (atomic), under a lock file so that concurrent trials build it once. Arrays load memory-mapped
read-only, so processes on one machine share the pages.

A full disk is a :class:`DataError` before anything is decoded: the free space is checked against the
entry's size and the array files are allocated up front (``posix_fallocate``), since writing into a
sparse memory map on a full disk kills the process with SIGBUS. The temporary folder of a builder that
died (``kill -9``, SIGBUS) is named by host and pid; the next build of the cache removes it under the
lock.

An entry holds every usable image; ``data.conflicting_labels: drop`` (the default) then leaves out the
images of duplicate groups that span classes when the dataset is opened, and lists them in
``audit["dropped_conflicting"]`` (so in ``data.json`` and the reports) and on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainables.data.audit import run_audit
from trainables.data.config import DataConfig, SyntheticConfig
from trainables.data.errors import DataError
from trainables.data.resize import ResizeInfo, resize_pair
from trainables.data.scan import ScanResult, data_fingerprint, printable, scan_folder

CACHE_VERSION = 3  # 2: groups include same-lesion frames (data.dedup); 3: 16-bit scaled by bit depth
_ARRAYS = ("images", "masks", "labels", "groups", "orig_sizes")
SPACE_MARGIN = 64 * 2**20  # bytes left free beyond an entry's own size
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# .tmp-<entry key>-<host>-<pid>-<nonce> (before the host was recorded: .tmp-<key>-<pid>-<nonce>)
_TMP_NAME = re.compile(r"\.tmp-(?P<key>[0-9a-f]+)-(?:(?P<host>.+)-)?(?P<pid>\d+)-[0-9a-f]{8}")
_ENTRY_NAME = {"datasets": re.compile(r"[0-9a-f]{24}"), "synthetic": re.compile(r"[0-9a-f]{16}")}


def cache_dir() -> Path:
    """The cache root: ``$BUS_CACHE_DIR``, else ``$XDG_CACHE_HOME/bus-search``, else
    ``~/.cache/bus-search``."""
    if os.environ.get("BUS_CACHE_DIR"):
        return Path(os.environ["BUS_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "bus-search"
    return Path.home() / ".cache" / "bus-search"


def clear_cache() -> int:
    """Delete every cached dataset and synthetic set; returns how many entries were removed.

    Only what the cache writes is touched: folders named by a cache key that hold their ``meta.json`` /
    ``synthetic.json``, lock files no build holds, and temporary folders of builders that died; so a
    cache dir pointed at a folder with other files loses none of them, and a running build goes on.
    """
    from trainables.data.synthetic import MANIFEST_NAME

    removed = 0
    for sub, marker in (("datasets", "meta.json"), ("synthetic", MANIFEST_NAME)):
        folder = cache_dir() / sub
        if not folder.is_dir():
            continue
        remove_dead_temps(folder)
        for path in sorted(folder.iterdir()):
            if path.is_dir() and not path.is_symlink() and _ENTRY_NAME[sub].fullmatch(path.name):
                if (path / marker).is_file():
                    shutil.rmtree(path)
                    removed += 1
            elif path.suffix == ".lock" and _ENTRY_NAME[sub].fullmatch(path.stem):
                _remove_unheld_lock(path)
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when nothing else is left in it
    return removed


def _remove_unheld_lock(path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # a build holds it
        path.unlink(missing_ok=True)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: another user's live process
        return True
    return True


def remove_dead_temps(folder: Path) -> list[str]:
    """Remove the temporary folders in ``folder`` of builders on this host that are no longer running
    (killed, or died of a full disk); returns their names. Another host's, and this process's, are kept."""
    removed = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = _TMP_NAME.fullmatch(path.name)
        if not match or not path.is_dir() or match["host"] not in (None, _host()):
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    if removed:
        print(
            f"data: removed {len(removed)} temporary cache folder(s) of builds that died: "
            f"{', '.join(removed)}",
            file=sys.stderr,
        )
    return removed


@dataclass(eq=False)
class BUSDataset:
    """A decoded set: ``images``/``masks`` ``uint8[N, S, S]`` (masks 0/1), ``labels`` ``int64[N]``,
    ``paths`` relative to the root, ``groups`` ``int64[N]`` duplicate-group ids (singletons their own),
    ``orig_sizes`` ``int32[N, 2]`` (w, h). ``root`` is None for the built-in synthetic set."""

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    paths: list[str]
    class_names: tuple[str, ...]
    groups: np.ndarray
    orig_sizes: np.ndarray
    fingerprint: str
    root: str | None
    audit: dict
    resize: str = "letterbox"
    cache_path: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def class_counts(self) -> np.ndarray:
        """Images per class, ``int64[C]`` in class order."""
        return np.bincount(self.labels, minlength=len(self.class_names)).astype(np.int64)

    def resize_info(self, index: int) -> ResizeInfo:
        """How image ``index`` was placed in the working square (for :func:`resize.undo_resize`)."""
        w, h = (int(v) for v in self.orig_sizes[index])
        return ResizeInfo.compute(w, h, self.image_size, self.resize)

    def subset(self, indices: np.ndarray | list[int]) -> BUSDataset:
        """A new dataset with the given rows (arrays copied into memory)."""
        idx = np.asarray(indices, dtype=np.int64)
        return dataclasses.replace(
            self,
            images=np.ascontiguousarray(self.images[idx]),
            masks=np.ascontiguousarray(self.masks[idx]),
            labels=self.labels[idx].copy(),
            paths=[self.paths[i] for i in idx.tolist()],
            groups=self.groups[idx].copy(),
            orig_sizes=self.orig_sizes[idx].copy(),
            cache_path=None,
        )


def _digest(payload: object, length: int = 24) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:length]


def dataset_key(fingerprint: str, cfg: DataConfig) -> str:
    """Cache key of a dataset: data fingerprint + preprocessing settings + cache format version."""
    settings = {
        "version": CACHE_VERSION,
        "fingerprint": fingerprint,
        "image_size": cfg.image_size,
        "resize": cfg.resize,
        "classes": list(cfg.classes),
        "missing_mask": cfg.missing_mask,
        "dedup": dataclasses.asdict(cfg.dedup),
    }
    return _digest(settings)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (a no-op where ``fcntl`` is missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def synthetic_root(cfg: SyntheticConfig, progress: bool = False) -> Path:
    """The synthetic set for ``cfg`` in the cache, generated on first use.

    Keyed by its parameters and the generator's source, so a changed generator makes a new set.
    """
    from trainables.data import synthetic

    source = hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest()
    params = {"n_per_class": list(cfg.n_per_class), "size": cfg.size, "seed": cfg.seed, "generator": source}
    folder = cache_dir() / "synthetic" / _digest(params, 16)
    manifest = folder / synthetic.MANIFEST_NAME
    if manifest.is_file():
        return folder
    with file_lock(folder.parent / f"{folder.name}.lock"):
        if not manifest.is_file():
            synthetic.make_synthetic(
                folder, n_per_class=tuple(cfg.n_per_class), size=cfg.size, seed=cfg.seed, progress=progress
            )
    return folder


def _open_entry(entry: Path, scan: ScanResult, root: str | None) -> BUSDataset:
    meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in ("images", "masks")}
    arrays |= {name: np.load(entry / f"{name}.npy") for name in ("labels", "groups", "orig_sizes")}
    n = len(meta["paths"])
    if any(len(a) != n for a in arrays.values()) or meta["paths"] != [r.path for r in scan.records]:
        raise DataError(f"{entry}: cache entry is inconsistent")
    audit = dict(meta["audit"], root=scan.root)
    return BUSDataset(
        paths=list(meta["paths"]),
        class_names=tuple(meta["class_names"]),
        fingerprint=meta["fingerprint"],
        root=root,
        audit=audit,
        resize=meta["resize"],
        cache_path=str(entry),
        **arrays,
    )


def entry_bytes(n: int, size: int) -> int:
    """Disk bytes of a cache entry of ``n`` images at ``size`` px (arrays, headers, a generous meta.json)."""
    return 2 * n * size * size + 3 * 8 * n + 5 * 128 + 4096 + 2048 * n


def check_space(folder: Path, need: int) -> None:
    """Raise :class:`DataError` unless ``folder``'s disk has ``need`` bytes free plus :data:`SPACE_MARGIN`."""
    free = shutil.disk_usage(folder).free
    if free < need + SPACE_MARGIN:
        raise DataError(
            f"not enough disk space for the dataset cache in {folder}: the entry takes {_mib(need)} "
            f"(plus {_mib(SPACE_MARGIN)} kept free) and {_mib(free)} are free; free some space, or set "
            "BUS_CACHE_DIR to a folder on a larger disk"
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _disk_full(folder: Path, need: int, exc: OSError) -> DataError:
    return DataError(
        f"the disk of the dataset cache {folder} is full ({exc.strerror or exc}) while writing an entry of "
        f"{_mib(need)}; nothing was kept. Free some space, or set BUS_CACHE_DIR to a folder on a larger disk"
    )


def _allocated_memmap(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A ``uint8`` ``.npy`` memory map whose disk blocks are allocated now: writing into a sparse map
    on a full disk is SIGBUS, allocating is ``OSError(ENOSPC)``."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as handle:
            try:
                os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
    return array


def _build_entry(scan: ScanResult, fingerprint: str, cfg: DataConfig, entry: Path, progress: bool) -> None:
    """Decode, check, resize and store every record into ``entry`` (atomically); a full disk is a
    :class:`DataError`, before decoding when the free space does not suffice."""
    n, size = len(scan.records), cfg.image_size
    need = entry_bytes(n, size)
    check_space(entry.parent, need)
    tmp = entry.parent / f".tmp-{entry.name}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        out = {name: _allocated_memmap(tmp / f"{name}.npy", (n, size, size)) for name in ("images", "masks")}

        def process(i: int, gray: np.ndarray, mask: np.ndarray) -> None:
            out["images"][i], out["masks"][i], _ = resize_pair(gray, mask, size, cfg.resize)

        audit = run_audit(scan.root, scan=scan, process=process, progress=progress, dedup=cfg.dedup)
        if audit.problems:
            raise DataError(f"{scan.root}: the data cannot be used:\n  - " + "\n  - ".join(audit.problems))
        for array in out.values():
            array.flush()
        out.clear()
        np.save(tmp / "labels.npy", np.array([r.label for r in scan.records], dtype=np.int64))
        np.save(tmp / "groups.npy", audit.groups.astype(np.int64))
        np.save(
            tmp / "orig_sizes.npy",
            np.array([f.size for f in audit.inspections], dtype=np.int32).reshape(n, 2),
        )
        meta = {
            "version": CACHE_VERSION,
            "fingerprint": fingerprint,
            "paths": [r.path for r in scan.records],
            "class_names": list(scan.classes),
            "image_size": size,
            "resize": cfg.resize,
            "missing_mask": cfg.missing_mask,
            "dedup": dataclasses.asdict(cfg.dedup),
            "audit": audit.report,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry)
        os.rename(tmp, entry)
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise _disk_full(entry.parent, need, exc) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_dataset(cfg: DataConfig, progress: bool = True) -> BUSDataset:
    """The decoded dataset of ``cfg`` from the cache, building the entry on first use.

    ``cfg.root`` None means the built-in synthetic set (``cfg.synthetic``), generated into the cache and
    then read like any folder. Raises :class:`DataError` listing every problem when the data is unusable.
    """
    return drop_conflicting(_load_entry(cfg, progress), cfg.conflicting_labels)


def drop_conflicting(dataset: BUSDataset, policy: str) -> BUSDataset:
    """``dataset`` without the images whose duplicates carry another class (``policy`` "drop"), listed in
    ``audit["dropped_conflicting"]`` and on stderr; unchanged (with an empty list) for "keep"."""
    conflicting = set(dataset.audit.get("conflicting_labels") or [])
    dropped = sorted(p for p in dataset.paths if p in conflicting) if policy == "drop" else []
    audit = dict(dataset.audit, conflicting_policy=policy, dropped_conflicting=dropped)
    if not dropped:
        return dataclasses.replace(dataset, audit=audit)
    keep = [i for i, p in enumerate(dataset.paths) if p not in conflicting]
    left = np.bincount(dataset.labels[keep], minlength=len(dataset.class_names))
    empty = [c for c, n in zip(dataset.class_names, left) if n == 0]
    if empty:
        raise DataError(
            f"dropping the {len(dropped)} image(s) with conflicting labels leaves no image in class(es) "
            f"{', '.join(empty)}; set data.conflicting_labels: keep to train on them"
        )
    shown = ", ".join(map(printable, dropped[:5])) + (
        f" and {len(dropped) - 5} more" if len(dropped) > 5 else ""
    )
    print(
        f"data: dropped {len(dropped)} image(s) whose duplicates are filed under another class "
        f"(data.conflicting_labels: drop): {shown}",
        file=sys.stderr,
    )
    return dataclasses.replace(dataset.subset(keep), audit=audit, cache_path=dataset.cache_path)


def _load_entry(cfg: DataConfig, progress: bool) -> BUSDataset:
    """The cached entry of ``cfg`` (every usable image), built on first use."""
    root = Path(cfg.root) if cfg.root is not None else synthetic_root(cfg.synthetic, progress)
    scan = scan_folder(root, cfg.classes, cfg.missing_mask)
    fingerprint = data_fingerprint(scan)
    entry = cache_dir() / "datasets" / dataset_key(fingerprint, cfg)
    shown_root = scan.root if cfg.root is not None else None
    with contextlib.suppress(FileNotFoundError, ValueError, OSError, KeyError):
        return _open_entry(entry, scan, shown_root)
    with file_lock(entry.parent / f"{entry.name}.lock"):
        with contextlib.suppress(FileNotFoundError, ValueError, OSError, KeyError):
            return _open_entry(entry, scan, shown_root)  # built by another process meanwhile
        remove_dead_temps(entry.parent)  # a killed build's arrays would fill the disk for this one
        _build_entry(scan, fingerprint, cfg, entry, progress)
    return _open_entry(entry, scan, shown_root)
