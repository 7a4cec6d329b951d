"""Read an offline W&B run file (``run-<id>.wandb``) with wandb's own protobuf ``Record`` messages.

wandb 0.31 writes the run as a LevelDB-style log (a 7-byte ``:W&B`` header, then 32 KiB blocks of
records, each ``crc32 u32 | length u16 | type u8 | data``) and has no Python reader any more, so the
tests parse the framing here and decode each record with ``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
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


def read_run(path: str | Path) -> dict[str, Any]:
    """``{"id", "group", "project", "config": {key: value}, "history": [{key: value}, ...]}``."""
    from wandb.proto import wandb_internal_pb2

    run: dict[str, Any] = {"config": {}, "history": []}
    for payload in _payloads(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
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
