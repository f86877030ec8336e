"""The step loop and its hooks.

The loop only steps: batch, update, count. Everything else a run does between steps (measuring speed,
evaluating, logging, progress, checkpoints, divergence, preemption) is a hook: a function of the loop's
state with a schedule saying after which steps it runs. What moves the parameters is a step driver: a run
alone has its own (train.loop.OneRun, any mesh), a pack of runs shares one (train.pack.Packed); a run alone
is a pack of one, so hooks, fencing and checkpoints take one path. What a caller hangs on a run's
checkpoints (its cooldown branches) is a `CheckpointHook` it passes in.

A compiled call may run several steps (`steps_per_call`, a lax.scan): the loop then ends each call at the
next step where a hook is due, so every hook still sees exactly the steps it asked for.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from scaling import hardware, preempt
from scaling.runs import LeaseLost
from scaling.train.distributed import to_float
from scaling.train.plan import RunPlan

if TYPE_CHECKING:
    from scaling.runs import RunDir, RunHome


class Interrupted(Exception):
    """SIGTERM (preemption), SIGINT or a caller's request: the run checkpoints, records `interrupted`,
    and can resume."""


class Diverged(Exception):
    """The training or evaluation loss is not finite."""


@dataclass
class Progress:
    step: int
    steps: int
    loss: float
    tokens_per_s: float | None  # None until a step after the first (which compiles) is timed
    mfu: float | None
    eta_s: float
    eval_loss: float | None = None


class Clock:
    """Wall time across sessions (a resumed run adds to the time its checkpoint recorded) and
    steady-state speed, the first step of a session (which compiles) left out."""

    def __init__(self, wall_before: float = 0.0):
        self.wall_before = wall_before
        self.t_start = time.perf_counter()
        self.t_steady: float | None = None
        self.steady_steps = 0

    def tick(self, loss, steps: int = 1) -> None:
        if self.t_steady is None:
            if hasattr(loss, "block_until_ready"):  # host values (a pack's) are ready already
                loss.block_until_ready()
            self.t_steady = time.perf_counter()
        else:
            self.steady_steps += steps

    @property
    def wall_s(self) -> float:
        return self.wall_before + time.perf_counter() - self.t_start

    def tokens_per_s(self, tokens_per_step: int) -> float | None:
        """Tokens per second over the steps after the first, or None when none was timed (a run of one
        call): never a 0 that reads as a measured speed."""
        elapsed = time.perf_counter() - self.t_steady if self.t_steady is not None else 0.0
        return self.steady_steps * tokens_per_step / elapsed if self.steady_steps and elapsed > 0 else None


@dataclass
class LoopState:
    """What the loop and its hooks share: the training state and the figures of the latest log point."""

    plan: RunPlan
    step: int
    params: Any
    opt_state: Any
    clock: Clock
    ceiling: float | None = None
    losses: list = field(default_factory=list)  # device scalars (or vectors, several steps) since the last log point
    grad_norm: Any = None
    train_loss: float = math.nan
    eval_loss: float | None = None
    evals: dict = field(default_factory=dict)  # the evaluation sets' eval/<name>/{loss,bpb} at the latest point
    row: dict | None = None  # the metrics row being built at this step, until a hook logs it

    @property
    def tokens_per_s(self) -> float | None:
        return self.clock.tokens_per_s(self.plan.tokens_per_step)


@dataclass(frozen=True)
class Hook:
    """`run(state)` after every step for which `when(step)` is true. A `boundary` hook ends a compiled
    call at each such step; the others (a cheap check) run after whichever call covers the step."""

    run: Callable[[LoopState], None]
    when: Callable[[int], bool]
    boundary: bool = True


def call_length(step: int, last: int, steps_per_call: int, hooks: list[Hook]) -> int:
    """How many steps the next call takes from `step`: up to `steps_per_call`, ending at the run's last
    step or at the first later step a boundary hook is due."""
    n = 1
    while n < steps_per_call and step + n < last and not any(h.boundary and h.when(step + n) for h in hooks):
        n += 1
    return n


class CheckpointHook(Protocol):
    """Work a caller hangs on a run's checkpoints (cooldown branches: train.branches.Branching). `steps`
    is asked in every process; the writing process alone calls `opened` and `saved`."""

    def steps(self, plan: RunPlan) -> frozenset[int]:
        """The steps the run must checkpoint at (beyond checkpoint_every)."""

    def opened(self, plan: RunPlan, home: RunHome, files: RunDir, step: int) -> None:
        """The run's session opened at `step` (0, or its restored checkpoint's)."""

    def saved(self, plan: RunPlan, home: RunHome, files: RunDir, step: int) -> None:
        """The run saved its checkpoint at `step`, one of `steps`."""


class Member(Protocol):
    """One run of a pack as the loop sees it (train.loop.Session)."""

    plan: RunPlan
    state: LoopState
    hooks: list[Hook]
    result: dict | None  # its summary, once it ended

    def end(self, status: str) -> dict: ...

    def abandon(self, err: LeaseLost) -> None: ...

    def fail(self, err: Exception) -> None: ...


class StepDriver(Protocol):
    """What moves a pack's parameters: `advance` trains each live member `n` steps on (its state's step,
    losses, grad_norm and clock move on); `own` puts a member's own parameters in its state, where its
    hooks and its end read them."""

    steps_per_call: int

    def advance(self, live: list[Member], n: int) -> None: ...

    def own(self, member: Member) -> None: ...


def run_loop(members: list[Member], driver: StepDriver) -> None:
    """Step a pack of runs (a run alone: a pack of one) until each has ended, recording each end.

    A member ends (`end`, its summary in `result`) at its last step, or when one of its hooks stops it
    (diverged, interrupted); the others go on. A lost lease drops its member without a write (`abandon`).
    Any other error ends the pack: the member it came from records it where it is a storage fault
    (`fail`), the others end interrupted, resumably; SIGTERM, SIGINT or a stop request in one member ends
    them all interrupted. The final saves happen inside too: a SIGTERM arriving during one only sets the
    stop flag."""
    live = list(members)
    steps_per_call = driver.steps_per_call
    with preempt.sigterm_requests_stop():
        try:
            for m in [m for m in live if m.state.step >= m.plan.steps]:  # restored at its last step
                _end(m, driver, live, "complete")
            while live:
                n = 1 if steps_per_call == 1 else min(
                    call_length(m.state.step, m.plan.steps, steps_per_call, m.hooks) for m in live)
                try:
                    driver.advance(live, n)
                    stop = False
                except KeyboardInterrupt:
                    stop = True
                else:
                    for m in tuple(live):
                        status = _after_call(m, driver, live)
                        if status is not None:
                            _end(m, driver, live, status)
                            stop = stop or (status == "interrupted" and preempt.stop_requested())
                if stop:
                    for m in tuple(live):
                        _end(m, driver, live, "interrupted")
        except BaseException:
            for m in tuple(live):  # the others keep what they have, resumably
                try:
                    _end(m, driver, live, "interrupted")
                except Exception:  # noqa: BLE001 - the first error is the one to raise
                    pass
            raise


def _after_call(m: Member, driver: StepDriver, live: list[Member]) -> str | None:
    """Run the member's hooks due at its new step; how its run ended, or None while it goes on (also when
    it was dropped: its lease lost)."""
    s = m.state
    owned = False
    try:
        for hook in m.hooks:
            if hook.when(s.step):
                if hook.boundary and not owned:  # evaluation and checkpoints read the run's own parameters
                    driver.own(m)
                    owned = True
                hook.run(s)
    except Diverged:
        return "diverged"
    except (Interrupted, KeyboardInterrupt):
        return "interrupted"
    except Exception as err:
        _drop(m, live, err)
        return None
    return "complete" if s.step >= m.plan.steps else None


def _end(m: Member, driver: StepDriver, live: list[Member], status: str) -> None:
    """Record the member's end (its summary in `result`); it leaves the pack."""
    driver.own(m)
    live.remove(m)
    try:
        m.result = m.end(status)
    except Exception as err:
        _drop(m, live, err)


