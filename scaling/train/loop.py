"""One training run: open (or resume, or return the finished result of) a run directory, step through
the plan with the default hooks (train.hooks.run_loop, with this run's own step driver), and record the
summary."""
from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable

import jax
import numpy as np

from scaling import data as data_lib
from scaling import hardware
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.family import Parametrization
from scaling.runs import Fence, LeaseLost, LocalTracker, RunDir, RunStore, RunWriter, is_result, open_store
from scaling.runs.files import storage_error
from scaling.track import WandbTracker, wandb_mode
from scaling.train import distributed
from scaling.train.checkpoints import Checkpoints, checkpoint_state
from scaling.train.distributed import to_float
from scaling.train.evalsets import set_metrics
from scaling.train.hooks import CheckpointHook, Clock, LoopState, Progress, default_hooks, run_loop
from scaling.train.limits import check_plan, resolve_plan
from scaling.train.plan import RunPlan
from scaling.train.record import changed_keys, run_record
from scaling.train.record import summary as run_summary
from scaling.train.step import (
    Layout,
    compiled_fns,
    compute_dtype,
    placement,
    use_compilation_cache,
)


def train_run(plan: RunPlan, home: RunStore | str | None = None, *,
              on_progress: Callable[[Progress], None] | None = None, stop_at_step: int | None = None,
              trackers: list | None = None, fence: Fence | None = None,
              on_checkpoint: CheckpointHook | None = None) -> dict:
    """Train (or resume, or return the finished summary of) one run.

    Args:
        plan: from `plan_run`.
        home: the run home (a RunHome or another RunStore, or its path; None for the default).
        on_progress: called at every logged step; may raise Interrupted to stop the run resumably.
        stop_at_step: end the session after that step as a preemption would (checkpoint, `interrupted`).
        trackers: the tracking back ends (default: the run directory, and W&B unless `wandb=off`).
        fence: the agent's claim on the run; every write of the run's state checks it is still current.
        on_checkpoint: what the caller hangs on the run's checkpoints (its cooldown branches:
            train.branches.Branching); none by default.
    Returns:
        The summary (also written to summary.json): status, N, D, C, losses, speed.
    Raises:
        UsageError: the run id exists with a different config, or the plan cannot fit this machine.
        StorageError: the run home filled up or became read-only mid-run (recorded as `failed`).
        LeaseLost: another agent took the run over; nothing of the run was written after that.
    """
    session = Session.open(plan, home, on_progress=on_progress, stop_at_step=stop_at_step, trackers=trackers,
                           fence=fence, on_checkpoint=on_checkpoint)
    if isinstance(session, dict):
        return session
    run_loop([session], OneRun(session))
    if session.lost is not None:
        raise session.lost
    return session.result


class OneRun:
    """The step driver of a run alone: its own compiled step (or `steps_per_call` steps per call) on its
    own mesh, its parameters in its state."""

    def __init__(self, session: Session):
        self.state, self.plan, self.place, self.lrs = session.state, session.plan, session.place, session.lrs
        self.steps_per_call = self.plan.steps_per_call
        fns = session.fns
        if self.steps_per_call == 1:
            self.train_step, self.advance = fns.train_step, self._step
        else:
            self.train_step, self.advance = fns.train_steps, self._steps

    def _step(self, live: list, n: int) -> None:
        s = self.state
        x, y = global_batch(self.plan, s.step, self.place)
        s.params, s.opt_state, loss, s.grad_norm = self.train_step(s.params, s.opt_state, x, y, self.lrs[s.step])
        s.step += 1
        s.losses.append(loss)
        s.clock.tick(loss)

    def _steps(self, live: list, n: int) -> None:
        s, per_call = self.state, self.steps_per_call
        xs, ys = global_batches(self.plan, s.step, n, per_call, self.place)
        lrs = np.zeros(per_call, np.float32)
        lrs[:n] = self.lrs[s.step:s.step + n]
        s.params, s.opt_state, losses, norms = self.train_step(s.params, s.opt_state, xs, ys, lrs,
                                                               np.arange(per_call) < n)
        loss, s.grad_norm = (losses if n == per_call else losses[:n]), norms[n - 1]
        s.step += n
        s.losses.append(loss)
        s.clock.tick(loss, n)

    def own(self, member) -> None:
        """Nothing to do: the state holds the run's parameters throughout."""


