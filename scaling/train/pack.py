"""Packed runs: K runs of one shape and batch size trained together, one compiled step for all of them.

Each run keeps everything that makes it a run: its session (directory, metrics, checkpoints, summary,
W&B run), its own seed, batches, learning-rate schedule, length, evaluations and hooks. Only the
parameters and optimizer states live stacked (a leading axis of K) while the pack trains; a run that
reaches its last step, diverges or is stopped turns inactive (its slice stops changing) and is recorded
at once, while the others go on. Its evaluations and checkpoints use its own slice with the single-run
functions, so a packed run resumes alone and a run resumed in a pack continues where it stopped.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from scaling import data as data_lib
from scaling import preempt
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.family import Parametrization
from scaling.runs import Fence, LeaseLost, RunHome
from scaling.train.hooks import Diverged, Interrupted, Progress, call_length
from scaling.train.loop import Session, train_run
from scaling.train.plan import RunPlan, default_steps_per_call, plan_run
from scaling.train.step import compute_dtype, packed_fns

# Config keys that must agree for runs to share one compiled step (all else may differ).
PACK_KEYS = ("beta1", "beta2", "weight_decay", "grad_clip", "dtype", "attention", "microbatches", "mesh",
             "devices", "coordinator", "num_processes", "parametrization", "base_width")


def pack_key(plan: RunPlan) -> tuple:
    """Runs with equal keys can train in one pack: same shape, batch size and optimizer constants."""
    return (plan.shape, plan.batch_size, *(getattr(plan.config, k) for k in PACK_KEYS))


@dataclass
class Member:
    """One run in the pack: its session and, while it trains, its slot on the run axis."""

    session: Session
    slot: int
    done: dict | None = None


def train_pack(plans: list[RunPlan], home: RunHome | str | None = None, *,
               on_progress: Callable[[str, Progress], None] | None = None,
               fences: list[Fence | None] | None = None, stop_at_step: int | None = None) -> list[dict]:
    """Train K runs together (or resume them, or return the finished summaries of those that are done).

    Args:
        plans: runs with one `pack_key` (same shape, batch size, optimizer constants), one device.
        home: the run home.
        on_progress: called with (run_id, Progress) at every logged step of each run; raising Interrupted
            stops that run alone, resumably.
        fences: each run's claim (the agent's); every write of a run's state checks its own.
        stop_at_step: end each run's session after that step as a preemption would.
    Returns:
        The runs' summaries, in the order of `plans`; None for a run another agent took over (its fence
        lost), which leaves the pack alone while the others train on.
    Raises:
        UsageError: the runs cannot share a step (different shapes, batch sizes, optimizer constants, or a
            mesh over several devices).
    """
    if len(plans) == 1:  # nothing to pack with: the run as it trains alone, on whatever mesh it has
        plan, fence = plans[0], (fences or [None])[0]
        progress = (lambda p: on_progress(plan.run_id, p)) if on_progress else None
        try:
            return [train_run(plan, home, on_progress=progress, fence=fence, stop_at_step=stop_at_step)]
        except LeaseLost:
            return [None]
    if len({pack_key(p) for p in plans}) > 1:
        raise UsageError("packed runs need one shape, batch size and optimizer: "
                         + ", ".join(f"{p.run_id} ({p.shape.describe()}, batch {p.batch_size})" for p in plans))
    for plan in plans:  # before any run directory is touched
        if plan.layout().mesh.devices > 1:
            raise UsageError(f"run {plan.run_id}: packed runs train on one device (mesh={plan.config.mesh!r}, "
                             f"devices={plan.config.devices!r}); allowed: mesh=data:1 or devices=I")
    fences = fences or [None] * len(plans)
    results: list[dict | None] = [None] * len(plans)
    members: list[tuple[int, Member]] = []
    for i, (plan, fence) in enumerate(zip(plans, fences)):
        progress = (lambda p, run_id=plan.run_id: on_progress(run_id, p)) if on_progress else None
        try:
            opened = Session.open(plan, home, on_progress=progress, stop_at_step=stop_at_step, fence=fence)
        except LeaseLost:  # taken over before it opened (this agent was suspended past its lease): not ours
            continue
        if isinstance(opened, dict):
            results[i] = opened
            continue
        members.append((i, Member(opened, len(members))))
    if members:
        with preempt.sigterm_requests_stop():
            _train(members)
    for i, member in members:
        results[i] = member.done
    return results


def _train(members: list[tuple[int, Member]]) -> None:
    sessions = [m.session for _, m in members]
    first = sessions[0]
    cfg, plan = first.plan.config, first.plan
    dtype_name = np.dtype(compute_dtype(cfg.dtype)).name
    fns = packed_fns(plan.shape, dtype_name, cfg.beta1, cfg.beta2, cfg.weight_decay, cfg.grad_clip, first.attention,
                     parametrization=Parametrization.of(cfg.parametrization, cfg.base_width))
    device = first.place.mesh.devices.flat[0]
    stack = lambda *leaves: jax.device_put(jnp.stack(leaves), device)  # noqa: E731
    params = jax.tree.map(stack, *[s.state.params for s in sessions])
    opt_state = jax.tree.map(stack, *[s.state.opt_state for s in sessions])
    k = max(s.plan.steps_per_call for s in sessions)
    live = [m for _, m in members]
    try:
        for m in list(live):
            if m.session.state.step >= m.session.plan.steps:  # restored at its last step
                _finish(m, "complete", params, opt_state, live)
        while live:
            n = min(call_length(m.session.state.step, m.session.plan.steps, k, m.session.hooks) for m in live)
            xs, ys, lrs, active = _call_inputs(sessions, live, n, k)
            params, opt_state, losses, norms = fns.train_steps(params, opt_state, xs, ys, lrs, active)
            losses, norms = np.asarray(losses), np.asarray(norms)
            stop = False
            for m in list(live):
                s = m.session.state
                s.step += n
                s.losses.append(losses[:n, m.slot])
                s.grad_norm = norms[n - 1, m.slot]
                s.clock.tick(losses, n)
                try:
                    status = m.session.guarded(lambda m=m, p=params, o=opt_state: _after_call(m, p, o))
                except LeaseLost:  # taken over by another agent: nothing more of it is written here
                    live.remove(m)
                    continue
                if status == "interrupted" and preempt.stop_requested():
                    stop = True
                if status is not None:
                    _finish(m, status, params, opt_state, live)
            if stop:
                for m in list(live):
                    _finish(m, "interrupted", params, opt_state, live)
    except BaseException:
        # One run's storage fault (or a bug) ends the pack: the others keep what they have, resumably.
        for m in list(live):
            try:
                _finish(m, "interrupted", params, opt_state, live)
            except Exception:  # noqa: BLE001 - the first error is the one to raise
                pass
        raise


@jax.jit
def _slice(tree, slot: int):
    # One compiled call for the whole tree: indexed leaf by leaf, each leaf was its own dispatch (~1 ms on
    # CPU), a quarter of a small packed sweep's time.
    return jax.tree.map(lambda leaf: leaf[slot], tree)


def _after_call(m: Member, params, opt_state) -> str | None:
    """Run the member's hooks due at its new step; the status it ends with, or None to go on."""
    s = m.session.state
    due = [h for h in m.session.hooks if h.when(s.step)]
    if any(h.boundary for h in due):  # evaluation and checkpoints read the run's own parameters
        s.params, s.opt_state = _slice(params, m.slot), _slice(opt_state, m.slot)
    try:
        for hook in due:
            hook.run(s)
    except Diverged:
        return "diverged"
    except (Interrupted, KeyboardInterrupt):
        return "interrupted"
    return "complete" if s.step >= m.session.plan.steps else None