def _drop(m: Member, live: list[Member], err: Exception) -> None:
    """The member stopped on an error: a lost lease (taken over by another agent) drops it without a write;
    any other error is recorded by the member where it is a storage fault, and raised."""
    if m in live:
        live.remove(m)
    if isinstance(err, LeaseLost):
        m.abandon(err)
        return
    m.fail(err)
    raise err


# ---- the hooks ----------------------------------------------------------------------------------------
def measure(lrs: np.ndarray) -> Callable[[LoopState], None]:
    """Start the step's metrics row: mean train loss since the last row, speed, accounting."""
    def run(state: LoopState) -> None:
        state.train_loss = float(np.mean(np.concatenate([_values(loss) for loss in state.losses])))
        state.losses = []
        state.row = {"step": state.step, **_sizes(state.plan.accounting(state.step)), "loss": state.train_loss,
                     "grad_norm": to_float(state.grad_norm), "lr": float(lrs[state.step - 1]),
                     "wall_s": state.clock.wall_s}
        if state.tokens_per_s is not None:  # not yet timed: the key is left out, not written as 0
            state.row["tokens_per_s"] = state.tokens_per_s
        if not math.isfinite(state.train_loss):
            raise Diverged(f"train loss {state.train_loss} at step {state.step}")
    return run


