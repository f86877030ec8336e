"""The run home's typed records: the states a run goes through, an index row, and a claim's fence."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

# Terminal states are never claimed again; `interrupted` is resumable, `running` is resumable once its
# lease lapses.
TERMINAL = ("complete", "diverged", "failed", "skipped")
STATUSES = ("pending", "running", "interrupted") + TERMINAL


@dataclass(frozen=True)
class Fence:
    """A claim's fencing token: the agent that claimed the run and the attempt number its claim got."""

    agent: str
    token: int

    def __str__(self) -> str:
        return f"attempt {self.token} by {self.agent}"


class LeaseLost(Exception):
    """Another agent holds the run now (this agent's lease lapsed and the run was taken over): the holder
    of the old token must stop without writing anything of the run."""


@dataclass(frozen=True)
class IndexedRun:
    """One row of the index: a run's status, its config and plan, its claim and live progress."""

    run_id: str
    sweep_id: str | None
    status: str
    config: dict
    summary: dict | None = None
    plan: dict | None = None
    progress: dict | None = None
    reason: str | None = None
    claimed_by: str | None = None
    lease_until: float | None = None
    attempts: int = 0
    seq: int | None = None
    updated: float = 0.0
    resumed: bool = False  # set on a claim: the run was started before and resumes from a checkpoint

    @classmethod
    def from_row(cls, row: sqlite3.Row, **extra) -> IndexedRun:
        values = dict(row)
        for key in ("config", "summary", "plan", "progress"):
            values[key] = json.loads(values[key]) if values.get(key) else None
        values["config"] = values["config"] or {}
        values.update(extra)
        return cls(**values)
