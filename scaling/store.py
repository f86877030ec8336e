"""The run home: one directory per run (the source of truth) and an SQLite index over them, which is
also the queue that sweep agents claim runs from.

    <home>/scaling.db            sweeps, runs, status, claims (an index: rebuildable from the files)
    <home>/<run_id>/config.yaml  metrics.jsonl  summary.json  checkpoints/  wandb/
    <home>/.sweeps/<id>.json     each registered sweep's spec, so the index can be rebuilt with its queue

A claim is exactly-once because it is a read-then-write inside one `BEGIN IMMEDIATE` transaction: SQLite
lets one writer at a time in, so two agents can never both see a run as free. A claim holds a lease; the
agent renews it while the run lives, and a run whose lease has lapsed (its agent died) is free again.
"""
from __future__ import annotations

import glob
import json
import math
import os
import sqlite3
import time
from contextlib import contextmanager

DEFAULT_HOME = "runs"

# Terminal states are never claimed again; `interrupted` is resumable, `running` is resumable once its
# lease lapses.
TERMINAL = ("complete", "diverged", "failed", "skipped")
STATUSES = ("pending", "running", "interrupted") + TERMINAL

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


class RunHome:
    def __init__(self, home: str | None = None):
        self.root = resolve_home(home)
        self._migrated = False

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.root, run_id)

    @property
    def db_path(self) -> str:
        return os.path.join(self.root, "scaling.db")

    @property
    def sweeps_dir(self) -> str:
        return os.path.join(self.root, ".sweeps")

    @contextmanager
    def db(self):
        """A short transaction. WAL lets readers go on while one agent writes; the busy timeout makes
        concurrent agents wait their turn instead of failing.

        WAL needs shared memory, so every process must be on one host. Agents on several hosts sharing a
        home on a network file system with working POSIX locks (Lustre with flock, GPFS; not most NFS)
        need SCALING_DB_JOURNAL=delete in every process's environment from the sweep's creation on."""
        os.makedirs(self.root, exist_ok=True)
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

    # ---- sweeps ------------------------------------------------------------------------------------
    def register_sweep(self, sweep_id: str, name: str, spec: dict, runs: list[dict]) -> None:
        """One transaction: the sweep and all its runs appear together or not at all.
        Each run: {run_id, status (pending|skipped), config, plan, reason}."""
        from scaling.track import write_atomic

        now = time.time()
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
                         json.dumps({"sweep_id": sweep_id, "name": name, "created": now, "spec": spec}, indent=1))

    def sweep(self, sweep_id: str) -> dict | None:
        with self.db() as conn:
            row = conn.execute("SELECT * FROM sweeps WHERE sweep_id = ?", (sweep_id,)).fetchone()
        if row is None:
            return None
        return {"sweep_id": row["sweep_id"], "name": row["name"], "spec": json.loads(row["spec"]),
                "created": row["created"]}

    def sweeps(self) -> list[dict]:
        with self.db() as conn:
            rows = conn.execute("SELECT sweep_id, name, created FROM sweeps ORDER BY created").fetchall()
        return [dict(r) for r in rows]

    def sweep_runs(self, sweep_id: str) -> list[dict]:
        with self.db() as conn:
            rows = conn.execute("SELECT * FROM runs WHERE sweep_id = ? ORDER BY seq, run_id", (sweep_id,)).fetchall()
        return [_row(r) for r in rows]

    def sweep_counts(self, sweep_id: str) -> dict:
        with self.db() as conn:
            rows = conn.execute("SELECT status, COUNT(*) FROM runs WHERE sweep_id=? GROUP BY status", (sweep_id,))
            return {status: n for status, n in rows}

    # ---- claims ------------------------------------------------------------------------------------
    def claim(self, sweep_id: str, agent: str, lease_s: float, max_attempts: int = 3) -> dict | None:
        """Take the next free run of a sweep for `agent`, or None. Runs left behind (interrupted, or
        running under a lapsed lease) go first: they have checkpoints to resume from."""
        now = time.time()
        with self.db() as conn:
            # A run whose agents keep dying (out of memory, say) would otherwise kill every agent in turn.
            # (A graceful interruption, e.g. preemption, releases its claim and does not count here.)
            conn.execute(
                """UPDATE runs SET status='failed', lease_until=NULL, updated=?,
                       reason='its agent died ' || attempts || ' times while running it (out of memory?)'
                   WHERE sweep_id=? AND status='running' AND lease_until < ? AND attempts >= ?""",
                (now, sweep_id, now, max_attempts))
            row = conn.execute(
                """SELECT * FROM runs WHERE sweep_id=? AND (
                       status='pending'
                       OR (status='interrupted' AND (lease_until IS NULL OR lease_until < ?))
                       OR (status='running' AND lease_until < ?))
                   ORDER BY status='pending', seq, run_id LIMIT 1""",
                (sweep_id, now, now)).fetchone()
            if row is None:
                return None
            conn.execute(
                """UPDATE runs SET status='running', claimed_by=?, lease_until=?, attempts=attempts+1,
                       progress=NULL, updated=? WHERE run_id=?""",
                (agent, now + lease_s, now, row["run_id"]))
        out = _row(row)
        out["resumed"] = row["status"] != "pending"
        out["attempts"] = row["attempts"] + 1
        return out

    def renew(self, run_id: str, agent: str, lease_s: float, progress: dict | None = None) -> bool:
        """Extend the lease; False when the claim is no longer ours (it lapsed and another agent took it)."""
        now = time.time()
        with self.db() as conn:
            cur = conn.execute(
                """UPDATE runs SET lease_until=?, progress=COALESCE(?, progress), updated=?
                   WHERE run_id=? AND claimed_by=? AND lease_until IS NOT NULL""",
                (now + lease_s, json.dumps(progress) if progress else None, now, run_id, agent))
            return cur.rowcount == 1

    def release(self, run_id: str, agent: str, status: str | None = None, reason: str | None = None) -> bool:
        """End a claim; optionally set the status (e.g. failed with a reason). The claimer's name stays
        on the row as a record of who ran it."""
        with self.db() as conn:
            cur = conn.execute(
                """UPDATE runs SET lease_until=NULL, reason=COALESCE(?, reason), updated=?,
                       status=COALESCE(?, CASE WHEN status='running' THEN 'interrupted' ELSE status END)
                   WHERE run_id=? AND claimed_by=?""",
                (reason, time.time(), status, run_id, agent))
            return cur.rowcount == 1

    # ---- rebuilding the index ----------------------------------------------------------------------
    def reindex(self) -> dict:
        """Rebuild the index from the files: each sweep's saved spec re-enumerates its queue (a sweep the
        index lost comes back with its pending and skipped points), then every run directory's own
        config and summary set its row. Rows whose directory is gone are reset (sweep runs go back to
        pending) or dropped. Run it while no agent is running: it does not preserve live claims."""
        import yaml

        from scaling import track

        counts = {"sweeps": 0, "runs": 0, "reset": 0, "dropped": 0}
        for path in sorted(glob.glob(os.path.join(self.sweeps_dir, "*.json"))):
            try:
                with open(path) as fh:
                    saved = json.load(fh)
            except (OSError, ValueError):
                continue
            if self.sweep(saved["sweep_id"]) is None:
                from scaling import sweep as sweep_lib  # the queue is re-derived by the sweep engine

                runs = sweep_lib.plan_sweep_runs(sweep_lib.parse_spec(saved["spec"], where=path), saved["sweep_id"])
                self.register_sweep(saved["sweep_id"], saved.get("name"), saved["spec"], runs)
                counts["sweeps"] += 1

        found = {}
        for cfg_path in glob.glob(os.path.join(self.root, "*", "config.yaml")):
            run_id = os.path.basename(os.path.dirname(cfg_path))
            try:
                with open(cfg_path) as fh:
                    record = yaml.safe_load(fh) or {}
            except (OSError, yaml.YAMLError):
                continue
            summary = track.read_json(os.path.join(os.path.dirname(cfg_path), "summary.json"))
            found[run_id] = (record, summary)

        now = time.time()
        with self.db() as conn:
            for run_id, (record, summary) in found.items():
                config = record.get("config", {})
                # No summary: the run died before writing one; it can resume from its checkpoint.
                status = summary.get("status", "interrupted") if summary else "interrupted"
                conn.execute(
                    """INSERT INTO runs (run_id, sweep_id, status, config, summary, updated)
                       VALUES (?, ?, ?, ?, ?, ?)
                       ON CONFLICT(run_id) DO UPDATE SET status=excluded.status, summary=excluded.summary,
                           claimed_by=NULL, lease_until=NULL, updated=excluded.updated""",
                    (run_id, config.get("sweep"), status, json.dumps(config),
                     json.dumps(summary) if summary else None, now))
                counts["runs"] += 1
            for row in conn.execute("SELECT run_id, sweep_id, status FROM runs").fetchall():
                if row["run_id"] in found or row["status"] in ("pending", "skipped"):
                    continue
                if row["sweep_id"] is not None and conn.execute(
                        "SELECT 1 FROM sweeps WHERE sweep_id=?", (row["sweep_id"],)).fetchone():
                    conn.execute("""UPDATE runs SET status='pending', summary=NULL, claimed_by=NULL,
                                    lease_until=NULL, progress=NULL, updated=? WHERE run_id=?""",
                                 (now, row["run_id"]))
                    counts["reset"] += 1
                else:
                    conn.execute("DELETE FROM runs WHERE run_id=?", (row["run_id"],))
                    counts["dropped"] += 1
        return counts


