"""The run home: one directory per run (the source of truth, see files.py) and an SQLite index over
them: the sweeps, each run's row, and the fencing checks every write of a run's state goes through.

    <home>/scaling.db            sweeps, runs, status, claims (an index: rebuildable from the files)
    <home>/<run_id>/             the run directory (files.py)
    <home>/.sweeps/<id>.json     each registered sweep's spec and planned rows, so the index can be
                                 rebuilt with its queue (rebuild.py)

The index is also the queue agents claim runs from (queue.py). A claim carries a fencing token, its
attempt number (`attempts`, raised by every claim). Whoever writes a run's state (metrics, checkpoints,
the summary, its row here) presents the token first; once another agent has taken the run over the old
token no longer matches, so an agent that was suspended past its lease wakes up to find it can write
nothing (`Fence`, `RunHome.owns`, `RunHome.record_state`).

Commands that only read (`scaling runs`, `sweep status`, ...) open the index read-only and never create
it, so they work on a read-only home and leave no scaling.db behind where none was.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from urllib.parse import quote

from scaling.config import HOME_INDEX, reserved_run_id
from scaling.errors import UsageError
from scaling.runs.files import RunDir, StorageError, raise_storage_error, write_atomic
from scaling.runs.records import Fence, IndexedRun

DEFAULT_HOME = "runs"

SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    sweep_id   TEXT PRIMARY KEY,
    name       TEXT,
    spec       TEXT NOT NULL,
    created    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    sweep_id    TEXT,
    status      TEXT NOT NULL,
    config      TEXT NOT NULL,
    summary     TEXT,
    reason      TEXT,
    claimed_by  TEXT,
    lease_until REAL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    updated     REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_sweep ON runs (sweep_id, status);
"""

# Columns added after the first schema; added in place so an existing home keeps working.
_ADDED_COLUMNS = {
    "plan": "TEXT",        # N, D, C, steps as planned at sweep creation (for status and ETA)
    "progress": "TEXT",    # the live run's last step/loss, written with each heartbeat
    "seq": "INTEGER",      # position in the sweep's enumeration: the order agents take runs in
}


def resolve_home(home: str | None = None) -> str:
    return os.path.abspath(home or os.environ.get("SCALING_HOME") or DEFAULT_HOME)


# SQLite's words for a storage fault (as opposed to a bug in a query).
_SQLITE_STORAGE = ("readonly", "read-only", "unable to open", "disk is full", "disk i/o error")