class Session:
    """One run's session: its directory, trackers, checkpoints, loop state and hooks, whatever step driver
    moves its parameters (its own, or a pack's); a member of train.hooks.run_loop."""

    def __init__(self, plan: RunPlan, home: RunStore, files: RunDir, tracker: RunWriter, layout: Layout,
                 on_progress, stop_at_step: int | None, on_checkpoint: CheckpointHook | None = None):
        cfg, shape = plan.config, plan.shape
        self.plan, self.home, self.files, self.tracker = plan, home, files, tracker
        dtype_name = np.dtype(compute_dtype(cfg.dtype)).name
        self.attention = plan.attention_kernel
        self.fns = compiled_fns(shape, dtype_name, cfg.beta1, cfg.beta2, cfg.weight_decay, cfg.grad_clip, layout,
                                self.attention, Parametrization.of_config(cfg),
                                remat=plan.remat or "none")
        self.place = placement(layout)
        self.ceiling = hardware.run_ceiling(layout.mesh.devices)
        self.lrs = plan.lr_schedule()
        self.ckpt = Checkpoints(files.checkpoints)
        self.state = _initial_state(plan, self.fns.init, self.ckpt, self.ceiling, self.place)
        self.result: dict | None = None
        self.lost: LeaseLost | None = None
        self.on_checkpoint = on_checkpoint if distributed.is_writer() else None
        self.save_at = on_checkpoint.steps(plan) if on_checkpoint is not None else frozenset()
        self.hooks = default_hooks(plan, self.lrs, eval_fn=self.evaluate, tracker=tracker, save=self.save,
                                   on_progress=on_progress, stop_at_step=stop_at_step, save_at=self.save_at,
                                   sets_fn=self.evaluate_sets if plan.evals else None)
        if self.on_checkpoint is not None:
            self.on_checkpoint.opened(plan, home, files, self.state.step)

    @classmethod
    def open(cls, plan: RunPlan, home: RunStore | str | None = None, *, on_progress=None,
             stop_at_step: int | None = None, trackers: list | None = None,
             fence: Fence | None = None, on_checkpoint: CheckpointHook | None = None) -> Session | dict:
        """A session ready to step, or the run's finished summary when it has one (see train_run)."""
        use_compilation_cache()
        for logger in ("absl", "asyncio"):  # a filter is added once however often this runs
            logging.getLogger(logger).addFilter(_QUIET_STORAGE)
        distributed.initialize(plan.config)
        layout = plan.layout()  # refuses a mesh or batch the devices cannot take, before anything is written
        # the attention kernel and remat policy this machine runs: compiled, recorded and counted by
        plan = resolve_plan(plan, np.dtype(compute_dtype(plan.config.dtype)).name, jax.devices()[0].platform)
        check_plan(plan)
        home = open_store(home)
        files = home.files(plan.run_id)
        rec = run_record(plan, layout)
        finished = _finished_result(plan, home, files, rec, fence)
        if finished is not None:
            return finished
        _refuse_if_claimed(home, plan.run_id, fence)

        writer = distributed.is_writer()
        if not writer:
            trackers = []
        tracker = RunWriter(home, plan.run_id, default_trackers(plan, files) if trackers is None else trackers,
                            fence=fence, sweep_id=plan.config.sweep, index=writer)
        try:
            tracker.start(rec)
        except Exception as err:
            _raise_storage(err, f"run {plan.run_id} cannot start")
            raise
        return cls(plan, home, files, tracker, layout, on_progress, stop_at_step, on_checkpoint)

    def evaluate(self, params, corpus: data_lib.Corpus | None = None) -> float:
        """The mean loss over the fixed validation batches of the run's corpus (or of `corpus`)."""
        plan, place = self.plan, self.place
        total, n = 0.0, 0
        # In the rows of one microbatch, as training holds them: a whole batch's logits may not fit the device.
        rows = plan.batch_size // plan.config.microbatches
        for x, y in data_lib.eval_batches(corpus or plan.corpus, plan.config.eval_tokens, rows, plan.shape.seq_len):
            gx, gy = (jax.make_array_from_callback(t.shape, place.replicated, lambda i, t=t: t[i]) for t in (x, y))
            total += to_float(self.fns.eval_loss(params, gx, gy)) * len(x)
            n += len(x)
        return total / n

    def evaluate_sets(self, params) -> dict:
        return set_metrics(self.plan.evals, lambda corpus: self.evaluate(params, corpus))

    def save(self, s: LoopState) -> None:
        self.tracker.check()
        self.ckpt.save(s.step, checkpoint_state(s.params, s.opt_state, s.clock.wall_s, self.place.replicated))
        if s.step in self.save_at and self.on_checkpoint is not None:
            self.on_checkpoint.saved(self.plan, self.home, self.files, s.step)

    def end(self, status: str) -> dict:
        """Record how the session ended (checkpoint, summary, index row); returns the summary."""
        plan, state = self.plan, self.state
        train_loss, tokens_per_s, reason = state.train_loss, None, None
        if status == "diverged" and state.row is not None:
            self.tracker.log(state.row)
        if status in ("complete", "interrupted"):
            self.save(state)
        if status == "diverged":
            reason = _divergence(state)
        if status == "complete" and state.eval_loss is None:
            # Restored at the last step (its summary was lost): recompute the result, never record less.
            state.eval_loss = self.evaluate(state.params)
            state.evals = self.evaluate_sets(state.params)
            train_loss, tokens_per_s = _final_row(self.files, plan.steps)
        summary = run_summary(plan, status=status, step=state.step, eval_loss=state.eval_loss,
                              train_loss=train_loss if math.isfinite(train_loss) else state.train_loss,
                              tokens_per_s=tokens_per_s or state.tokens_per_s, ceiling=self.ceiling,
                              wall_s=state.clock.wall_s, evals=state.evals)
        self.ckpt.close()
        return self.tracker.finish(summary, reason)

    def abandon(self, err: LeaseLost) -> None:
        """Another agent took the run over: drop it without writing."""
        self.ckpt.close()
        self.tracker.abandon()
        self.lost = err

    def fail(self, err: Exception) -> None:
        """An error stopped the run: a storage fault is recorded as `failed` where the disk allows, and
        raised as a StorageError; any other error is left to the caller to raise."""
        fault = storage_error(err, f"run {self.plan.run_id} stopped at step {self.state.step}")
        if fault is not None:
            _record_storage_fault(self.plan, self.tracker, self.ckpt, self.state, self.ceiling, str(fault))
            raise fault from err