def _journal_mode() -> str:
    mode = os.environ.get("SCALING_DB_JOURNAL", "wal").lower()
    if mode not in ("wal", "delete", "truncate"):
        from scaling.errors import UsageError

        raise UsageError(f"SCALING_DB_JOURNAL={mode!r}: allowed wal, delete, truncate")
    return mode


def _row(row: sqlite3.Row) -> dict:
    out = dict(row)
    for key in ("config", "summary", "plan", "progress"):
        if key in out:
            out[key] = json.loads(out[key]) if out[key] else None
    return out


# ---- the runs table ----------------------------------------------------------------------------------
# The columns `scaling fit` reads (DESIGN.md "The runs table"), then context useful for filtering.
RUN_COLUMNS = ["run_id", "sweep_id", "params", "params_nonembed", "tokens", "flops", "flops_model", "loss",
               "train_loss", "lr", "batch_size", "seq_len", "seed", "status", "epochs", "d_model", "n_layers",
               "n_heads", "steps", "wall_s", "tokens_per_s", "mfu", "corpus", "corpus_fingerprint"]


def runs_table(home, sweep_id: str | None = None, steps: bool = False):
    """One row per completed run (loss = final eval loss), or with `steps` one row per evaluated
    checkpoint (each run's eval steps from metrics.jsonl, the last being the final one), with `step`."""
    import pandas as pd

    from scaling.track import read_metrics

    home = home if isinstance(home, RunHome) else RunHome(home)
    query, args = "SELECT run_id, sweep_id, summary FROM runs WHERE status='complete'", ()
    if sweep_id is not None:
        query, args = query + " AND sweep_id=?", (sweep_id,)
    with home.db() as conn:
        found = conn.execute(query, args).fetchall()

    rows = []
    for r in found:
        s = json.loads(r["summary"]) if r["summary"] else {}
        if not _finite(s.get("eval_loss")):
            continue
        base = {c: s.get(c) for c in RUN_COLUMNS}
        base.update(run_id=r["run_id"], sweep_id=r["sweep_id"] or s.get("sweep_id"), loss=s["eval_loss"],
                    status="complete")
        if not steps:
            rows.append(base)
            continue
        flops_model_per_token = s["flops_model"] / s["tokens"] if s.get("tokens") else None
        evals = {}
        for m in read_metrics(os.path.join(home.run_dir(r["run_id"]), "metrics.jsonl")):
            # A resumed run may log a step twice; the later line is the one its checkpoint continued from.
            if "eval_loss" in m and _finite(m["eval_loss"]):
                evals[int(m["step"])] = m
        for step in sorted(evals):
            m = evals[step]
            row = dict(base, step=step, tokens=m["tokens"], flops=m["flops"], loss=m["eval_loss"],
                       train_loss=m.get("loss"), epochs=None)
            row["flops_model"] = flops_model_per_token * m["tokens"] if flops_model_per_token else None
            if s.get("tokens"):
                row["epochs"] = s.get("epochs", 0) * m["tokens"] / s["tokens"]
            rows.append(row)

    columns = RUN_COLUMNS[:2] + (["step"] if steps else []) + RUN_COLUMNS[2:]
    table = pd.DataFrame(rows, columns=columns)
    sort = ["sweep_id", "params", "flops"] + (["step"] if steps else [])
    return table.sort_values(sort, na_position="first", kind="stable").reset_index(drop=True)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