def _finish(m: Member, status: str, params, opt_state, live: list[Member]) -> None:
    """Record the member's end (its slot is left inactive from now on)."""
    live.remove(m)
    s = m.session.state
    s.params, s.opt_state = _slice(params, m.slot), _slice(opt_state, m.slot)
    try:
        m.done = m.session.guarded(lambda: m.session.end(status))
    except LeaseLost:
        m.done = None


def _call_inputs(sessions: list[Session], live: list[Member], n: int, k: int) -> tuple:
    """The call's (k, K, batch, seq_len) inputs and targets, and its (k, K) learning rates and active mask:
    each live run's next n steps; zeros (inactive) for the padding and for runs that have ended."""
    plan = sessions[0].plan
    shape = (k, len(sessions), plan.batch_size, plan.shape.seq_len + 1)
    windows = np.zeros(shape, np.int32)
    lrs = np.zeros((k, len(sessions)), np.float32)
    active = np.zeros((k, len(sessions)), bool)
    for m in live:
        p, step = m.session.plan, m.session.state.step
        for j in range(n):
            windows[j, m.slot] = data_lib.batch_windows(p.corpus, p.config.seed, step + j, p.batch_size,
                                                        p.shape.seq_len)
        lrs[:n, m.slot] = m.session.lrs[step:step + n]
        active[:n, m.slot] = True
    return windows[..., :-1], windows[..., 1:], lrs, active


# The config keys that fix a run's shape and batch size (with PACK_KEYS: whether two runs can share a step).
SHAPE_KEYS = ("params", "d_model", "n_layers", "n_heads", "d_ff", "mlp", "tied", "qk_norm", "seq_len", "batch_size",
              "corpus", "vocab_size")


def pack_config(config: dict) -> tuple | None:
    """What two sweep points must share to be packed, read from their configs without planning them (an
    agent compares every pending run); None for a config that does not parse (it fails on its own)."""
    try:
        cfg = RunConfig.from_dict(config)
    except UsageError:
        return None
    return tuple(getattr(cfg, k) for k in SHAPE_KEYS + PACK_KEYS)


def default_pack_size(config: dict, overrides: dict | None = None) -> int:
    """How many runs of this config's shape an agent packs when not told: DEFAULT_PACK for steps small
    enough to scan several per call (train.plan) on one device, else 1 (also for configs that do not plan)."""
    try:
        plan = plan_run(RunConfig.from_dict({**config, **(overrides or {})}))
        one_device = plan.layout().mesh.devices == 1
    except UsageError:
        return 1
    return DEFAULT_PACK if one_device and default_steps_per_call(plan.shape, plan.batch_size) > 1 else 1


DEFAULT_PACK = 4
