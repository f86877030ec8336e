"""The sweep queue over the index: agents claim runs one at a time under a lease, and an engine that
schedules for itself (a SLURM array with a task per point) takes every free run at once.

A claim is exactly-once because it is a read-then-write inside one `BEGIN IMMEDIATE` transaction
(`RunHome.db`): SQLite lets one writer at a time in, so two agents can never both see a run as free. A
claim holds a lease; the agent renews it while the run lives, and a run whose lease has lapsed (its agent
died) is free again.

Every claim raises the run's `attempts`, which is the claim's fencing token (`Fence`): renew and release
with a token act only while that attempt is the run's current claim, and `RunHome.owns` and
`RunHome.record_state` check it before anything of the run is written.
"""
from __future__ import annotations

import json
import time

from scaling.runs.index import RunHome
from scaling.runs.records import IndexedRun

# The one definition of a free run, which `claim` and `take_for_engine` both take from: never started,
# or left behind by its holder (interrupted, or still running under a lease nobody renewed). A run held by
# an engine (running with no lease) is not free: only the engine's own record of it ends the hold.
_LAPSED = "(lease_until IS NOT NULL AND lease_until < :now)"
FREE = (f"(status='pending' OR (status='interrupted' AND (lease_until IS NULL OR {_LAPSED}))"
        f" OR (status='running' AND {_LAPSED}))")
# Under an agent's claim, live or lapsed but not yet taken over: each is free by the time its lease lapses.
IN_FLIGHT = "(lease_until IS NOT NULL AND status IN ('running', 'interrupted'))"


def claim(home: RunHome, sweep_id: str, agent: str, lease_s: float, max_attempts: int = 3,
          among: list[str] | None = None) -> IndexedRun | None:
    """Take the next free run of a sweep for `agent`, or None. Runs left behind (interrupted, or running
    under a lapsed lease) go first: they have checkpoints to resume from. `among` limits the choice to
    those run ids (an agent filling a pack with runs of one shape)."""
    now = time.time()
    with home.db() as conn:
        # A run whose agents keep dying (out of memory, say) would otherwise kill every agent in turn.
        # (A graceful interruption, e.g. preemption, releases its claim and does not count here.)
        conn.execute(
            f"""UPDATE runs SET status='failed', lease_until=NULL, updated=:now,
                    reason='its agent died ' || attempts || ' times while running it (out of memory?)'
                WHERE sweep_id=:sweep AND status='running' AND {_LAPSED} AND attempts >= :max""",
            {"now": now, "sweep": sweep_id, "max": max_attempts})
        row = conn.execute(
            f"""SELECT * FROM runs WHERE sweep_id=:sweep AND {FREE}
                AND (:among IS NULL OR run_id IN (SELECT value FROM json_each(:among)))
                ORDER BY status='pending', seq, run_id LIMIT 1""",
            {"now": now, "sweep": sweep_id, "among": None if among is None else json.dumps(among)}).fetchone()
        if row is None:
            return None
        conn.execute(
            """UPDATE runs SET status='running', claimed_by=?, lease_until=?, attempts=attempts+1,
                   progress=NULL, updated=? WHERE run_id=?""",
            (agent, now + lease_s, now, row["run_id"]))
    return IndexedRun.from_row(row, resumed=row["status"] != "pending", attempts=row["attempts"] + 1,
                               status="running", claimed_by=agent)


def renew(home: RunHome, run_id: str, agent: str, lease_s: float, progress: dict | None = None,
          token: int | None = None) -> bool:
    """Extend the lease (and record the run's latest progress); False when the claim is no longer ours (it
    lapsed and another agent took it, so the row's token moved on)."""
    now = time.time()
    with home.db() as conn:
        cur = conn.execute(
            """UPDATE runs SET lease_until=?, progress=COALESCE(?, progress), updated=?
               WHERE run_id=? AND claimed_by=? AND lease_until IS NOT NULL AND (? IS NULL OR attempts=?)""",
            (now + lease_s, json.dumps(progress) if progress else None, now, run_id, agent, token, token))
        return cur.rowcount == 1


