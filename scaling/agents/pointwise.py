"""One point as one task of an engine that schedules for itself (Ray, SLURM arrays with a task per
point): what the task runs on whichever node it lands, and how its launcher records the outcome.

The engine is the queue: it places the task, retries it when its worker or node dies, requeues it when
it is preempted. The task trains its run by the run directory alone (`FilesOnlyHome`), so a retried or
requeued task resumes from the run's latest checkpoint, and a finished run returns its stored result.
"""
from __future__ import annotations

import os
import sys
import traceback

from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.runs import Fence, IndexedRun, RunHome, RunStore, is_result, queue
from scaling.runs.detached import FilesOnlyHome
from scaling.runs.files import last_metrics_row
from scaling.train import plan_run, train_run
from scaling.train.branches import Branching


def train_point(home_root: str, run_id: str, config: dict) -> dict:
    """Train (or resume, or return the finished result of) one run; returns its summary.

    A run that cannot be trained (a bad value, a shape this node cannot hold, a bug) gets a `failed`
    summary with the reason in its directory, as an agent would record it: the directory must say how the
    point ended, since nothing else of the task may outlive it."""
    home = FilesOnlyHome(home_root)
    try:
        return train_run(plan_run(RunConfig.from_dict(config)), home, on_checkpoint=Branching())
    except Exception as err:  # noqa: BLE001 - recorded in the run directory, the task itself succeeds
        if not isinstance(err, UsageError):
            traceback.print_exc(file=sys.stderr)
        reason = str(err) if isinstance(err, UsageError) else f"{type(err).__name__}: {err}"
        return _record_failure(home, run_id, config, reason)


def _record_failure(home: RunStore, run_id: str, config: dict, reason: str) -> dict:
    files = home.files(run_id)
    kept = files.read_summary()
    if is_result(kept):  # a finished result is never replaced by less
        return kept
    summary = {**(kept or {}), "run_id": run_id, "sweep_id": config.get("sweep"), "status": "failed",
               "reason": reason}
    try:
        os.makedirs(files.path, exist_ok=True)
        files.write_summary(summary)
    except OSError:  # the same full or read-only disk that failed the run: the task's result still says it
        pass
    return summary


def progress(home: RunHome, run: IndexedRun) -> dict | None:
    """A run's latest logged step, read from its metrics file (what `sweep status` shows)."""
    last = last_metrics_row(home.files(run.run_id).metrics)
    if not last:
        return None
    return {"step": last.get("step"), "steps": (run.plan or {}).get("steps"), "loss": last.get("loss"),
            "eval_loss": last.get("eval_loss")}


def record_outcome(home: RunHome, run: IndexedRun, fence: Fence,
                   error: str | None = None) -> tuple[str, str | None, dict | None]:
    """The launcher's half: set the run's index row from what its directory says, under the launcher's
    claim, and end the claim. Returns (status, reason, summary); `lost` when the claim was taken over.

    `error` is the engine's word when the task itself never returned (its workers kept dying, so the
    engine gave up): the run is failed unless its directory holds a finished end."""
    summary = home.files(run.run_id).read_summary()
    status = (summary or {}).get("status")
    if status in ("complete", "diverged", "failed") or (status == "interrupted" and error is None):
        reason = summary.get("reason")
        if not home.record_state(run.run_id, status, run.config, summary, sweep_id=run.sweep_id, reason=reason,
                                 fence=fence):
            return "lost", None, summary
        # The row's status is set above; the release only ends the claim.
        queue.release(home, run.run_id, fence.agent, token=fence.token)
        return status, reason, summary
    reason = error or "the task ended without recording the run"
    if not queue.release(home, run.run_id, fence.agent, "failed" if error else None, reason, token=fence.token):
        return "lost", None, None
    return ("failed" if error else "interrupted"), reason, None
