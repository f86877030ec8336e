"""Run tracking: a small Tracker interface and two back ends used together — the run directory (the
source of truth) and Weights & Biases (offline unless an API key is set)."""
from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Protocol

import yaml


class Tracker(Protocol):
    def start(self, config: dict) -> None: ...
    def log(self, metrics: dict) -> None: ...
    def finish(self, summary: dict) -> None: ...


def write_atomic(path: str, text: str) -> None:
    """Readers see the old file or the new one, never half of either (write, fsync, rename)."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them readable instead of invalid
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


def read_json(path: str) -> dict | None:
    """A JSON file written by write_atomic, or None when it is missing or unreadable."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def read_metrics(path: str) -> list[dict]:
    """Rows of metrics.jsonl; a torn last line (a crash mid-write) is skipped, not fatal."""
    rows = []
    try:
        with open(path) as fh:
            for line in fh:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except FileNotFoundError:
        pass
    return rows


class LocalTracker:
    """config.yaml, metrics.jsonl (append-only) and summary.json (atomic) in the run directory."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self._metrics = None

    def start(self, config: dict) -> None:
        write_atomic(os.path.join(self.run_dir, "config.yaml"), yaml.safe_dump(config, sort_keys=False))
        path = os.path.join(self.run_dir, "metrics.jsonl")
        self._heal_torn_tail(path)
        self._metrics = open(path, "a")

    @staticmethod
    def _heal_torn_tail(path: str) -> None:
        # A crash can leave half a line; appending after it would glue two records together.
        if os.path.exists(path) and os.path.getsize(path):
            with open(path, "rb+") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")

    def log(self, metrics: dict) -> None:
        self._metrics.write(json.dumps({k: _jsonable(v) for k, v in metrics.items()}) + "\n")
        self._metrics.flush()

    def finish(self, summary: dict) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        text = json.dumps({k: _jsonable(v) for k, v in summary.items()}, indent=2) + "\n"
        write_atomic(os.path.join(self.run_dir, "summary.json"), text)


def wandb_config(record: dict) -> dict:
    """Flatten a run record (config.yaml's content) for W&B: N, D, C and the shape at the top level so
    the UI can group, filter and plot by them."""
    resolved, shape = record.get("resolved", {}), record.get("resolved", {}).get("shape", {})
    out = {k: v for k, v in record.get("config", {}).items() if v is not None}
    out.update({
        "N": shape.get("params"), "N_nonembed": shape.get("params_nonembed"), "D": resolved.get("tokens"),
        "C": resolved.get("flops"), "C_model": resolved.get("flops_model"),
        "corpus_fingerprint": record.get("corpus", {}).get("corpus_fingerprint"),
    })
    out.update({k: resolved.get(k) for k in ("steps", "batch_size", "lr", "warmup_steps", "epochs")})
    out.update({k: shape.get(k) for k in ("d_model", "n_layers", "n_heads", "d_ff", "vocab_size", "head_dim")})
    return out


def wandb_mode(setting: str) -> str | None:
    """'auto' is online with an API key (env or netrc login) and offline without; 'off' disables W&B."""
    if setting == "off" or os.environ.get("WANDB_MODE") == "disabled":
        return None
    if setting in ("offline", "online"):
        return setting
    if os.environ.get("WANDB_MODE") in ("offline", "online"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


class WandbTracker:
    """One W&B run per training run, files under <run_dir>/wandb. Charts use tokens as the x-axis by
    default; flops is logged with every row so any chart can switch its x-axis to it."""

    def __init__(self, run_dir: str, *, mode: str, project: str, run_id: str, name: str, group: str | None,
                 tags: list[str] | None = None):
        self.run_dir, self.mode, self.project = run_dir, mode, project
        self.run_id, self.name, self.group, self.tags = run_id, name, group, tags or []
        self.run = None

    def start(self, config: dict) -> None:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=self.project, id=self.run_id, name=self.name, group=self.group, tags=self.tags,
            config=wandb_config(config), dir=self.run_dir, mode=self.mode, resume="allow", job_type="train",
            settings=wandb.Settings(console="off", x_disable_stats=True),
        )
        for axis in ("tokens", "flops", "step"):
            self.run.define_metric(axis, hidden=False)
        self.run.define_metric("train/*", step_metric="tokens")
        self.run.define_metric("eval/*", step_metric="tokens")
        self.run.define_metric("eval/loss", step_metric="tokens", summary="min")

    def log(self, metrics: dict) -> None:
        row = {}
        for key, value in metrics.items():
            if key in ("step", "tokens", "flops", "wall_s"):
                row[key] = value
            elif key.startswith("eval_"):
                row["eval/" + key[5:]] = value
            else:
                row["train/" + key] = value
        self.run.log(row, step=int(metrics["step"]))

    def finish(self, summary: dict) -> None:
        if self.run is None:
            return
        for key, value in summary.items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                self.run.summary[key] = value
        self.run.finish(exit_code=0 if summary.get("status") == "complete" else 1)
        self.run = None


class Trackers:
    """Fan-out to several back ends; the local one goes first so it is written even if W&B fails."""

    def __init__(self, *trackers):
        self.trackers = list(trackers)

    def start(self, config: dict) -> None:
        for t in self.trackers:
            t.start(config)

    def log(self, metrics: dict) -> None:
        for t in self.trackers:
            t.log(metrics)

    def finish(self, summary: dict) -> None:
        for t in self.trackers:
            t.finish(summary)


def read_offline_run(path: str) -> dict:
    """What an offline W&B run recorded: {"config", "summary", "history", "group", "name", "id"}.

    Reads the run's `.wandb` transaction log (W&B's header, then LevelDB-log framed protobuf
    `Record`s) so a run can be checked before, or without, `wandb sync`."""
    import glob as _glob

    from wandb.proto import wandb_internal_pb2 as pb

    if os.path.isdir(path):
        found = sorted(_glob.glob(os.path.join(path, "**", "*.wandb"), recursive=True))
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
    out = {"config": {}, "summary": {}, "history": [], "group": None, "name": None, "id": None}
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
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
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
