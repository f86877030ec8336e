"""Bringing the index back in line with the run directories, which are the source of truth.

`refresh_from_files` is the gentle one, safe while agents run: it takes in what other engines wrote
(Ray or SLURM tasks write only their run directory; a `wandb agent` elsewhere may share the home) and
never touches a live claim. `reindex` rebuilds the index from scratch (`scaling runs --reindex`): every
sweep's saved spec restores its queue and every run directory sets its row; it does not keep claims.
"""
from __future__ import annotations

import glob
import json
import os
import time

from scaling.runs.fence import is_result
from scaling.runs.files import RunDir, last_metrics_row, read_json
from scaling.runs.index import RunHome
from scaling.runs.records import STATUSES, IndexedRun


def refresh_from_files(home: RunHome, sweep_id: str | None = None) -> int:
    """Bring rows up to date with their run directories, for runs no agent holds a live lease on. A
    directory's finished result (complete, diverged, failed) becomes its row's; an `interrupted` one
    does for a row still pending; a run an engine holds gets its latest step as progress. A live claim
    is never touched and a complete result is never replaced by less. Returns the rows changed."""
    query = "SELECT * FROM runs WHERE status != 'skipped'" + (" AND sweep_id=?" if sweep_id else "")
    now = time.time()
    changes = {}
    for row in home.read(query, (sweep_id,) if sweep_id else ()):
        run = IndexedRun.from_row(row)
        if (run.lease_until or 0) > now or (run.status == "complete" and is_result(run.summary)):
            continue
        files = home.files(run.run_id)
        found = files.read_summary()
        status = (found or {}).get("status")
        if status in ("complete", "diverged", "failed") and (status != run.status or _moved(run.summary, found)):
            changes[run.run_id] = {"status": status, "summary": found}
        elif status == "interrupted" and run.status == "pending":
            changes[run.run_id] = {"status": status, "summary": found}
        elif run.status == "running" and run.lease_until is None and run.claimed_by:
            last = last_metrics_row(files.metrics)
            progress = last and {"step": last.get("step"), "steps": (run.plan or {}).get("steps"),
                                 "loss": last.get("loss"), "eval_loss": last.get("eval_loss")}
            if progress and progress != run.progress:
                changes[run.run_id] = {"progress": progress}
    if not changes:
        return 0
    with home.db() as conn:
        for run_id, change in changes.items():
            # Checked again inside the transaction: an agent may have claimed the run meanwhile.
            now = time.time()
            cur = conn.execute("SELECT status, summary, lease_until FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if cur is None or (cur["lease_until"] or 0) > now or (
                    cur["status"] == "complete" and is_result(json.loads(cur["summary"] or "null"))):
                continue
            if "progress" in change:
                conn.execute("UPDATE runs SET progress=?, updated=? WHERE run_id=?",
                             (json.dumps(change["progress"]), now, run_id))
            else:
                summary = change["summary"]
                # A finished run's own reason wins; a failed one keeps the index's if its summary has none.
                conn.execute("""UPDATE runs SET status=?, summary=?, lease_until=NULL, updated=?,
                                    reason=CASE WHEN ?='complete' THEN NULL ELSE COALESCE(?, reason) END
                                WHERE run_id=?""", (change["status"], json.dumps(summary), now, change["status"],
                                                    summary.get("reason"), run_id))
    return len(changes)


def reindex(home: RunHome) -> dict:
    """Rebuild the index from the files: each sweep's saved spec re-enumerates its queue (a sweep the
    index lost comes back with its pending and skipped points), then every run directory's own config
    and summary set its row. Rows whose directory is gone are reset (sweep runs go back to pending) or
    dropped. A run whose config.yaml or summary.json is damaged (not a mapping, an unknown status) is
    left out and named in `skipped`, with its row, if any, kept as it was. Run it while no agent is
    running: it does not preserve live claims."""
    counts = {"sweeps": 0, "runs": 0, "reset": 0, "dropped": 0, "skipped": []}
    for path in sorted(glob.glob(os.path.join(home.sweeps_dir, "*.json"))):
        saved = read_json(path)
        if not _is_saved_sweep(saved):
            counts["skipped"].append(f"sweep file {path}: not a saved sweep (sweep_id, spec, runs)")
            continue
        if home.sweep(saved["sweep_id"]) is None:
            home.register_sweep(saved["sweep_id"], saved.get("name"), saved["spec"], saved["runs"],
                                created=saved.get("created"))
            counts["sweeps"] += 1

    found, damaged = {}, set()
    for cfg_path in sorted(glob.glob(os.path.join(home.root, "*", "config.yaml"))):
        files = RunDir(os.path.dirname(cfg_path))
        read = _read_run(files)
        if isinstance(read, str):  # one damaged run is named and left out; the rest of the home is indexed
            counts["skipped"].append(f"run {files.run_id}: {read}")
            damaged.add(files.run_id)
        else:
            found[files.run_id] = read

    now = time.time()
    with home.db() as conn:
        for run_id, (record, summary) in found.items():
            config = record.get("config") or {}
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
            # A damaged run's row, if the index has one, is kept as it was: its directory is not gone.
            if row["run_id"] in found or row["run_id"] in damaged or row["status"] in ("pending", "skipped"):
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


def _read_run(files: RunDir) -> tuple[dict, dict | None] | str:
    """A run directory's record and summary (None: it has none yet), or why they cannot be indexed."""
    record = files.read_record()
    if record is None:
        return f"{files.config} is not a YAML mapping (unreadable or damaged); left out of the index"
    if not isinstance(record.get("config", {}), dict):
        return f"{files.config}: its config is not a mapping; left out of the index"
    summary = files.read_summary()
    if summary is None and os.path.exists(files.summary):
        return f"{files.summary} is not a JSON object (unreadable or damaged); left out of the index"
    if summary is not None and summary.get("status", "interrupted") not in STATUSES:
        return f"{files.summary}: status {summary.get('status')!r} is none of {', '.join(STATUSES)}; left out"
    return record, summary


def _is_saved_sweep(saved: dict | None) -> bool:
    return (saved is not None and isinstance(saved.get("sweep_id"), str) and isinstance(saved.get("spec"), dict)
            and isinstance(saved.get("runs"), list) and all(isinstance(r, dict) and "run_id" in r
                                                             for r in saved["runs"]))


def _moved(indexed: dict | None, found: dict) -> bool:
    """Whether a run directory's summary says more than its row: another session, step or result."""
    return indexed is None or any(indexed.get(k) != found.get(k) for k in ("status", "step", "eval_loss", "wall_s"))
