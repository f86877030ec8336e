"""Packed runs: `pack_size` runs of one shape and batch size trained together, one compiled step for all.

Each run keeps everything that makes it a run: its session (directory, metrics, checkpoints, summary,
W&B run), its own seed, batches, learning-rate schedule, length, evaluations and hooks, and it steps
through the same loop as a run alone (train.hooks.run_loop); only its step driver differs. The
parameters and optimizer states live stacked (a leading axis of pack_size) while the pack trains; a run
that reaches its last step, diverges or is stopped turns inactive (its slice stops changing) and is
recorded at once, while the others go on. Its evaluations and checkpoints use its own slice with the
single-run functions, so a packed run resumes alone and a run resumed in a pack continues where it stopped.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from scaling import data as data_lib
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.family import Parametrization
from scaling.runs import Fence, LeaseLost, RunHome
from scaling.train.hooks import CheckpointHook, Progress, run_loop
from scaling.train.loop import Session, train_run
from scaling.train.plan import RunPlan, default_steps_per_call, plan_run
from scaling.train.step import compute_dtype, packed_fns

# Config keys that must agree for runs to share one compiled step (all else may differ).
PACK_KEYS = ("beta1", "beta2", "weight_decay", "grad_clip", "dtype", "attention", "remat", "microbatches", "mesh",
             "devices", "coordinator", "num_processes", "parametrization", "base_width", "output_mult")


def pack_key(plan: RunPlan) -> tuple:
    """Runs with equal keys can train in one pack: same shape, batch size and optimizer constants."""
    return (plan.shape, plan.batch_size, *(getattr(plan.config, k) for k in PACK_KEYS))


def train_pack(plans: list[RunPlan], home: RunHome | str | None = None, *,
               on_progress: Callable[[str, Progress], None] | None = None,
               fences: list[Fence | None] | None = None, stop_at_step: int | None = None,
               on_checkpoint: CheckpointHook | None = None) -> list[dict | None]:
    """Train runs together (or resume them, or return the finished summaries of those that are done).

    Args:
        plans: runs with one `pack_key` (same shape, batch size, optimizer constants), one device.
        home: the run home.
        on_progress: called with (run_id, Progress) at every logged step of each run; raising Interrupted
            stops that run alone, resumably.
        fences: each run's claim (the agent's); every write of a run's state checks its own.
        stop_at_step: end each run's session after that step as a preemption would.
        on_checkpoint: what the caller hangs on each run's checkpoints (train_run).
    Returns:
        The runs' summaries, in the order of `plans`; None for a run another agent took over (its fence
        lost), which leaves the pack alone while the others train on.
    Raises:
        UsageError: the runs cannot share a step (different shapes, batch sizes, optimizer constants, or a
            mesh over several devices).
    """
    fences = fences or [None] * len(plans)
    options = dict(stop_at_step=stop_at_step, on_checkpoint=on_checkpoint)
    if len(plans) == 1:  # nothing to pack with: the run as it trains alone, on whatever mesh it has
        plan = plans[0]
        progress = (lambda p: on_progress(plan.run_id, p)) if on_progress else None
        try:
            return [train_run(plan, home, on_progress=progress, fence=fences[0], **options)]
        except LeaseLost:
            return [None]
    if len({pack_key(p) for p in plans}) > 1:
        raise UsageError("packed runs need one shape, batch size and optimizer: "
                         + ", ".join(f"{p.run_id} ({p.shape.describe()}, batch {p.batch_size})" for p in plans))
    for plan in plans:  # before any run directory is touched
        if plan.layout().mesh.devices > 1:
            raise UsageError(f"run {plan.run_id}: packed runs train on one device (mesh={plan.config.mesh!r}, "
                             f"devices={plan.config.devices!r}); allowed: mesh=data:1 or devices=I")
    results: list[dict | Session | None] = []
    for plan, fence in zip(plans, fences):
        progress = (lambda p, run_id=plan.run_id: on_progress(run_id, p)) if on_progress else None
        try:
            results.append(Session.open(plan, home, on_progress=progress, fence=fence, **options))
        except LeaseLost:  # taken over before it opened (this agent was suspended past its lease): not ours
            results.append(None)
    sessions = [r for r in results if isinstance(r, Session)]
    if sessions:
        run_loop(sessions, Packed(sessions))
    return [r.result if isinstance(r, Session) else r for r in results]


class Packed:
    """The step driver of a pack: the runs' parameters and optimizer states stacked on a leading axis (a
    run's slot), one compiled call for all of them; a run's own slice is taken when its hooks or its end
    read it."""

    def __init__(self, sessions: list[Session]):
        first = sessions[0]
        cfg, plan = first.plan.config, first.plan
        dtype_name = np.dtype(compute_dtype(cfg.dtype)).name
        self.train_steps = packed_fns(plan.shape, dtype_name, cfg.beta1, cfg.beta2, cfg.weight_decay, cfg.grad_clip,
                                      first.attention,
                                      parametrization=Parametrization.of_config(cfg),
                                      remat=plan.remat or "none").train_steps
        device = first.place.mesh.devices.flat[0]
        stack = lambda *leaves: jax.device_put(jnp.stack(leaves), device)  # noqa: E731
        self.params = jax.tree.map(stack, *[s.state.params for s in sessions])
        self.opt_state = jax.tree.map(stack, *[s.state.opt_state for s in sessions])
        self.steps_per_call = max(s.plan.steps_per_call for s in sessions)
        self.pack_size = len(sessions)
        self.slot = {id(s): i for i, s in enumerate(sessions)}

    def advance(self, live: list[Session], n: int) -> None:
        xs, ys, lrs, active = self._call_inputs(live, n)
        self.params, self.opt_state, losses, norms = self.train_steps(self.params, self.opt_state, xs, ys, lrs,
                                                                      active)
        losses, norms = np.asarray(losses), np.asarray(norms)
        for m in live:
            s, slot = m.state, self.slot[id(m)]
            s.step += n
            s.losses.append(losses[:n, slot])
            s.grad_norm = norms[n - 1, slot]
            s.clock.tick(losses, n)

    def own(self, member: Session) -> None:
        slot = self.slot[id(member)]
        member.state.params = _slice(self.params, slot)
        member.state.opt_state = _slice(self.opt_state, slot)

    def _call_inputs(self, live: list[Session], n: int) -> tuple:
        """The call's (steps_per_call, pack_size, batch, seq_len) inputs and targets, and its
        (steps_per_call, pack_size) learning rates and active mask: each live run's next n steps; zeros
        (inactive) for the padding and for runs that have ended."""
        plan, shape = live[0].plan, (self.steps_per_call, self.pack_size)
        windows = np.zeros(shape + (plan.batch_size, plan.shape.seq_len + 1), np.int32)
        lrs = np.zeros(shape, np.float32)
        active = np.zeros(shape, bool)
        for m in live:
            p, step, slot = m.plan, m.state.step, self.slot[id(m)]
            for j in range(n):
                windows[j, slot] = data_lib.batch_windows(p.corpus, p.config.seed, step + j, p.batch_size,
                                                          p.shape.seq_len)
            lrs[:n, slot] = m.lrs[step:step + n]
            active[:n, slot] = True
        return windows[..., :-1], windows[..., 1:], lrs, active


@jax.jit
def _slice(tree, slot: int):
    # One compiled call for the whole tree: indexed leaf by leaf, each leaf was its own dispatch (~1 ms on
    # CPU), a quarter of a small packed sweep's time.
    return jax.tree.map(lambda leaf: leaf[slot], tree)


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
