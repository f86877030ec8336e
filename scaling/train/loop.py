"""One training run: open (or resume, or return the finished result of) a run directory, step through
the plan with the default hooks, and record the summary."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scaling import data as data_lib
from scaling import hardware, preempt
from scaling.errors import UsageError
from scaling.runs import LocalTracker, RunDir, RunHome
from scaling.track import Trackers, WandbTracker, wandb_mode
from scaling.train.checkpoints import Checkpoints, checkpoint_state
from scaling.train.hooks import Clock, LoopState, Progress, default_hooks, run_loop
from scaling.train.plan import RunPlan
from scaling.train.record import changed_keys, run_record
from scaling.train.record import summary as run_summary
from scaling.train.step import compiled_fns, compute_dtype


def train_run(plan: RunPlan, home: RunHome | str | None = None, *,
              on_progress: Callable[[Progress], None] | None = None,
              stop_at_step: int | None = None, trackers: list | None = None) -> dict:
    """Train (or resume, or return the finished summary of) one run.

    Args:
        plan: from `plan_run`.
        home: the run home (a RunHome or its path; None for the default).
        on_progress: called at every logged step; may raise Interrupted to stop the run resumably.
        stop_at_step: end the session after that step as a preemption would (checkpoint, `interrupted`).
        trackers: the tracking back ends (default: the run directory, and W&B unless `wandb=off`).
    Returns:
        The summary (also written to summary.json): status, N, D, C, losses, speed.
    Raises:
        UsageError: the run id exists with a different config.
    """
    home = RunHome.of(home)
    files = home.files(plan.run_id)
    rec = run_record(plan)
    finished = _finished_result(plan, files, rec)
    if finished is not None:
        return finished

    tracker = Trackers(*(default_trackers(plan, files) if trackers is None else trackers))
    tracker.start(rec)
    home.index_run(plan.run_id, "running", rec["config"], sweep_id=plan.config.sweep)

    cfg, shape = plan.config, plan.shape
    init, train_step, eval_loss_fn = compiled_fns(shape, np.dtype(compute_dtype(cfg.dtype)).name, cfg.beta1,
                                                  cfg.beta2, cfg.weight_decay, cfg.grad_clip)
    ceiling, _ = hardware.ceiling_flops()
    lrs = plan.lr_schedule()
    ckpt = Checkpoints(files.checkpoints)
    state = _initial_state(plan, init, ckpt, ceiling)

    def evaluate(params) -> float:
        total, n = 0.0, 0
        for x, y in data_lib.eval_batches(plan.corpus, cfg.eval_tokens, plan.batch_size, shape.seq_len):
            total += float(eval_loss_fn(params, x, y)) * len(x)
            n += len(x)
        return total / n

    def save(s: LoopState) -> None:
        ckpt.save(s.step, checkpoint_state(s.params, s.opt_state, s.clock.wall_s))

    def batch(step: int):
        return data_lib.batch(plan.corpus, cfg.seed, step, plan.batch_size, shape.seq_len)

    hooks = default_hooks(plan, lrs, eval_fn=evaluate, tracker=tracker, save=save, on_progress=on_progress,
                          stop_at_step=stop_at_step)
    # The final save happens inside too: a SIGTERM arriving during it only sets the stop flag.
    with preempt.sigterm_requests_stop():
        status = run_loop(state, train_step, batch, lrs, hooks)
        if status == "diverged" and state.row is not None:
            tracker.log(state.row)
        if status in ("complete", "interrupted"):
            save(state)
    ckpt.close()
    summary = run_summary(plan, status=status, step=state.step, eval_loss=state.eval_loss,
                             train_loss=state.train_loss, tokens_per_s=state.tokens_per_s, ceiling=ceiling,
                             wall_s=state.clock.wall_s)
    tracker.finish(summary)
    home.index_run(plan.run_id, status, rec["config"], summary, sweep_id=cfg.sweep)
    return summary


def _finished_result(plan: RunPlan, files: RunDir, rec: dict) -> dict | None:
    """The stored summary when this run already completed; refuses a changed config under its id."""
    old = files.read_record()
    if old is None:
        return None
    diff = changed_keys(old, rec)
    if diff:
        raise UsageError(f"run_id={plan.run_id!r} exists with a different config ({', '.join(diff)}); "
                         "use another run_id")
    done = files.read_summary()
    return done if done and done.get("status") == "complete" else None


def _initial_state(plan: RunPlan, init, ckpt: Checkpoints, ceiling: float | None) -> LoopState:
    """A fresh state from the seed, or the latest checkpoint's."""
    params, opt_state = init(np.uint32(plan.config.seed))
    latest = ckpt.latest_step()
    if latest is None:
        return LoopState(plan, 0, params, opt_state, Clock(), ceiling)
    restored = ckpt.restore(latest, checkpoint_state(params, opt_state, 0.0))
    return LoopState(plan, latest, restored["params"], restored["opt_state"], Clock(float(restored["wall_s"])),
                     ceiling)


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