def _values(losses) -> np.ndarray:
    """A device scalar or vector of losses as float64 values (one process's copy of a replicated array)."""
    if getattr(losses, "ndim", 0) == 0:
        return np.array([to_float(losses)])
    local = losses.addressable_data(0) if hasattr(losses, "addressable_data") else losses
    return np.asarray(local, dtype=np.float64).ravel()


def _sizes(accounting: dict) -> dict:
    return {"tokens": accounting["tokens"], "flops": accounting["flops"]}


def evaluate(eval_fn: Callable[[Any], float],
             sets_fn: Callable[[Any], dict] | None = None) -> Callable[[LoopState], None]:
    """The validation loss, and `sets_fn`'s metrics of the `eval=` sets (train.evalsets) in the same row."""
    def run(state: LoopState) -> None:
        state.eval_loss = eval_fn(state.params)
        state.row["eval_loss"] = state.eval_loss
        if sets_fn is not None:
            state.evals = sets_fn(state.params)
            state.row.update(state.evals)
        if not math.isfinite(state.eval_loss):
            raise Diverged(f"eval loss {state.eval_loss} at step {state.step}")
    return run


def log(tracker) -> Callable[[LoopState], None]:
    def run(state: LoopState) -> None:
        tracker.log(state.row)
        state.row = None
    return run


def progress(callback: Callable[[Progress], None]) -> Callable[[LoopState], None]:
    """Feed a display (or an agent's lease check, which may raise Interrupted)."""
    def run(state: LoopState) -> None:
        plan, tok_s = state.plan, state.tokens_per_s
        eta = (plan.steps - state.step) * plan.tokens_per_step / tok_s if tok_s else math.nan
        callback(Progress(state.step, plan.steps, state.train_loss, tok_s,
                          hardware.mfu(tok_s, plan.flops_per_token, state.ceiling), eta, state.eval_loss))
    return run


def stop_here(state: LoopState) -> None:
    raise Interrupted(f"stopped at step {state.step}")


def check_preemption(state: LoopState) -> None:
    if preempt.stop_requested():
        raise Interrupted("SIGTERM")


def default_hooks(plan: RunPlan, lrs: np.ndarray, *, eval_fn: Callable, tracker, save: Callable[[LoopState], None],
                  on_progress: Callable[[Progress], None] | None = None,
                  stop_at_step: int | None = None, save_at: frozenset[int] = frozenset(),
                  sets_fn: Callable | None = None) -> list[Hook]:
    """A run's hooks: a metrics row about 100 times a run and at every evaluation (log-spaced), a
    checkpoint every `checkpoint_every` steps and at the `save_at` steps (where cooldown branches start),
    preemption checked after every call."""
    log_every = max(1, plan.steps // 100)
    eval_steps = frozenset(plan.eval_steps)

    def log_point(step: int) -> bool:
        return step % log_every == 0 or step in eval_steps or step == plan.steps or step == stop_at_step

    hooks = [Hook(measure(lrs), log_point), Hook(evaluate(eval_fn, sets_fn), eval_steps.__contains__),
             Hook(log(tracker), log_point)]
    if on_progress is not None:
        hooks.append(Hook(progress(on_progress), log_point))
    every = plan.config.checkpoint_every
    if every or save_at:
        def save_point(step: int) -> bool:
            return step < plan.steps and (step in save_at or bool(every) and step % every == 0)

        hooks.append(Hook(save, save_point))
    if stop_at_step is not None:
        hooks.append(Hook(stop_here, lambda step: stop_at_step <= step < plan.steps))
    hooks.append(Hook(check_preemption, lambda step: True, boundary=False))
    return hooks
