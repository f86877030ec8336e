"""The local agent: claims runs of a sweep exactly once (SQLite transactions with leases), trains them,
renews the lease while a run lives, and hands a dead agent's run to the next one. Each claim's fencing
token goes with the run into the trainer, which checks it before every write: an agent that was suspended
past its lease (SIGSTOP, a frozen VM) finds its run taken over and stops without touching it."""
from __future__ import annotations

import os
import secrets
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from scaling import preempt
from scaling.agents.events import Claimed, Event, Finished, RunProgress, RunResult, Stopped, Waiting, sweep_done
from scaling.agents.isolated import train_isolated
from scaling.agents.lease import Claim, Heartbeat
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.runs import Fence, IndexedRun, LeaseLost, RunHome, StorageError, queue
from scaling.runs.files import storage_error
from scaling.sweep.register import require_sweep
from scaling.train import Interrupted, plan_run, train_run
from scaling.train.branches import Branching
from scaling.train.pack import default_pack_size, pack_config, pack_key, train_pack


def agent_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


@dataclass
class ClaimedRun:
    """A run this agent claimed, from the claim to its result: its lease, its latest progress (renewed
    with the lease), and how it ended."""
    row: IndexedRun
    claim: Claim
    steps: int | None
    step: int | None = None
    loss: float | None = None
    eval_loss: float | None = None
    t_first: float | None = None  # when its first step was logged
    status: str | None = None
    reason: str | None = None
    summary: dict | None = None

    @property
    def run_id(self) -> str:
        return self.row.run_id

    @property
    def fence(self) -> Fence:
        return self.claim.fence

    def progress(self) -> dict:
        """What the lease is renewed with (`sweep status` shows it)."""
        if self.t_first is None:
            return {"steps": self.steps}
        return {"step": self.step, "steps": self.steps, "loss": self.loss, "eval_loss": self.eval_loss}