class RunHome:
    """A run home with its index: paths, the SQLite connection, run and sweep rows, fencing checks. The
    queue (queue.py) and the rebuild from files (rebuild.py) are functions over it."""

    def __init__(self, home: str | None = None):
        self.root = resolve_home(home)
        self._migrated = False

    @classmethod
    def of(cls, home: RunHome | str | None) -> RunHome:
        """A RunHome from a path, None (the default home) or a RunHome itself."""
        return home if isinstance(home, RunHome) else cls(home)

    def run_dir(self, run_id: str) -> str:
        """The run's folder; refused for a name the home keeps for itself (its index, its dot-folders)."""
        why = reserved_run_id(run_id)
        if why:
            raise UsageError(f"run_id={run_id}: {why}")
        return os.path.join(self.root, run_id)

    def files(self, run_id: str) -> RunDir:
        return RunDir(self.run_dir(run_id))

    @property
    def db_path(self) -> str:
        return os.path.join(self.root, HOME_INDEX)

    @property
    def sweeps_dir(self) -> str:
        return os.path.join(self.root, ".sweeps")

    def check_folder(self) -> None:
        """Refuse a home that is a file or lies under one, in one line (os.makedirs would say less)."""
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise StorageError(f"run home {self.root} is a file, not a folder (use --home DIR)")
        probe = os.path.dirname(self.root)
        while probe and not os.path.exists(probe):
            probe = os.path.dirname(probe) if os.path.dirname(probe) != probe else ""
        if probe and not os.path.isdir(probe):
            raise StorageError(f"run home {self.root} lies under {probe}, which is a file (use --home DIR)")

    def check_writable(self) -> None:
        """Refuse, before any work, a home that cannot be written: a file, under a file, or read-only."""
        self.check_folder()
        probe = self.root
        while not os.path.exists(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        if not os.access(probe, os.W_OK):
            raise StorageError(f"run home {self.root} is read-only ({probe} cannot be written)")

    def make(self) -> None:
        """Create the home folder (for a writer), or say in one line why it cannot be."""
        self.check_folder()
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as err:
            raise_storage_error(err, f"cannot create the run home {self.root}")
            raise

    @contextmanager
    def db(self):
        """A short write transaction. WAL lets readers go on while one agent writes; the busy timeout
        makes concurrent agents wait their turn instead of failing.

        WAL needs shared memory, so every process must be on one host. Agents on several hosts sharing a
        home on a network file system with working POSIX locks (Lustre with flock, GPFS; not most NFS)
        need SCALING_DB_JOURNAL=delete in every process's environment from the sweep's creation on."""
        self.check_writable()
        self.make()
        try:
            with self._transaction() as conn:
                yield conn
        except sqlite3.OperationalError as err:
            if any(word in str(err).lower() for word in _SQLITE_STORAGE):
                raise StorageError(f"cannot write the index {self.db_path}: {err}") from None
            raise

    @contextmanager
    def _transaction(self):
        conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA journal_mode={_journal_mode()}")
            conn.execute("PRAGMA busy_timeout=60000")
            if not self._migrated:
                conn.executescript(SCHEMA)
                have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
                for column, kind in _ADDED_COLUMNS.items():
                    if column not in have:
                        try:
                            conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
                        except sqlite3.OperationalError:  # another process added it meanwhile
                            pass
                self._migrated = True
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def read(self, query: str, args: tuple = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query; none when there is no index yet (nothing is created). A home that
        cannot be written (a read-only mount, another user's files) is read as an immutable snapshot."""
        self.check_folder()
        if not os.path.exists(self.db_path):
            return []
        try:
            return self._read(query, args, "mode=ro")
        except sqlite3.OperationalError as err:
            if "no such table" in str(err):  # created by a process that died before its first write
                return []
            if not any(word in str(err).lower() for word in _SQLITE_STORAGE):
                raise
            first = err
        # A read-only mount without WAL's shared-memory file: read the file as it stands.
        try:
            return self._read(query, args, "immutable=1")
        except sqlite3.OperationalError:
            raise StorageError(f"cannot read the index {self.db_path}: {first}") from None

    def _read(self, query: str, args: tuple, mode: str) -> list[sqlite3.Row]:
        conn = sqlite3.connect(f"file:{quote(self.db_path)}?{mode}", uri=True, timeout=60, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout=60000")
            return conn.execute(query, args).fetchall()
        finally:
            conn.close()

    def indexed_run(self, run_id: str) -> IndexedRun | None:
        rows = self.read("SELECT * FROM runs WHERE run_id=?", (run_id,))
        return IndexedRun.from_row(rows[0]) if rows else None

    # ---- sweeps ------------------------------------------------------------------------------------
    def register_sweep(self, sweep_id: str, name: str, spec: dict, runs: list[dict],
                       created: float | None = None) -> None:
        """One transaction: the sweep and all its runs appear together or not at all.
        Each run: {run_id, status (pending|skipped), config, plan, reason}. The rows are saved beside
        the spec so that `reindex` restores the queue without re-planning it, and its creation time
        (`created`: the saved one, so a rebuilt index keeps the sweeps' order and elapsed clocks)."""
        now = time.time() if created is None else float(created)
        with self.db() as conn:
            conn.execute("INSERT INTO sweeps (sweep_id, name, spec, created) VALUES (?, ?, ?, ?)",
                         (sweep_id, name, json.dumps(spec), now))
            conn.executemany(
                """INSERT INTO runs (run_id, sweep_id, status, config, plan, reason, seq, updated)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                [(r["run_id"], sweep_id, r["status"], json.dumps(r["config"]), json.dumps(r.get("plan")),
                  r.get("reason"), i, now) for i, r in enumerate(runs)],
            )
            # Written inside the transaction so a failure here registers nothing either.
            os.makedirs(self.sweeps_dir, exist_ok=True)
            write_atomic(os.path.join(self.sweeps_dir, f"{sweep_id}.json"),
                         json.dumps({"sweep_id": sweep_id, "name": name, "created": now, "spec": spec,
                                     "runs": runs}, indent=1))

    def add_run(self, sweep_id: str, run_id: str, config: dict, plan: dict, after: str) -> None:
        """Queue one more pending run in a sweep, ordered right after run `after`: a cooldown branch,
        seeded by its parent while the parent trains. A run already indexed is left as it is."""
        with self.db() as conn:
            parent = conn.execute("SELECT seq FROM runs WHERE run_id=?", (after,)).fetchone()
            conn.execute(
                """INSERT INTO runs (run_id, sweep_id, status, config, plan, seq, updated)
                   VALUES (?, ?, 'pending', ?, ?, ?, ?) ON CONFLICT(run_id) DO NOTHING""",
                (run_id, sweep_id, json.dumps(config), json.dumps(plan), parent["seq"] if parent else None,
                 time.time()))

    def sweep(self, sweep_id: str) -> dict | None:
        rows = self.read("SELECT * FROM sweeps WHERE sweep_id = ?", (sweep_id,))
        if not rows:
            return None
        row = rows[0]
        return {"sweep_id": row["sweep_id"], "name": row["name"], "spec": json.loads(row["spec"]),
                "created": row["created"]}

    def sweeps(self) -> list[dict]:
        return [dict(r) for r in self.read("SELECT sweep_id, name, created FROM sweeps ORDER BY created")]

    def sweep_runs(self, sweep_id: str) -> list[IndexedRun]:
        rows = self.read("SELECT * FROM runs WHERE sweep_id = ? ORDER BY seq, run_id", (sweep_id,))
        return [IndexedRun.from_row(r) for r in rows]

    def sweep_counts(self, sweep_id: str) -> dict:
        rows = self.read("SELECT status, COUNT(*) FROM runs WHERE sweep_id=? GROUP BY status", (sweep_id,))
        return {status: n for status, n in rows}

    # ---- fencing -----------------------------------------------------------------------------------
    def owns(self, run_id: str, fence: Fence | None) -> bool:
        """Whether `fence` is still the run's current claim (always, for a run trained without one)."""
        if fence is None:
            return True
        rows = self.read("SELECT attempts, claimed_by, lease_until FROM runs WHERE run_id=?", (run_id,))
        return bool(rows) and _current(rows[0], fence)

    def record_state(self, run_id: str, status: str, config: dict, summary: dict | None = None, *,
                     sweep_id: str | None = None, reason: str | None = None, fence: Fence | None = None,
                     write=None) -> bool:
        """Set a run's state: `write()` (the summary file) and its row, together, in one transaction that
        first checks the fence, so a writer whose claim was taken over writes nothing. False then."""
        with self.db() as conn:
            if fence is not None:
                row = conn.execute("SELECT attempts, claimed_by, lease_until FROM runs WHERE run_id=?",
                                   (run_id,)).fetchone()
                if row is None or not _current(row, fence):
                    return False
            if write is not None:
                write()
            conn.execute(
                """INSERT INTO runs (run_id, sweep_id, status, config, summary, reason, updated)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(run_id) DO UPDATE SET status=excluded.status,
                       summary=excluded.summary, reason=excluded.reason,
                       sweep_id=COALESCE(runs.sweep_id, excluded.sweep_id), updated=excluded.updated""",
                (run_id, sweep_id, status, json.dumps(config), json.dumps(summary) if summary else None, reason,
                 time.time()))
        return True

def _current(row, fence: Fence) -> bool:
    return row["attempts"] == fence.token and row["claimed_by"] == fence.agent and row["lease_until"] is not None


def _journal_mode() -> str:
    mode = os.environ.get("SCALING_DB_JOURNAL", "wal").lower()
    if mode not in ("wal", "delete", "truncate"):
        raise UsageError(f"SCALING_DB_JOURNAL={mode!r}: allowed wal, delete, truncate")
    return mode
