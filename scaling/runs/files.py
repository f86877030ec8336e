"""The run directory's files: their names, and every read and write of them, in one place.

    <home>/<run_id>/config.yaml    the resolved config, shape, corpus and code (atomic)
    <home>/<run_id>/metrics.jsonl  one JSON object per logged step (append-only; a torn tail is healed)
    <home>/<run_id>/summary.json   status and final figures (atomic)
    <home>/<run_id>/evals.json     evaluations of the finished run's final checkpoint (`scaling eval`; atomic)
    <home>/<run_id>/checkpoints/   orbax
    <home>/<run_id>/wandb/         the W&B run's files
    <home>/<run_id>/train.log      an isolated trainer's output
    <home>/<run_id>/.home          the real path of the home that trains it (another home is refused)

Writes that replace a file go through `write_atomic`, so a crash leaves the old file or the new one.
"""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from dataclasses import dataclass

import yaml

from scaling.errors import UsageError
from scaling.safeyaml import safe_load

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
EVALS = "evals.json"
CHECKPOINTS = "checkpoints"
TRAIN_LOG = "train.log"
HOME_MARK = ".home"  # the real path of the run home whose trainer writes this directory


# errno values that mean the storage, not the program, is at fault: the user can act on them.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST,
                  errno.EISDIR, errno.ENAMETOOLONG, errno.EIO}


# The faults recognised in a message that carries no errno: a full or read-only disk, a quota.
_MESSAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class StorageError(UsageError):
    """The run home (or an output path) cannot be written or read: full, read-only, a file where a folder
    should be. One line for the user, exit code 2, like any other input they can fix."""


def storage_error(err: BaseException, what: str) -> StorageError | None:
    """A StorageError naming `what` when `err` (or an error it was raised from) is a storage fault."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
            where = f" ({err.filename})" if err.filename else ""
            return StorageError(f"{what}: {os.strerror(err.errno).lower()}{where}")
        # tensorstore (under orbax) reports the OS error in its message only, SQLite in its own words
        text = str(err)
        if "database or disk is full" in text:
            return StorageError(f"{what}: {os.strerror(errno.ENOSPC).lower()}")
        for code in _MESSAGE_ERRNOS:
            if os.strerror(code) in text or f"os_error_code='{code}'" in text:
                return StorageError(f"{what}: {os.strerror(code).lower()}")
        err = err.__cause__ or err.__context__
    return None


def raise_storage_error(err: BaseException, what: str) -> None:
    """Re-raise `err` as a one-line StorageError when it is a storage fault; return otherwise."""
    found = storage_error(err, what)
    if found is not None:
        raise found from err


def umask() -> int:
    """The process's umask, read without changing it (os.umask can only set it, racing other threads)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def write_atomic(path: str, text: str | bytes) -> None:
    """Readers see the old file or the new one, never half of either (write, fsync, rename). The new file
    gets the mode any other new file would (0666 less the umask), not mkstemp's private 0600.

    Raises:
        StorageError: the folder is missing, full or read-only (the old file is left as it was).
    """
    directory = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    except OSError as err:
        raise_storage_error(err, f"cannot write {path}")
        raise
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise_storage_error(err, f"cannot write {path}")
        raise


def jsonable(value):
    """A value JSON can hold: NaN and infinities as readable text, array scalars as Python numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "item"):
        return jsonable(value.item())
    return value


def read_json(path: str) -> dict | None:
    """A JSON object written by write_atomic, or None when it is missing, unreadable or not an object."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return None
    return data if isinstance(data, dict) else None


def read_yaml(path: str) -> dict | None:
    """A YAML mapping, or None when it is missing or unreadable."""
    try:
        with open(path) as fh:
            data = safe_load(fh)  # bounded: a config.yaml of aliases cannot expand to a billion values
    except (OSError, ValueError, yaml.YAMLError, RecursionError):  # ValueError: undecodable bytes
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
    def evals(self) -> str:
        return os.path.join(self.path, EVALS)

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.path, CHECKPOINTS)

    @property
    def train_log(self) -> str:
        return os.path.join(self.path, TRAIN_LOG)

    def bind_home(self) -> None:
        """Record that this directory is trained from its home (the folder its path names), and refuse a
        second home that reaches it through a link while the first still does: two trainers of one run
        would take each other's checkpoints for damaged ones and interleave their metrics. A home that
        was moved or renamed no longer reaches it, and the directory follows its new home."""
        ours = os.path.realpath(os.path.dirname(os.path.abspath(self.path)))
        mark = os.path.join(self.path, HOME_MARK)
        try:
            with open(mark) as fh:
                recorded = fh.read().strip()
        except (OSError, UnicodeDecodeError):
            recorded = ""
        if recorded == ours:
            return
        if recorded and os.path.realpath(os.path.join(recorded, self.run_id)) == os.path.realpath(self.path):
            raise UsageError(f"run {self.run_id}: its directory {os.path.realpath(self.path)} belongs to the run "
                             f"home {recorded}, reached from {ours} through a link; train it from that home, "
                             "or use another run_id")
        write_atomic(mark, ours + "\n")

    def read_record(self) -> dict | None:
        return read_yaml(self.config)

    def read_summary(self) -> dict | None:
        return read_json(self.summary)

    def read_metrics(self) -> list[dict]:
        return read_metrics(self.metrics)

    def read_evals(self) -> dict | None:
        return read_json(self.evals)

    def write_record(self, record: dict) -> None:
        write_atomic(self.config, yaml.safe_dump(record, sort_keys=False))

    def write_summary(self, summary: dict) -> None:
        write_atomic(self.summary, json.dumps({k: jsonable(v) for k, v in summary.items()}, indent=2) + "\n")


class LocalTracker:
    """The run directory as a Tracker: config.yaml, metrics.jsonl (append-only), summary.json (atomic)."""

    def __init__(self, run_dir: str | RunDir):
        self.dir = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        self._metrics = None

    def start(self, config: dict) -> None:
        os.makedirs(self.dir.path, exist_ok=True)
        self.dir.bind_home()  # before anything of the run is written
        self.dir.write_record(config)
        heal_torn_tail(self.dir.metrics)
        self._metrics = open(self.dir.metrics, "a")

    def log(self, metrics: dict) -> None:
        self._metrics.write(json.dumps({k: jsonable(v) for k, v in metrics.items()}) + "\n")
        self._metrics.flush()

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None

    def finish(self, summary: dict) -> None:
        self.close()
        self.dir.write_summary(summary)
