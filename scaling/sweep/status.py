"""A sweep's progress: counts by status, the runs in flight, and an ETA."""
from __future__ import annotations

import time
from dataclasses import dataclass

from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.runs import IndexedRun, RunHome
from scaling.sweep.register import require_sweep
from scaling.train.branches import branch_plans
from scaling.train.plan import plan_run

FINISHED = ("complete", "diverged", "failed")


@dataclass(frozen=True)
class SweepStatus:
    sweep_id: str
    name: str | None
    created: float
    total: int
    counts: dict[str, int]
    current: tuple[IndexedRun, ...]  # runs under a live lease
    agents: int  # agents holding live leases
    stale: tuple[str, ...]  # running, but the lease lapsed: the next agent takes them over
    eta_s: float | None
    problems: tuple[IndexedRun, ...]  # failed or skipped, with the reason
    held: tuple[IndexedRun, ...] = ()  # running as tasks of an engine that holds them without a lease (SLURM)
    # Cooldown branches not in the index yet: each is queued when its parent reaches its cut point.
    to_come: tuple[str, ...] = ()
    # When the last run ended, once nothing is left to run or in flight: the sweep's clock stops there.
    ended: float | None = None

    @property
    def finished(self) -> int:
        return sum(self.counts.get(k, 0) for k in FINISHED)

    @property
    def runnable(self) -> int:
        return self.total - self.counts.get("skipped", 0) + len(self.to_come)

    def elapsed_s(self, now: float) -> float:
        """From creation to now, or to the end of the last run of a sweep with nothing left to run."""
        return (self.ended if self.ended is not None else now) - self.created


def sweep_status(home: RunHome | str | None, sweep_id: str) -> SweepStatus:
    """Counts by status, the runs in flight, and an ETA: the remaining runs' planned model FLOPs at the
    seconds per FLOP this sweep's finished runs took, shared among the runs in flight (under live leases,
    or held by a SLURM array). Reads the index as it stands; `refresh_from_files` first brings in the
    runs other engines finished."""
    home = RunHome.of(home)
    info = require_sweep(home, sweep_id)
    runs = home.sweep_runs(sweep_id)
    now = time.time()
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    live = [r for r in runs if r.status == "running" and r.lease_until and r.lease_until > now]
    held = [r for r in runs if r.status == "running" and r.lease_until is None and r.claimed_by]
    agents = {r.claimed_by for r in live}
    done = [r for r in runs if r.status in ("complete", "diverged") and r.summary]
    spent = sum(r.summary.get("wall_s") or 0 for r in done)
    work = sum(r.summary.get("flops_model") or 0 for r in done)
    remaining = sum(_remaining_flops(r, r in live or r in held) for r in runs)
    to_come = _branches_to_come(runs)
    remaining += sum(to_come.values())
    # Runs in flight at once: one per agent, several per Ray driver, one per SLURM task.
    eta = remaining * spent / work / max(1, len(live) + len(held)) if work > 0 else None
    stale = tuple(r.run_id for r in runs if r.status == "running" and r not in live and r not in held)
    problems = tuple(r for r in runs if r.status in ("failed", "skipped"))
    over = [r.updated for r in runs if r.status in FINISHED]
    open_runs = [r for r in runs if r.status not in FINISHED and r.status != "skipped"]
    ended = max(over) if over and not open_runs and not to_come else None
    return SweepStatus(sweep_id, info["name"], info["created"], len(runs), counts, tuple(live), len(agents), stale,
                       eta, problems, tuple(held), tuple(to_come), ended)


def _remaining_flops(run: IndexedRun, live: bool) -> float:
    planned = (run.plan or {}).get("flops_model") or 0
    if live:
        p = run.progress or {}
        return planned * (1 - p.get("step", 0) / max(1, p.get("steps") or 1))
    return planned if run.status in ("pending", "interrupted", "running") else 0.0


def _branches_to_come(runs: list[IndexedRun]) -> dict[str, float]:
    """The cooldown branches of this sweep's runs that are not in the index yet, with the model FLOPs each
    still costs: its decay only, as it starts from its parent's checkpoint (a branch shorter than the
    warmup trains from scratch)."""
    known = {r.run_id for r in runs}
    out: dict[str, float] = {}
    for r in runs:
        if not r.config.get("cooldowns") or r.status in ("failed", "skipped", "diverged"):
            continue  # a parent that will not reach its cuts seeds no branch
        try:
            plan = plan_run(RunConfig.from_dict(r.config))
        except UsageError:
            continue
        for branch in branch_plans(plan):
            if branch.run_id not in known:
                start = branch.stable_end if branch.config.branch_of else 0
                out[branch.run_id] = branch.flops_model * (1 - start / branch.steps)
    return out