def release(home: RunHome, run_id: str, agent: str, status: str | None = None, reason: str | None = None,
            token: int | None = None) -> bool:
    """End a claim; optionally set the status (e.g. failed with a reason), else a run still `running` is
    left `interrupted`. The claimer's name stays on the row as a record of who ran it. With a token, only
    that attempt's live claim is ended."""
    with home.db() as conn:
        cur = conn.execute(
            """UPDATE runs SET lease_until=NULL, reason=COALESCE(?, reason), updated=?,
                   status=COALESCE(?, CASE WHEN status='running' THEN 'interrupted' ELSE status END)
               WHERE run_id=? AND claimed_by=? AND (? IS NULL OR (attempts=? AND lease_until IS NOT NULL))""",
            (reason, time.time(), status, run_id, agent, token, token))
        return cur.rowcount == 1


def count_in_flight(home: RunHome, sweep_id: str) -> int:
    """How many of a sweep's unfinished runs are under an agent's claim: live, or lapsed but not yet taken
    over (an agent killed while its trainer recorded `interrupted` leaves such a claim behind). Each
    becomes claimable when its lease lapses, so an agent finding nothing free waits for them. Runs an
    engine took (`take_for_engine`) have no lease and are not counted: no agent will ever get them."""
    rows = home.read(f"SELECT COUNT(*) FROM runs WHERE sweep_id=? AND {IN_FLIGHT}", (sweep_id,))
    return rows[0][0] if rows else 0


# ---- runs taken by an engine that schedules for itself ------------------------------------------------
def take_for_engine(home: RunHome, sweep_id: str, holder: str) -> list[IndexedRun]:
    """Take every free run of a sweep for an engine that places and retries tasks itself (a SLURM array
    with a task per point): like `claim`, but all at once and with no lease, since no process stays
    behind to renew one and the tasks on the compute nodes never touch this index. Agents never claim
    such a run (it is `running` with no lease, so never free). The hold ends when the run's directory
    records a finished result (`rebuild.refresh_from_files`), with `release_engine_runs`, or with
    `rebuild.reindex`. Each returned row keeps the status it had before, so a failed submission can give
    it back."""
    now = time.time()
    with home.db() as conn:
        rows = conn.execute(f"SELECT * FROM runs WHERE sweep_id=:sweep AND {FREE} ORDER BY seq, run_id",
                            {"now": now, "sweep": sweep_id}).fetchall()
        conn.executemany(
            """UPDATE runs SET status='running', claimed_by=?, lease_until=NULL, attempts=attempts+1,
                   progress=NULL, updated=? WHERE run_id=?""", [(holder, now, r["run_id"]) for r in rows])
    return [IndexedRun.from_row(r, resumed=r["status"] != "pending", attempts=r["attempts"] + 1, claimed_by=holder)
            for r in rows]


def release_engine_runs(home: RunHome, holder: str, statuses: dict[str, str]) -> None:
    """Give back runs `holder` took with `take_for_engine`, each with its earlier status (run id -> status)."""
    now = time.time()
    with home.db() as conn:
        conn.executemany(
            """UPDATE runs SET status=?, attempts=attempts-1, updated=?
               WHERE run_id=? AND claimed_by=? AND status='running' AND lease_until IS NULL""",
            [(status, now, run_id, holder) for run_id, status in statuses.items()])


# ---- runs given another chance -----------------------------------------------------------------------
RETRYABLE = ("failed", "diverged")


def retry(home: RunHome, sweep_id: str, statuses: tuple[str, ...] = ("failed",)) -> list[str]:
    """Requeue a sweep's runs that ended with one of `statuses` (a full disk, a crash whose cause is gone),
    with their attempts counted from zero again; returns their run ids. A run that has recorded a state
    goes back as `interrupted` (claimed first, resuming from its checkpoints), one that never started as
    `pending`. Runs under a live claim are left alone."""
    unknown = [s for s in statuses if s not in RETRYABLE]
    if unknown:
        raise ValueError(f"cannot retry status {unknown[0]!r}")
    now = time.time()
    with home.db() as conn:
        rows = conn.execute(
            """SELECT run_id FROM runs WHERE sweep_id=:sweep AND status IN (SELECT value FROM json_each(:statuses))
               AND (lease_until IS NULL OR lease_until < :now) ORDER BY seq, run_id""",
            {"sweep": sweep_id, "statuses": json.dumps(list(statuses)), "now": now}).fetchall()
        conn.executemany(
            """UPDATE runs SET status=CASE WHEN summary IS NOT NULL THEN 'interrupted' ELSE 'pending' END,
                   attempts=0, lease_until=NULL, reason=NULL, progress=NULL, updated=? WHERE run_id=?""",
            [(now, r["run_id"]) for r in rows])
    return [r["run_id"] for r in rows]
