"""Read an offline W&B run file (``run-<id>.wandb``) with wandb's own protobuf ``Record`` messages.

wandb 0.31 writes the run as a LevelDB-style log (a 7-byte ``:W&B`` header, then 32 KiB blocks of
records, each ``crc32 u32 | length u16 | type u8 | data``) and has no Python reader any more, so the
tests parse the framing here and decode each record with ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> list[bytes]:
    if not data.startswith(HEADER):
        raise ValueError("not a W&B run file (bad header)")
    out, pending, pos = [], b"", len(HEADER)
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if pos + 7 + length > len(data):  # a record still being written
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            out.append(pending + chunk)
            pending = b""
    return out


def _records(path: Path, timeout_s: float) -> list[Any]:
    """The run file's records once it holds the run's ``exit`` record.

    ``run.finish()`` returns once the service has the run's last record, and then only *informs* the
    service that the run is done (``inform_finish``): the file is flushed and closed after that, so a
    reader right after ``finish()`` can find the header alone (seen once in CI under load). Waits up to
    ``timeout_s`` for the complete file.
    """
    from wandb.proto import wandb_internal_pb2

    deadline = time.monotonic() + timeout_s
    while True:
        records = []
        for payload in _payloads(path.read_bytes()):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            records.append(record)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{path}: no exit record after {timeout_s:.0f} s (the run never finished)")
        time.sleep(0.5)


def read_run(path: str | Path, timeout_s: float = 120.0) -> dict[str, Any]:
    """``{"id", "group", "project", "config": {key: value}, "history": [{key: value}, ...]}`` of a
    finished run (waits up to ``timeout_s`` for the service to flush the file, :func:`_records`)."""
    run: dict[str, Any] = {"config": {}, "history": []}
    for record in _records(Path(path), timeout_s):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(id=record.run.run_id, group=record.run.run_group, project=record.run.project)
            _config(run["config"], record.run.config.update)
        elif kind == "config":
            _config(run["config"], record.config.update)
        elif kind == "history":
            run["history"].append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            )
    return run


def _config(config: dict[str, Any], items: Any) -> None:
    for item in items:
        key = item.key or ".".join(item.nested_key)
        value = json.loads(item.value_json)
        config[key] = value.get("value", value) if isinstance(value, dict) and "value" in value else value
