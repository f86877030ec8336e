"""What a person watches while several agent processes share one sweep (`scaling demo`, `sweep agents`):
read from the run home's index, so every agent's runs show, not one process's, and the total counts the
cooldown branches still to come from the start (it does not grow from 11 to 23 as parents reach their
cuts). On a terminal: a live bar and a line per run in flight. In a log: one line per run end, and a
heartbeat line when nothing else was printed for HEARTBEAT_S. No line is wider than WIDTH."""
from __future__ import annotations

import sys
import time

from scaling.commands.progress import WIDTH, clip
from scaling.display import duration, number
from scaling.runs import IndexedRun, RunHome
from scaling.sweep.status import FINISHED, SweepStatus, sweep_status

HEARTBEAT_S = 30.0


class SweepWatch:
    """Call `poll()` every few seconds (and once at the end) while the agents run."""

    def __init__(self, home: RunHome | str | None, sweep_id: str, stream=None, heartbeat_s: float = HEARTBEAT_S,
                 clock=time.monotonic):
        self.home, self.sweep_id = RunHome.of(home), sweep_id
        self.stream = stream or sys.stderr
        self.heartbeat_s, self.clock = heartbeat_s, clock
        self.live = self.stream.isatty()
        # Runs that ended before the watch began are counted in done, not announced again.
        self.seen = {r.run_id for r in self.home.sweep_runs(sweep_id) if r.status in FINISHED}
        self.last_line = clock()
        self.progress, self.tasks = None, {}
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=12),
                                     MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                                     console=Console(file=self.stream, width=min(WIDTH, Console().width)))
            self.bar = self.progress.add_task("runs", total=None, info="")
            self.progress.start()

    def poll(self) -> SweepStatus:
        st = sweep_status(self.home, self.sweep_id)
        runs = self.home.sweep_runs(self.sweep_id)
        ended = sorted((r for r in runs if r.status in FINISHED and r.run_id not in self.seen),
                       key=lambda r: r.updated)
        done = st.finished - len(ended)
        for r in ended:
            self.seen.add(r.run_id)
            done += 1
            self._say(f"[{done}/{st.runnable}] " + run_end(r))
        if self.live:
            self._draw(st)
        elif self.clock() - self.last_line >= self.heartbeat_s:
            self._say(heartbeat(st))
        return st

    def _say(self, line: str) -> None:
        if self.live:
            self.progress.console.print(clip(line), soft_wrap=False)
        else:
            print(clip(line), file=self.stream, flush=True)
        self.last_line = self.clock()

    def _draw(self, st: SweepStatus) -> None:
        self.progress.update(self.bar, completed=st.finished, total=st.runnable,
                             info=f"{st.agents} agent(s)")
        current = {r.run_id: r for r in st.current}
        for run_id in [k for k in self.tasks if k not in current]:
            self.progress.remove_task(self.tasks.pop(run_id))
        for run_id, r in current.items():
            p = r.progress or {}
            if run_id not in self.tasks:
                self.tasks[run_id] = self.progress.add_task(clip(run_id, 24), total=p.get("steps"), info="")
            self.progress.update(self.tasks[run_id], completed=p.get("step") or 0, total=p.get("steps"),
                                 info=f"loss {number(p.get('loss'))}" if p.get("loss") is not None else "starting")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def run_end(r: IndexedRun) -> str:
    s = r.summary or {}
    text = f"{r.run_id} {r.status}"
    if s.get("eval_loss") is not None:
        text += f"  eval {number(s['eval_loss'])}"
    if s.get("wall_s") is not None:
        text += f"  {s['wall_s']:.0f} s"
    if r.reason and r.status != "complete":
        text += f"  {r.reason}"
    return text


def heartbeat(st: SweepStatus) -> str:
    """The sweep at a glance, for a log that has had nothing to say for a while."""
    running = ", ".join(f"{r.run_id} {_step(r)}" for r in st.current)
    eta = f"ETA {duration(st.eta_s)}" if st.eta_s is not None else "ETA ?"
    return f"[{st.finished}/{st.runnable}] {eta}; running " + (running or "nothing (starting)")


def _step(r: IndexedRun) -> str:
    p, plan = r.progress or {}, r.plan or {}
    return f"step {p.get('step') or 0}/{p.get('steps') or plan.get('steps') or '?'}"
