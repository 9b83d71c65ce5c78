"""Read the records of a W&B offline run file (`run-*.wandb`) back, for tests.

wandb 0.31 no longer ships a Python reader, so this follows the file format: a 7-byte header
(":W&B", magic, version), then LevelDB-log records in 32 KiB blocks (crc32c, length, type:
1 full, 2 first, 3 middle, 4 last), each payload a protobuf `Record`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7


def records(path: Path) -> list:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out, pos, pending = [], HEADER, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer: padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        pending += payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def summary_of(path: Path) -> dict:
    """Run metadata, the logged history rows and the final summary of one offline run file."""
    run, history, summary, config = {}, [], {}, {}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run = {"id": r.run_id, "group": r.run_group, "job_type": r.job_type, "tags": list(r.tags),
                   "name": r.display_name, "project": r.project}
            config.update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            config.update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.summary.update})
    return {"run": run, "history": history, "summary": summary, "config": config}