def global_batch(plan: RunPlan, step: int, place) -> tuple:
    """Step `step`'s batch as arrays sharded over the mesh; each process computes only the rows its own
    devices hold, from the pure batch(step) function."""
    cfg, seq_len = plan.config, plan.shape.seq_len
    windows = {}

    def rows(index) -> np.ndarray:
        key = (index[0].start, index[0].stop)
        if key not in windows:
            windows[key] = data_lib.batch_windows(plan.corpus, cfg.seed, step, plan.batch_size, seq_len, index[0])
        return windows[key]

    shape = (plan.batch_size, seq_len)
    return (jax.make_array_from_callback(shape, place.batch, lambda i: rows(i)[:, :-1]),
            jax.make_array_from_callback(shape, place.batch, lambda i: rows(i)[:, 1:]))


def global_batches(plan: RunPlan, step: int, n: int, steps_per_call: int, place) -> tuple:
    """The batches of steps step..step+n-1 stacked as (steps_per_call, batch, seq_len) arrays, rows sharded
    as `global_batch` shards them; the rows after them are zeros (steps the call leaves inactive)."""
    cfg, seq_len = plan.config, plan.shape.seq_len
    windows = {}

    def rows(index) -> np.ndarray:
        key = (index[1].start, index[1].stop)
        if key not in windows:
            first = data_lib.batch_windows(plan.corpus, cfg.seed, step, plan.batch_size, seq_len, index[1])
            out = np.zeros((steps_per_call,) + first.shape, np.int32)
            out[0] = first
            for i in range(1, n):
                out[i] = data_lib.batch_windows(plan.corpus, cfg.seed, step + i, plan.batch_size, seq_len, index[1])
            windows[key] = out
        return windows[key]

    shape = (steps_per_call, plan.batch_size, seq_len)
    return (jax.make_array_from_callback(shape, place.steps, lambda i: rows(i)[:, :, :-1]),
            jax.make_array_from_callback(shape, place.steps, lambda i: rows(i)[:, :, 1:]))


def _finished_result(plan: RunPlan, home: RunStore, files: RunDir, rec: dict, fence: Fence | None) -> dict | None:
    """The stored result when this run already completed; refuses a changed config under its id.

    A result lives in two places, summary.json and the index row; if summary.json is torn or gone (or
    config.yaml is), it is restored from the row. With neither, the run resumes from its final checkpoint
    and evaluates it (train_run), so a finished result is recomputed, never replaced by less."""
    old = files.read_record()
    row = home.indexed_run(plan.run_id)
    if old is None and row is not None and row.config:
        try:
            old = {"config": RunConfig.from_dict(row.config).to_dict()}
        except UsageError:  # a row from an older version of the config
            old = None
    if old is not None:
        diff = changed_keys(old, rec)
        if diff:
            raise UsageError(f"run_id={plan.run_id!r} exists with a different config ({', '.join(diff)}); "
                             "use another run_id")
    indexed = row.summary if row is not None and row.status == "complete" and is_result(row.summary) else None
    done = files.read_summary()
    if not (is_result(done) and _same_run(done, plan)):
        done = indexed if indexed is not None and _same_run(indexed, plan) else None
    if done is None:
        return None
    if not distributed.is_writer() or (indexed is not None and files.read_record() is not None
                                       and is_result(files.read_summary())):
        return done

    def restore() -> None:  # whichever of the two files was lost
        if files.read_record() is None:
            files.write_record(rec)
        if not is_result(files.read_summary()):
            files.write_summary(done)

    if not home.record_state(plan.run_id, "complete", rec["config"], done, sweep_id=plan.config.sweep, fence=fence,
                             write=restore):
        raise LeaseLost(f"run {plan.run_id}: {fence} was taken over by another agent")
    return done


