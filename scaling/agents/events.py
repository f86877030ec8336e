"""What an agent reports to its display: one record per event, and the result of each run it ran."""
from __future__ import annotations

from dataclasses import dataclass

from scaling.runs import IndexedRun, RunHome


@dataclass(frozen=True)
class RunResult:
    run_id: str
    status: str  # the run's status, or "lost" when another agent took the run over
    reason: str | None
    summary: dict | None
    resumed: bool
    wall_s: float
    startup_s: float | None  # claim to first logged step: compilation and setup


def sweep_done(home: RunHome, sweep_id: str) -> tuple[int, int]:
    """(runs ended, runs to run) of a sweep, as Claimed and Finished report them; skipped points count
    in neither."""
    counts = home.sweep_counts(sweep_id)
    done = sum(counts.get(s, 0) for s in ("complete", "diverged", "failed"))
    return done, sum(n for s, n in counts.items() if s != "skipped")


@dataclass(frozen=True)
class Claimed:
    run: IndexedRun
    done: int
    total: int


@dataclass(frozen=True)
class RunProgress:
    run_id: str
    step: int | None
    steps: int | None
    loss: float | None
    eval_loss: float | None
    tokens_per_s: float | None


@dataclass(frozen=True)
class Finished:
    result: RunResult
    done: int
    total: int


@dataclass(frozen=True)
class Waiting:
    running: int  # runs other agents hold


@dataclass(frozen=True)
class Stopped:
    reason: str


Event = Claimed | RunProgress | Finished | Waiting | Stopped
