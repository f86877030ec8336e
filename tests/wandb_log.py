"""A reader of W&B's offline transaction log (`.wandb`), so tests can check what W&B itself recorded
before, or without, `wandb sync`. Test-only: the workbench never reads W&B's internal format."""
from __future__ import annotations

import glob
import json
import os


def read_offline_run(path: str) -> dict:
    """What an offline W&B run recorded: {"config", "summary", "history", "group", "name", "id",
    "artifacts" (name, type, metadata, the files of its manifest), "stats" (system-metrics samples)}.

    Reads the run's `.wandb` transaction log (W&B's header, then LevelDB-log framed protobuf
    `Record`s) so a run can be checked before, or without, `wandb sync`."""
    from wandb.proto import wandb_internal_pb2 as pb

    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "**", "*.wandb"), recursive=True))
        if not found:
            raise FileNotFoundError(f"no .wandb file under {path}")
        path = found[-1]
    with open(path, "rb") as fh:
        blob = fh.read()
    if blob[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    block, pos, pending, payloads = 32768, 7, b"", []
    while pos + 7 <= len(blob):
        room = block - pos % block
        if room < 7:  # block trailer too small for a header: skip the padding
            pos += room
            continue
        length = int.from_bytes(blob[pos + 4:pos + 6], "little")
        kind = blob[pos + 6]
        chunk = blob[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == 1:  # FULL
            payloads.append(chunk)
        elif kind == 2:  # FIRST
            pending = chunk
        elif kind == 3:  # MIDDLE
            pending += chunk
        elif kind == 4:  # LAST
            payloads.append(pending + chunk)
            pending = b""
    out = {"config": {}, "summary": {}, "history": [], "group": None, "name": None, "id": None, "artifacts": [],
           "stats": 0}
    for payload in payloads:
        record = pb.Record()
        try:
            record.ParseFromString(payload)
        except Exception:  # a torn tail from a crash
            continue
        which = record.WhichOneof("record_type")
        if which == "run":
            out.update(group=record.run.run_group, name=record.run.display_name, id=record.run.run_id)
            items = record.run.config.update
        elif which == "config":
            items = record.config.update
        elif which == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in record.history.item})
            continue
        elif which == "artifact":
            art = record.artifact
            out["artifacts"].append({"name": art.name, "type": art.type, "metadata": json.loads(art.metadata or "{}"),
                                     "files": sorted(e.path for e in art.manifest.contents),
                                     "local_paths": {e.path: e.local_path for e in art.manifest.contents}})
            continue
        elif which == "stats":
            out["stats"] += 1
            continue
        elif which == "summary":
            for i in record.summary.update:
                out["summary"][i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
            continue
        else:
            continue
        for i in items:
            value = json.loads(i.value_json)
            out["config"][i.key] = value.get("value", value) if isinstance(value, dict) else value
    return out