def _same_run(summary: dict, plan: RunPlan) -> bool:
    """Whether a stored summary is this plan's (checked when config.yaml cannot be)."""
    expected = {"params": plan.shape.params, "steps": plan.steps, "batch_size": plan.batch_size,
                "seq_len": plan.shape.seq_len, "seed": plan.config.seed, "corpus_fingerprint": plan.corpus.fingerprint}
    return all(summary.get(k) == v for k, v in expected.items()) and math.isclose(summary.get("lr") or 0, plan.lr)


def _refuse_if_claimed(home: RunStore, run_id: str, fence: Fence | None) -> None:
    """A run an agent is training (its lease is live) is not started a second time by hand."""
    row = home.indexed_run(run_id) if fence is None else None
    if row is not None and row.status == "running" and row.claimed_by and (row.lease_until or 0) > time.time():
        raise UsageError(f"run_id={run_id!r} is being trained by agent {row.claimed_by} (its lease runs "
                         f"{row.lease_until - time.time():.0f} s more); stop that agent or use another run_id")


def _divergence(state: LoopState) -> str:
    """Which loss stopped being finite, and at which step (for the summary and the report)."""
    if not math.isfinite(state.train_loss):
        return f"train loss {state.train_loss} at step {state.step}"
    return f"eval loss {state.eval_loss} at step {state.step}"


def _final_row(files: RunDir, steps: int) -> tuple[float, float | None]:
    """(train loss, tokens/s) logged at the last step, for a result recomputed from its checkpoint."""
    for row in reversed(files.read_metrics()):
        if row.get("step") == steps and isinstance(row.get("loss"), (int, float)):
            return float(row["loss"]), row.get("tokens_per_s")
    return math.nan, None


class _StorageFaultLogs(logging.Filter):
    """orbax logs each background write that a full or read-only disk failed, with its traceback, before
    its save raises (and asyncio the ones nobody awaited, at exit); the run reports that fault itself, in
    one line (StorageError), so these are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return storage_error(Exception(record.getMessage()), "") is None


_QUIET_STORAGE = _StorageFaultLogs()


def _raise_storage(err: BaseException, what: str) -> None:
    fault = storage_error(err, what)
    if fault is not None:
        raise fault from err


def _record_storage_fault(plan: RunPlan, tracker: RunWriter, ckpt: Checkpoints, state: LoopState,
                          ceiling: float | None, reason: str) -> None:
    """The run stopped because its storage failed: free what the cut-short save took, then record
    `failed` with the reason if the disk lets us (a rerun resumes from the last intact checkpoint)."""
    ckpt.discard_partial()
    try:
        ckpt.close()
    except Exception:  # noqa: BLE001 - closing after a failed save may fail the same way
        pass
    summary = run_summary(plan, status="failed", step=state.step, eval_loss=None, train_loss=state.train_loss,
                          tokens_per_s=state.tokens_per_s, ceiling=ceiling, wall_s=state.clock.wall_s)
    try:
        tracker.finish(summary, reason)
    except Exception:  # noqa: BLE001 - the same full or read-only disk; the error is raised anyway
        tracker.abandon()


def _initial_state(plan: RunPlan, init, ckpt: Checkpoints, ceiling: float | None, place) -> LoopState:
    """A fresh state from the seed, or the latest intact checkpoint's, placed on this run's mesh (which
    may differ from the mesh that saved it). A damaged checkpoint is set aside with one line on stderr."""
    params, opt_state = init(np.uint32(plan.config.seed))
    found = ckpt.restore_intact(checkpoint_state(params, opt_state, 0.0, place.replicated),
                                warn=lambda line: print(f"scaling: run {plan.run_id}: {line}", file=sys.stderr))
    if found is None:
        return LoopState(plan, 0, params, opt_state, Clock(), ceiling)
    latest, restored = found
    return LoopState(plan, latest, restored["params"], restored["opt_state"],
                     Clock(to_float(restored["wall_s"])), ceiling)


def default_trackers(plan: RunPlan, files: RunDir) -> list:
    """The run directory first (so it is written even if W&B fails), then W&B unless it is off."""
    trackers = [LocalTracker(files)]
    mode = wandb_mode(plan.config.wandb)
    if mode is not None:
        trackers.append(WandbTracker(
            files.path, mode=mode, project=plan.config.wandb_project, run_id=plan.run_id, name=plan.name,
            group=plan.config.sweep, tags=[plan.corpus.name, plan.shape.describe()],
        ))
    return trackers
