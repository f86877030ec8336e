"""What a person watches: a training run's progress line, a sweep's live display, a run's summary."""
from __future__ import annotations

import sys
import time

from scaling.agents.events import Claimed, Event, Finished, RunProgress, Stopped, Waiting
from scaling.display import duration, number

WIDTH = 80  # a log line, or a terminal's, is cut here rather than wrapped
HEARTBEAT_S = 30.0  # a log says something at least this often while runs are in flight


def clip(text: str, width: int = WIDTH) -> str:
    """One line of at most `width` characters (an ellipsis says where it was cut)."""
    return text if len(text) <= width else text[:width - 3] + "..."


class ProgressLine:
    """One live line on a terminal; a line per ~10% of the run when output is a log file."""

    def __init__(self, stream=None):
        stream = stream or sys.stderr  # looked up now: sys.stderr may have been replaced since import
        self.stream, self.tty, self.last_decile = stream, stream.isatty(), -1

    def __call__(self, p) -> None:
        text = (f"step {p.step}/{p.steps}  loss {number(p.loss)}"
                + (f"  eval {number(p.eval_loss)}" if p.eval_loss is not None else "")
                + (f"  {p.tokens_per_s / 1e3:.1f}k tok/s  MFU {100 * (p.mfu or 0):.1f}%  ETA {duration(p.eta_s)}"
                   if p.tokens_per_s else ""))  # the first step compiles and is not timed: no speed yet
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if p.step == p.steps else ""))
            self.stream.flush()
        else:
            decile = 10 * p.step // p.steps
            if decile != self.last_decile:
                self.last_decile = decile
                print(text, file=self.stream, flush=True)


def print_summary(s: dict, ceiling: str | None = None) -> None:
    """The run's summary; `ceiling` says where the MFU's ceiling comes from (hardware.ceiling_flops)."""
    rows = [
        ("run", f"{s['run_id']}  ({s['status']})"),
        ("N params", f"{s['params']:,}  (non-embedding {s['params_nonembed']:,})"),
        ("D tokens", f"{s['tokens']:,}  ({number(s['epochs'], 3)} epochs of {s['corpus']})"),
        ("C flops", f"6ND = {number(s['flops'])}   model = {number(s['flops_model'])}"),
        ("eval loss", f"{number(s['eval_loss'])} nats/token   (train {number(s['train_loss'])})"
                      + (f"   {number(s['eval_bpb'])} bits/byte" if s.get("eval_bpb") is not None else "")),
        ("unigram H", f"{number(s['unigram_entropy'])} nats/token  (the loss of a model that ignores context)"),
        ("speed", _speed(s)),
        ("wall", duration(s["wall_s"]) + f"  ({s['wall_s']:.1f} s)"),
    ]
    if ceiling and s.get("ceiling_flops") and s.get("tokens_per_s"):
        rows.insert(-1, ("ceiling", ceiling))
    for key, value in rows:
        print(f"  {key:<10} {value}")


def _speed(s: dict) -> str:
    if not s.get("tokens_per_s"):  # the first step (compilation) is never timed
        return "not measured (too few steps: the first, which compiles, is not timed)"
    text = f"{s['tokens_per_s']:,.0f} tokens/s"
    if s.get("ceiling_flops"):
        text += f"   MFU {100 * (s['mfu'] or 0):.1f}% of {s['ceiling_flops'] / 1e9:.0f} GFLOP/s"
    return text


class SweepDisplay:
    """What a person watches while a sweep runs, from the events of a local agent or a Ray driver (they
    emit the same records, scaling.agents.events). Live on a terminal (rich): runs done/total, and each
    run in flight with its step, loss and speed. In a log file: one line per run claimed and per run
    ended, and a heartbeat line (the run in flight, its step and loss) after HEARTBEAT_S without one.
    `engine` names who speaks ("agent", "ray"); `claimed` is the word for a claim ("submitted" for a Ray
    task); `runnable()`, when given, is the sweep's total counting the cooldown branches still to come
    (sweep_status(...).runnable), which the events' own total learns only as parents queue them."""

    def __init__(self, stream=None, engine: str = "agent", claimed: str = "", runnable=None, clock=time.monotonic):
        self.stream = stream = stream or sys.stderr
        self.engine, self.claimed, self.runnable, self.clock = engine, claimed, runnable, clock
        self.last_line = clock()
        self.live = stream.isatty()
        self.progress = None
        self.tasks = {}  # run id -> its bar: a packing agent, or Ray, trains several runs at once
        self.show = {Claimed: self._claimed, RunProgress: self._progress, Finished: self._finished,
                     Waiting: self._waiting, Stopped: self._stopped}
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=12), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                                     console=Console(file=stream), transient=False)
            self.sweep_task = self.progress.add_task("runs", total=None, info="")
            self.progress.start()

    def __call__(self, event: Event) -> None:
        self.show[type(event)](event)

    def _claimed(self, e: Claimed) -> None:
        plan = e.run.plan or {}
        what = f"{e.run.run_id}  {plan.get('shape', '')} N={plan.get('params', 0):,} D={plan.get('tokens', 0):,}"
        what += "  (resuming)" if e.run.resumed else ""
        total = self._total(e.total)
        if self.live:
            self.progress.update(self.sweep_task, completed=e.done, total=total)
            # the run id alone beside its bar: with shape, N and D the row no longer fits 80 columns
            self.tasks[e.run.run_id] = self.progress.add_task(clip(e.run.run_id, 28), total=plan.get("steps"),
                                                              info="starting")
            self.progress.console.print(clip(what))
        else:
            self._line(f"[{e.done}/{total}] " + (f"{self.claimed} " if self.claimed else "") + what)

    def _progress(self, e: RunProgress) -> None:
        if not self.live:
            if self.clock() - self.last_line >= HEARTBEAT_S:
                self._line(f"  {e.run_id} step {e.step}/{e.steps}  loss {number(e.loss)}"
                           + (f"  eval {number(e.eval_loss)}" if e.eval_loss is not None else ""))
            return
        task = self.tasks.get(e.run_id)
        if task is None:
            return
        # loss and eval only: with tokens/s too, the row pushes the bar out of 80 columns
        info = f"loss {number(e.loss)}" + (f" eval {number(e.eval_loss)}" if e.eval_loss is not None else "")
        self.progress.update(task, completed=e.step, total=e.steps, info=info)

    def _finished(self, e: Finished) -> None:
        r = e.result
        loss = r.summary.get("eval_loss") if r.summary else None
        total = self._total(e.total)
        line = (f"[{e.done}/{total}] {r.run_id} {r.status}" + (f"  eval {number(loss)}" if loss is not None else "")
                + f"  {r.wall_s:.1f} s"
                + (f" (first step after {r.startup_s:.1f} s)" if r.startup_s is not None else "")
                + (f"  {r.reason}" if r.reason else ""))
        if self.live:
            if r.run_id in self.tasks:
                self.progress.remove_task(self.tasks.pop(r.run_id))
            self.progress.update(self.sweep_task, completed=e.done, total=total)
            self.progress.console.print(clip(line))
        else:
            self._line(line)

    def _total(self, counted: int) -> int:
        return max(counted, self.runnable()) if self.runnable is not None else counted

    def _line(self, text: str) -> None:
        print(clip(text), file=self.stream, flush=True)
        self.last_line = self.clock()

    def _waiting(self, e: Waiting) -> None:
        if self.live:
            self.progress.update(self.sweep_task, info=f"waiting for {e.running} run(s) of other agents")

    def _stopped(self, e: Stopped) -> None:
        print(f"{self.engine} stopped: {e.reason}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
