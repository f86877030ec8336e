"""The local agent: claims runs of a sweep exactly once (SQLite transactions with leases), trains them,
renews the lease while a run lives, and hands a dead agent's run to the next one. Each claim's fencing
token goes with the run into the trainer, which checks it before every write: an agent that was suspended
past its lease (SIGSTOP, a frozen VM) finds its run taken over and stops without touching it."""
from __future__ import annotations

import os
import secrets
import socket
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable

from scaling import preempt
from scaling.agents.events import Claimed, Event, Finished, RunProgress, RunResult, Stopped, Waiting
from scaling.agents.isolated import train_isolated
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.runs import Fence, IndexedRun, LeaseLost, RunHome
from scaling.sweep.register import require_sweep
from scaling.train import Interrupted, plan_run, train_run
from scaling.train.branches import Branching
from scaling.train.pack import default_pack_size, pack_config, pack_key, train_pack


def agent_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Heartbeat(threading.Thread):
    """Renews a claim's lease every quarter lease while the run lives, with the run's latest progress;
    notices when the claim was lost (the lease lapsed, e.g. the process was suspended, and another
    agent took the run)."""

    def __init__(self, home, run_id: str, fence: Fence, lease_s: float, progress: Callable[[], dict | None]):
        super().__init__(daemon=True, name=f"lease-{run_id}")
        self.home, self.run_id, self.fence, self.lease_s, self.progress = home, run_id, fence, lease_s, progress
        self.lost = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.lease_s / 4):
            try:
                if not self.home.renew(self.run_id, self.fence.agent, self.lease_s, self.progress(),
                                       token=self.fence.token):
                    self.lost = True
                    return
            except (sqlite3.Error, UsageError):  # a busy, full or briefly unreadable index: try again next beat
                continue

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


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
        self.results: list[RunResult] = []

    def run(self, count: int | None = None) -> list[RunResult]:
        """Claim and train runs until none is free (waiting for other agents' live runs unless `wait`
        is off), `count` are done, too many fail in a row, or a stop is requested."""
        failures = 0
        with preempt.sigterm_requests_stop():
            while not self._should_stop() and (count is None or len(self.results) < count):
                row = self.home.claim(self.sweep_id, self.name, self.lease_s, self.max_attempts)
                if row is None:
                    busy = self.home.held(self.sweep_id)
                    if self.wait and busy:
                        self.on_event(Waiting(busy))
                        time.sleep(min(5.0, self.lease_s / 2))
                        continue
                    break
                for result in self._run_pack(self._fill_pack(row)) if self.pack != 1 else [self._run_one(row)]:
                    self.results.append(result)
                    failures = failures + 1 if result.status == "failed" else 0
                if failures >= self.max_failures_in_a_row:
                    self.on_event(Stopped(f"{failures} runs in a row failed"))
                    break
        return self.results

    def _should_stop(self) -> bool:
        self.stop_requested = self.stop_requested or preempt.stop_requested()
        return self.stop_requested

    def _counts(self) -> tuple[int, int]:
        counts = self.home.sweep_counts(self.sweep_id)
        done = sum(counts.get(s, 0) for s in ("complete", "diverged", "failed"))
        return done, sum(n for s, n in counts.items() if s != "skipped")

    def _run_one(self, row: IndexedRun) -> RunResult:
        t_claim = time.perf_counter()
        state = {"run_id": row.run_id, "steps": (row.plan or {}).get("steps")}
        self.on_event(Claimed(row, *self._counts()))
        progress = lambda: {k: state[k] for k in ("step", "steps", "loss", "eval_loss") if k in state} or None  # noqa: E731
        fence = Fence(self.name, row.attempts)
        beat = Heartbeat(self.home, row.run_id, fence, self.lease_s, progress)
        beat.start()
        # Anything not caught below (SystemExit, KeyboardInterrupt outside the training loop) releases
        # the run as resumable; only an error of the run itself marks it failed.
        status, reason, summary = None, None, None
        try:
            config = {**row.config, **self.overrides}
            if self.isolate:
                summary, reason = train_isolated(
                    self.home, row.run_id, config, fence, should_stop=lambda: beat.lost or self._should_stop(),
                    on_metrics=lambda m: self._progress(state, m.get("step"), m.get("loss"), m.get("eval_loss"),
                                                        m.get("tokens_per_s")))
            else:
                summary = self._train_in_process(config, state, beat, fence)
            status = summary["status"] if summary else "failed"
        except LeaseLost:  # taken over while this agent was away: the run is the other agent's now
            beat.lost = True
        except UsageError as err:
            status, reason = "failed", str(err)
        except Exception as err:  # a bug or a broken environment: record it, keep the sweep going
            traceback.print_exc(file=sys.stderr)
            status, reason = "failed", f"{type(err).__name__}: {err}"
        finally:
            beat.stop()
            # Failed runs record why; any other status was written by the trainer itself. A claim that was
            # taken over is left alone (the token no longer matches, so this would change nothing anyway).
            if not beat.lost and not self.home.release(row.run_id, self.name, "failed" if status == "failed"
                                                       else None, reason, token=fence.token):
                beat.lost = True
        if status == "interrupted" and not beat.lost:
            self.stop_requested = True
        result = RunResult(row.run_id, "lost" if beat.lost else status, reason, summary, row.resumed,
                           time.perf_counter() - t_claim,
                           state["t_first"] - t_claim if "t_first" in state else None)
        self.on_event(Finished(result, *self._counts()))
        return result

    def _progress(self, state: dict, step, loss, eval_loss, tokens_per_s) -> None:
        state.setdefault("t_first", time.perf_counter())
        state.update(step=step, loss=loss, eval_loss=eval_loss)
        self.on_event(RunProgress(state["run_id"], step, state.get("steps"), loss, eval_loss, tokens_per_s))

    def _train_in_process(self, config: dict, state: dict, beat: Heartbeat, fence: Fence) -> dict:
        plan = plan_run(RunConfig.from_dict(config))

        def on_progress(p) -> None:
            state["steps"] = p.steps
            self._progress(state, p.step, p.loss, p.eval_loss, p.tokens_per_s)
            if beat.lost:
                raise Interrupted("lease lost: another agent took this run")

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
            row = self.home.claim(self.sweep_id, self.name, self.lease_s, self.max_attempts, among=among)
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
        runs = {}
        for row in rows:
            self.on_event(Claimed(row, *self._counts()))
            state = {"run_id": row.run_id, "steps": (row.plan or {}).get("steps")}
            progress = lambda state=state: {k: state[k] for k in ("step", "steps", "loss", "eval_loss")  # noqa: E731
                                            if k in state} or None
            fence = Fence(self.name, row.attempts)
            beat = Heartbeat(self.home, row.run_id, fence, self.lease_s, progress)
            beat.start()
            runs[row.run_id] = {"row": row, "state": state, "fence": fence, "beat": beat, "status": None,
                                "reason": None, "summary": None}
        groups: dict = {}
        for run in runs.values():
            try:
                plan = plan_run(RunConfig.from_dict({**run["row"].config, **self.overrides}))
                alone = plan.layout().mesh.devices > 1  # a run over several devices trains by itself
                groups.setdefault(plan.run_id if alone else pack_key(plan), []).append(plan)
            except UsageError as err:
                run["status"], run["reason"] = "failed", str(err)

        def on_progress(run_id: str, p) -> None:
            run = runs[run_id]
            run["state"]["steps"] = p.steps
            self._progress(run["state"], p.step, p.loss, p.eval_loss, p.tokens_per_s)
            if run["beat"].lost:
                raise Interrupted("lease lost: another agent took this run")

        results = []
        try:
            for plans in groups.values():
                if self._should_stop():
                    break
                summaries = train_pack(plans, self.home, on_progress=on_progress,
                                       fences=[runs[p.run_id]["fence"] for p in plans],
                                       on_checkpoint=Branching(queue=True))
                for plan, summary in zip(plans, summaries):
                    run = runs[plan.run_id]
                    if summary is None:  # taken over meanwhile
                        run["beat"].lost = True
                    else:
                        run["summary"], run["status"] = summary, summary["status"]
        except Exception as err:  # a bug or a broken environment: record it on the runs it stopped
            traceback.print_exc(file=sys.stderr)
            for run in runs.values():
                if run["status"] is None:
                    run["status"], run["reason"] = "failed", f"{type(err).__name__}: {err}"
        finally:  # SystemExit or KeyboardInterrupt too: every claim is released, resumable
            for run_id, run in runs.items():
                beat, status = run["beat"], run["status"]
                beat.stop()
                if not beat.lost and not self.home.release(run_id, self.name, "failed" if status == "failed"
                                                           else None, run["reason"], token=run["fence"].token):
                    beat.lost = True
                if status == "interrupted" and not beat.lost:
                    self.stop_requested = True
                state = run["state"]
                result = RunResult(run_id, "lost" if beat.lost else status, run["reason"], run["summary"],
                                   run["row"].resumed, time.perf_counter() - t_claim,
                                   state["t_first"] - t_claim if "t_first" in state else None)
                self.on_event(Finished(result, *self._counts()))
                results.append(result)
        return results

