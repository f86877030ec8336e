"""The step loop and its hooks.

The loop only steps: batch, update, count. Everything else a run does between steps (measuring speed,
evaluating, logging, progress, checkpoints, divergence, preemption) is a hook: a function of the loop's
state with a schedule saying after which steps it runs. Sharded and packed runs change the step
function and add hooks; the loop stays as it is.

A compiled call may run several steps (`steps_per_call`, a lax.scan): the loop then ends each call at the
next step where a hook is due, so every hook still sees exactly the steps it asked for.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scaling import hardware, preempt
from scaling.train.distributed import to_float
from scaling.train.plan import RunPlan


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
    tokens_per_s: float
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

    def tokens_per_s(self, tokens_per_step: int) -> float:
        elapsed = time.perf_counter() - self.t_steady if self.t_steady is not None else 0.0
        return self.steady_steps * tokens_per_step / elapsed if self.steady_steps and elapsed > 0 else 0.0


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
    row: dict | None = None  # the metrics row being built at this step, until a hook logs it

    @property
    def tokens_per_s(self) -> float:
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


def run_loop(state: LoopState, step_fn: Callable, batch_fn: Callable, lrs: np.ndarray, hooks: Iterable[Hook],
             steps_per_call: int = 1) -> str:
    """Step until the plan's last step or a hook stops the run; returns the run's status.

    With `steps_per_call` 1, `step_fn(params, opt_state, x, y, lr)` and `batch_fn(step) -> (x, y)`; above
    1, the scanned `step_fn(params, opt_state, xs, ys, lrs, active)` and `batch_fn(step, n) -> (xs, ys)`
    stacked to `steps_per_call` (rows past n are padding that `active` turns off)."""
    hooks = list(hooks)
    k = steps_per_call
    try:
        while state.step < state.plan.steps:
            if k == 1:
                x, y = batch_fn(state.step)
                state.params, state.opt_state, loss, state.grad_norm = step_fn(
                    state.params, state.opt_state, x, y, lrs[state.step])
                n = 1
            else:
                n = call_length(state.step, state.plan.steps, k, hooks)
                xs, ys = batch_fn(state.step, n)
                call_lrs = np.zeros(k, np.float32)
                call_lrs[:n] = lrs[state.step:state.step + n]
                state.params, state.opt_state, losses, norms = step_fn(
                    state.params, state.opt_state, xs, ys, call_lrs, np.arange(k) < n)
                loss, state.grad_norm = (losses if n == k else losses[:n]), norms[n - 1]
            state.step += n
            state.losses.append(loss)
            state.clock.tick(loss, n)
            for hook in hooks:
                if hook.when(state.step):
                    hook.run(state)
    except Diverged:
        return "diverged"
    except (Interrupted, KeyboardInterrupt):
        return "interrupted"
    return "complete"


# ---- the hooks ----------------------------------------------------------------------------------------
def measure(lrs: np.ndarray) -> Callable[[LoopState], None]:
    """Start the step's metrics row: mean train loss since the last row, speed, accounting."""
    def run(state: LoopState) -> None:
        state.train_loss = float(np.mean(np.concatenate([_values(loss) for loss in state.losses])))
        state.losses = []
        state.row = {"step": state.step, **_sizes(state.plan.accounting(state.step)), "loss": state.train_loss,
                     "grad_norm": to_float(state.grad_norm), "lr": float(lrs[state.step - 1]),
                     "tokens_per_s": state.tokens_per_s, "wall_s": state.clock.wall_s}
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


def evaluate(eval_fn: Callable[[Any], float]) -> Callable[[LoopState], None]:
    def run(state: LoopState) -> None:
        state.eval_loss = eval_fn(state.params)
        state.row["eval_loss"] = state.eval_loss
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
                          hardware.mfu(tok_s, plan.shape.flops_per_token(), state.ceiling), eta, state.eval_loss))
    return run


def stop_here(state: LoopState) -> None:
    raise Interrupted(f"stopped at step {state.step}")


def check_preemption(state: LoopState) -> None:
    if preempt.stop_requested():
        raise Interrupted("SIGTERM")


def default_hooks(plan: RunPlan, lrs: np.ndarray, *, eval_fn: Callable, tracker, save: Callable[[LoopState], None],
                  on_progress: Callable[[Progress], None] | None = None,
                  stop_at_step: int | None = None, save_at: frozenset[int] = frozenset()) -> list[Hook]:
    """A run's hooks: a metrics row about 100 times a run and at every evaluation (log-spaced), a
    checkpoint every `checkpoint_every` steps and at the `save_at` steps (where cooldown branches start),
    preemption checked after every call."""
    log_every = max(1, plan.steps // 100)
    eval_steps = frozenset(plan.eval_steps)

    def log_point(step: int) -> bool:
        return step % log_every == 0 or step in eval_steps or step == plan.steps or step == stop_at_step

    hooks = [Hook(measure(lrs), log_point), Hook(evaluate(eval_fn), eval_steps.__contains__),
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
