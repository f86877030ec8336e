"""The run directory's files: their names, and every read and write of them, in one place.

    <home>/<run_id>/config.yaml    the resolved config, shape, corpus and code (atomic)
    <home>/<run_id>/metrics.jsonl  one JSON object per logged step (append-only; a torn tail is healed)
    <home>/<run_id>/summary.json   status and final figures (atomic)
    <home>/<run_id>/checkpoints/   orbax
    <home>/<run_id>/wandb/         the W&B run's files
    <home>/<run_id>/train.log      an isolated trainer's output

Writes that replace a file go through `write_atomic`, so a crash leaves the old file or the new one.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass

import yaml

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
TRAIN_LOG = "train.log"


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


def jsonable(value):
    """A value JSON can hold: NaN and infinities as readable text, array scalars as Python numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "item"):
        return jsonable(value.item())
    return value


def read_json(path: str) -> dict | None:
    """A JSON file written by write_atomic, or None when it is missing or unreadable."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def read_yaml(path: str) -> dict | None:
    """A YAML mapping, or None when it is missing or unreadable."""
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


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


def last_metrics_row(path: str) -> dict | None:
    """The last complete JSON line of a growing metrics file, reading only its tail."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            lines = fh.read().split(b"\n")
    except OSError:
        return None
    for line in reversed(lines[:-1] if lines and lines[-1] else lines):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def last_text_line(path: str, limit: int = 300) -> str:
    """The last non-empty line of a log, for a one-line failure reason."""
    try:
        with open(path, errors="replace") as fh:
            lines = [line.strip() for line in fh if line.strip()]
        return lines[-1][:limit] if lines else "(no output)"
    except OSError:
        return "(no log)"


def heal_torn_tail(path: str) -> None:
    """End a file with a newline: a crash can leave half a line, and appending after it would glue two
    records together."""
    if os.path.exists(path) and os.path.getsize(path):
        with open(path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")


@dataclass(frozen=True)
class RunDir:
    """One run's directory and the paths of its files."""

    path: str

    @property
    def run_id(self) -> str:
        return os.path.basename(self.path)

    @property
    def config(self) -> str:
        return os.path.join(self.path, CONFIG)

    @property
    def metrics(self) -> str:
        return os.path.join(self.path, METRICS)

    @property
    def summary(self) -> str:
        return os.path.join(self.path, SUMMARY)

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.path, CHECKPOINTS)

    @property
    def train_log(self) -> str:
        return os.path.join(self.path, TRAIN_LOG)

    def read_record(self) -> dict | None:
        return read_yaml(self.config)

    def read_summary(self) -> dict | None:
        return read_json(self.summary)

    def read_metrics(self) -> list[dict]:
        return read_metrics(self.metrics)


class LocalTracker:
    """The run directory as a Tracker: config.yaml, metrics.jsonl (append-only), summary.json (atomic)."""

    def __init__(self, run_dir: str | RunDir):
        self.dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self._metrics = None

    def start(self, config: dict) -> None:
        os.makedirs(self.dir.path, exist_ok=True)
        write_atomic(self.dir.config, yaml.safe_dump(config, sort_keys=False))
        heal_torn_tail(self.dir.metrics)
        self._metrics = open(self.dir.metrics, "a")

    def log(self, metrics: dict) -> None:
        self._metrics.write(json.dumps({k: jsonable(v) for k, v in metrics.items()}) + "\n")
        self._metrics.flush()

    def finish(self, summary: dict) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        text = json.dumps({k: jsonable(v) for k, v in summary.items()}, indent=2) + "\n"
        write_atomic(self.dir.summary, text)
