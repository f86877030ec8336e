"""The run home: one directory per run (the source of truth) and an SQLite index over them.

    <home>/scaling.db            sweeps, runs, status, claims (an index: rebuildable from run dirs)
    <home>/<run_id>/config.yaml  metrics.jsonl  summary.json  checkpoints/  wandb/
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager

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


def resolve_home(home: str | None = None) -> str:
    return os.path.abspath(home or os.environ.get("SCALING_HOME") or DEFAULT_HOME)


class RunHome:
    def __init__(self, home: str | None = None):
        self.root = resolve_home(home)

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.root, run_id)

    @property
    def db_path(self) -> str:
        return os.path.join(self.root, "scaling.db")

    @contextmanager
    def db(self):
        """A short transaction. WAL lets readers go on while one agent writes; the busy timeout makes
        concurrent agents wait their turn instead of failing."""
        os.makedirs(self.root, exist_ok=True)
        conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.executescript(SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def index_run(self, run_id: str, status: str, config: dict, summary: dict | None = None,
                  sweep_id: str | None = None) -> None:
        """Insert or refresh a run's row from what its directory says."""
        with self.db() as conn:
            conn.execute(
                """INSERT INTO runs (run_id, sweep_id, status, config, summary, updated)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT(run_id) DO UPDATE SET status=excluded.status, summary=excluded.summary,
                       sweep_id=COALESCE(runs.sweep_id, excluded.sweep_id), updated=excluded.updated""",
                (run_id, sweep_id, status, json.dumps(config), json.dumps(summary) if summary else None,
                 time.time()),
            )