class Agent:
    """Claims runs of one sweep and trains them until none is left (or `count` are done).

    In-process by default, so runs of one shape reuse compiled code (train.compiled_fns is cached by
    shape); `isolate` runs each in its own `python -m scaling.cli train` process instead (a crash or a
    leak stays in one run). While other agents hold live claims the agent waits (`wait`), so that the
    run of an agent that dies is taken over once its lease lapses; SIGTERM finishes the current run's
    checkpoint, releases it, and stops. `on_event(event)` feeds a display (see events.py)."""

    def __init__(self, home: RunHome | str | None, sweep_id: str, *, lease_s: float = 60.0, isolate: bool = False,
                 overrides: dict | None = None, wait: bool = True, max_attempts: int = 3,
                 max_failures_in_a_row: int = 3, on_event: Callable[[Event], None] | None = None, pack: int | None = 1):
        if not lease_s > 0:
            raise UsageError(f"--lease {lease_s}: must be positive seconds")
        if pack is not None and (pack < 1 or (pack > 1 and isolate)):
            raise UsageError(f"--pack {pack}: allowed 1 or more, and 1 with --isolate (a pack trains in-process)")
        self.pack = (1 if isolate else None) if pack is None else pack  # None: by size (train.plan)
        self.home = RunHome.of(home)
        require_sweep(self.home, sweep_id)
        RunConfig.from_dict({"d_model": 16, "tokens": 1, **(overrides or {})})  # refuse bad overrides now
        self.sweep_id, self.lease_s, self.isolate = sweep_id, lease_s, isolate
        self.overrides, self.wait, self.max_attempts = dict(overrides or {}), wait, max_attempts
        self.max_failures_in_a_row = max_failures_in_a_row
        self.on_event = on_event or (lambda event: None)
        self.name = agent_name()
        self.stop_requested = False
        # A full or read-only run home: every run after it would fail alike, so the agent stops with it.
        self.storage_fault: StorageError | None = None
        self.results: list[RunResult] = []

    def run(self, count: int | None = None) -> list[RunResult]:
        """Claim and train runs until none is free (waiting for other agents' live runs unless `wait`
        is off), `count` are done, too many fail in a row, or a stop is requested."""
        failures = 0
        with preempt.sigterm_requests_stop():
            while not self._should_stop() and (count is None or len(self.results) < count):
                row = queue.claim(self.home, self.sweep_id, self.name, self.lease_s, self.max_attempts)
                if row is None:
                    busy = queue.count_in_flight(self.home, self.sweep_id)
                    if self.wait and busy:
                        self.on_event(Waiting(busy))
                        time.sleep(min(5.0, self.lease_s / 2))
                        continue
                    break
                for result in self._run_pack(self._fill_pack(row)) if self.pack != 1 else [self._run_one(row)]:
                    self.results.append(result)
                    failures = failures + 1 if result.status == "failed" else 0
                if self.storage_fault is not None:
                    self.on_event(Stopped(str(self.storage_fault)))
                    break
                if failures >= self.max_failures_in_a_row:
                    self.on_event(Stopped(f"{failures} runs in a row failed"))
                    break
        return self.results

    def _should_stop(self) -> bool:
        self.stop_requested = self.stop_requested or preempt.stop_requested()
        return self.stop_requested

    def _counts(self) -> tuple[int, int]:
        return sweep_done(self.home, self.sweep_id)

    def _run_one(self, row: IndexedRun) -> RunResult:
        t_claim = time.perf_counter()
        beat = Heartbeat(self.home, self.lease_s, name=f"lease-{row.run_id}")
        run = self._claim(row, beat)
        beat.start()
        # Anything not caught below (SystemExit, KeyboardInterrupt outside the training loop) releases
        # the run as resumable; only an error of the run itself marks it failed.
        try:
            config = {**row.config, **self.overrides}
            if self.isolate:
                run.summary, run.reason = train_isolated(
                    self.home, row.run_id, config, run.fence,
                    should_stop=lambda: run.claim.lost or self._should_stop(),
                    on_metrics=lambda m: self._progress(run, m.get("step"), m.get("loss"), m.get("eval_loss"),
                                                        m.get("tokens_per_s")))
            else:
                run.summary = self._train_in_process(config, run)
            run.status = run.summary["status"] if run.summary else "failed"
        except LeaseLost:  # taken over while this agent was away: the run is the other agent's now
            run.claim.lost = True
        except StorageError as err:  # recorded `failed` by the trainer where the disk let it; `sweep retry`
            run.status, run.reason, self.storage_fault = "failed", str(err), err
        except UsageError as err:
            run.status, run.reason = "failed", str(err)
        except Exception as err:  # a bug or a broken environment: record it, keep the sweep going
            traceback.print_exc(file=sys.stderr)
            run.status, run.reason = "failed", f"{type(err).__name__}: {err}"
        finally:
            beat.stop()
            self._release(run)
        return self._finish(run, t_claim)

    def _claim(self, row: IndexedRun, beat: Heartbeat) -> ClaimedRun:
        """Announce a claimed run and put its lease on `beat` (started by the caller)."""
        self.on_event(Claimed(row, *self._counts()))
        run = ClaimedRun(row, beat.add(row.run_id, Fence(self.name, row.attempts)), (row.plan or {}).get("steps"))
        run.claim.progress = run.progress
        return run

    def _release(self, run: ClaimedRun) -> None:
        """End the claim. Failed runs record why; any other status was written by the trainer itself. A
        claim that was taken over is left alone (its token no longer matches, so this would change nothing)."""
        status = "failed" if run.status == "failed" else None
        try:
            released = run.claim.lost or queue.release(self.home, run.run_id, self.name, status, run.reason,
                                                       token=run.fence.token)
        except Exception as err:
            fault = storage_error(err, f"run {run.run_id}: its claim cannot be released")
            if fault is None:
                raise
            # The index is on the full disk too: the claim stays until its lease lapses, and the next
            # agent takes the run over and resumes it.
            self.storage_fault = self.storage_fault or fault
            return
        if not released:
            run.claim.lost = True

    def _finish(self, run: ClaimedRun, t_claim: float) -> RunResult:
        if run.status == "interrupted" and not run.claim.lost and self.storage_fault is None:
            self.stop_requested = True
        result = RunResult(run.run_id, "lost" if run.claim.lost else run.status, run.reason, run.summary,
                           run.row.resumed, time.perf_counter() - t_claim,
                           None if run.t_first is None else run.t_first - t_claim)
        self.on_event(Finished(result, *self._counts()))
        return result

    def _progress(self, run: ClaimedRun, step, loss, eval_loss, tokens_per_s) -> None:
        run.step, run.loss, run.eval_loss = step, loss, eval_loss
        if run.t_first is None:  # set last: the heartbeat renews with the fields above once it is set
            run.t_first = time.perf_counter()
        self.on_event(RunProgress(run.run_id, step, run.steps, loss, eval_loss, tokens_per_s))

    def _on_progress(self, run: ClaimedRun, p) -> None:
        """The trainer's progress callback: show it, and stop a run whose claim was taken over."""
        run.steps = p.steps
        self._progress(run, p.step, p.loss, p.eval_loss, p.tokens_per_s)
        if run.claim.lost:
            raise Interrupted("lease lost: another agent took this run")

    def _train_in_process(self, config: dict, run: ClaimedRun) -> dict:
        plan = plan_run(RunConfig.from_dict(config))
        fence = run.fence

        def on_progress(p) -> None:
            self._on_progress(run, p)

        return train_run(plan, self.home, on_progress=on_progress, fence=fence, on_checkpoint=Branching(queue=True))

    # ---- packs: runs of one shape trained together (train.pack) -------------------------------------
    def _fill_pack(self, first: IndexedRun) -> list[IndexedRun]:
        """`first` and up to pack - 1 more free runs that share its shape, batch size and optimizer."""
        key = pack_config({**first.config, **self.overrides})
        size = self.pack or default_pack_size(first.config, self.overrides)
        if key is None or size == 1:
            return [first]
        among = [r.run_id for r in self.home.sweep_runs(self.sweep_id)
                 if r.run_id != first.run_id and pack_config({**r.config, **self.overrides}) == key]
        rows = [first]
        while among and len(rows) < size:
            row = queue.claim(self.home, self.sweep_id, self.name, self.lease_s, self.max_attempts, among=among)
            if row is None:
                break
            rows.append(row)
            among.remove(row.run_id)
        return rows

    def _run_pack(self, rows: list[IndexedRun]) -> list[RunResult]:
        """Train claimed runs in packs of one pack_key; each keeps its own claim, lease and result."""
        if len(rows) == 1:
            return [self._run_one(rows[0])]
        t_claim = time.perf_counter()
        beat = Heartbeat(self.home, self.lease_s, name=f"lease-{rows[0].run_id}+{len(rows) - 1}")
        runs = {row.run_id: self._claim(row, beat) for row in rows}
        beat.start()
        groups: dict = {}
        for run in runs.values():
            try:
                plan = plan_run(RunConfig.from_dict({**run.row.config, **self.overrides}))
                alone = plan.layout().mesh.devices > 1  # a run over several devices trains by itself
                groups.setdefault(plan.run_id if alone else pack_key(plan), []).append(plan)
            except UsageError as err:
                run.status, run.reason = "failed", str(err)

        def on_progress(run_id: str, p) -> None:
            self._on_progress(runs[run_id], p)

        results = []
        try:
            for plans in groups.values():
                if self._should_stop():
                    break
                summaries = train_pack(plans, self.home, on_progress=on_progress,
                                       fences=[runs[p.run_id].fence for p in plans],
                                       on_checkpoint=Branching(queue=True))
                for plan, summary in zip(plans, summaries):
                    run = runs[plan.run_id]
                    if summary is None:  # taken over meanwhile
                        run.claim.lost = True
                    else:
                        run.summary, run.status = summary, summary["status"]
        except StorageError as err:
            # The disk, not the runs: each member recorded how it stopped where the disk let it (the one
            # whose write failed, and any whose last save failed too, `failed` with the cause; the others
            # `interrupted`), and keeps its checkpoints. Nothing here marks a member failed for good.
            self.storage_fault = err
        except Exception as err:  # a bug or a broken environment: record it on the runs it stopped
            traceback.print_exc(file=sys.stderr)
            for run in runs.values():
                if run.status is None:
                    run.status, run.reason = "failed", f"{type(err).__name__}: {err}"
        finally:  # SystemExit or KeyboardInterrupt too: every claim is released, resumable
            beat.stop()
            for run in runs.values():
                self._release(run)
                if run.status is None and self.storage_fault is not None:
                    run.status, run.reason = self._recorded(run.run_id), str(self.storage_fault)
                results.append(self._finish(run, t_claim))
        return results

    def _recorded(self, run_id: str) -> str:
        """The status a run's trainer left in the index (after a storage fault stopped its pack)."""
        try:
            row = self.home.indexed_run(run_id)
        except Exception:  # noqa: BLE001 - the index on the same failing disk: the release left it resumable
            row = None
        return row.status if row is not None and row.status != "running" else "interrupted"
