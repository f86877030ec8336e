"""SLURM job arrays through submitit, in two modes.

Agents (`sweep slurm --parallel K`): each array task is one `Agent` over the shared run home, and the
SQLite queue hands every run to exactly one of them. SQLite's locks must work on the home's file system:
a local disk (one node), most Lustre/GPFS/BeeGFS mounts with POSIX locks on; not many NFS mounts.

A task per point (`sweep slurm --per-point`): SLURM is the queue. The submitting command holds every
free point in the index (one process on the login node), then submits one array task per point; each
task trains its one run by the run directory alone and takes no lock (`pointwise.train_point`). A task
warned before its time limit or preemption (submitit asks SLURM for USR2) checkpoints at the next step
and is requeued through submitit's checkpointing protocol (`PointTask.checkpoint`); the requeued task
resumes from that checkpoint. `sweep status` and `scaling runs` read each finished run's end from its
directory (`rebuild.refresh_from_files`). This mode works wherever the home is shared, NFS included.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import uuid

from scaling import preempt
from scaling.agents import pointwise
from scaling.agents.agent import Agent, agent_name
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.runs import IndexedRun, RunHome, queue
from scaling.sweep.register import require_sweep


def log_folder(home: RunHome | str | None, folder: str | None = None) -> str:
    home = RunHome.of(home)
    return os.path.abspath(folder) if folder else os.path.join(home.root, ".slurm")


def agent_task(home: str, sweep_id: str, count: int | None, lease_s: float, isolate: bool,
               overrides: dict) -> dict:
    """What one array task runs (pickled by submitit, so it lives at module level)."""
    # SLURM warns a job with a signal (submitit asks for USR2) before its time limit or preemption;
    # submitit's own handler would exit mid-step. As a stop request it reaches the trainer instead,
    # which checkpoints and stops; the agent releases the run for whichever agent comes next.
    agent = Agent(home, sweep_id, lease_s=lease_s, isolate=isolate, overrides=overrides)
    with preempt.sigterm_requests_stop(signal.SIGUSR1, signal.SIGUSR2):
        results = agent.run(count=count)
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r.status] = statuses.get(r.status, 0) + 1
    return {"agent": agent.name, "ran": len(results), "statuses": statuses}


def submit_agents(home, sweep_id: str, *, parallel: int = 1, executor: str = "slurm", partition: str | None = None,
                  time_min: int = 60, gpus: int = 0, cpus: int | None = None, mem_gb: int | None = None,
                  account: str | None = None, qos: str | None = None, count: int | None = None,
                  lease_s: float = 60.0, isolate: bool = False, wandb: str | None = None,
                  folder: str | None = None) -> list:
    """Submit `parallel` agents as one job array; returns submitit's jobs."""
    home = RunHome.of(home)
    require_sweep(home, sweep_id)
    ex = _executor(home, sweep_id, executor=executor, partition=partition, time_min=time_min, gpus=gpus, cpus=cpus,
                   mem_gb=mem_gb, account=account, qos=qos, parallelism=parallel, folder=folder)
    overrides = {"wandb": wandb} if wandb else {}
    n = parallel
    return ex.map_array(agent_task, [home.root] * n, [sweep_id] * n, [count] * n, [lease_s] * n,
                        [isolate] * n, [overrides] * n)


def _executor(home: RunHome, sweep_id: str, *, executor: str, partition: str | None, time_min: int, gpus: int,
              cpus: int | None, mem_gb: int | None, account: str | None, qos: str | None, parallelism: int | None,
              folder: str | None):
    """A submitit executor for the sweep's array, or a UsageError saying what is missing."""
    if executor not in ("slurm", "local"):
        raise UsageError(f"--executor {executor!r}: allowed slurm, local")
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise UsageError("SLURM not found (no sbatch on PATH); --executor local runs the tasks on this machine")
    if gpus < 0:
        raise UsageError(f"--gpus {gpus}: must be >= 0")
    try:
        import submitit
    except ImportError:
        raise UsageError("submitit is not installed: pip install 'scaling-workbench[slurm]'") from None

    ex = submitit.AutoExecutor(folder=os.path.join(log_folder(home, folder), "%j"), cluster=executor)
    params = {"name": f"scaling-{sweep_id}", "timeout_min": time_min}
    if gpus:
        params["gpus_per_node"] = gpus
    if cpus:
        params["cpus_per_task"] = cpus
    if mem_gb:
        params["mem_gb"] = mem_gb
    # slurm_* keys are ignored by the local executor, so one call serves both.
    if parallelism:
        params["slurm_array_parallelism"] = parallelism
    for key, value in (("slurm_partition", partition), ("slurm_account", account), ("slurm_qos", qos)):
        if value:
            params[key] = value
    ex.update_parameters(**params)
    return ex


class PointTask:
    """What one array task of `--per-point` runs: one point, by its run directory alone.

    A checkpointable callable in submitit's protocol. submitit's own handler for the warning signal
    (USR2) would requeue at once, mid-step and without a checkpoint; while the run trains, the signal
    instead asks the trainer to stop at the next step, which saves a checkpoint and records the run
    `interrupted`. Then submitit's handler runs: it calls `checkpoint` (the same point again: the resumed
    state lives in the run directory), requeues the task and exits. SIGTERM, which SLURM sends when it
    ends a job, checkpoints and stops the same way."""

    def __call__(self, home_root: str, run_id: str, config: dict) -> dict:
        arrived: list[int] = []

        def warned(signum, frame) -> None:
            arrived.append(signum)
            preempt.request_stop()

        with preempt.sigterm_requests_stop():
            previous = {sig: signal.signal(sig, warned) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
            try:
                summary = pointwise.train_point(home_root, run_id, config)
            finally:
                for sig, old in previous.items():
                    signal.signal(sig, old)
        # submitit listens on one of the two (USR2 unless told otherwise); a cluster set to warn with the
        # other still gets the requeue.
        requeue = next((handler for handler in previous.values() if callable(handler)), None)
        if arrived and requeue is not None and summary.get("status") == "interrupted":
            requeue(arrived[0], None)  # submitit: checkpoint() below, requeue, exit
        return summary

    def checkpoint(self, home_root: str, run_id: str, config: dict):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, home_root, run_id, config)


def submit_points(home, sweep_id: str, *, array_parallelism: int | None = None, executor: str = "slurm",
                  partition: str | None = None, time_min: int = 60, gpus: int = 0, cpus: int | None = None,
                  mem_gb: int | None = None, account: str | None = None, qos: str | None = None,
                  wandb: str | None = None, folder: str | None = None) -> tuple[list, list[IndexedRun]]:
    """Hold every free point of the sweep and submit one array task per point; returns (submitit's jobs,
    the runs, in the same order). Nothing is held if nothing could be submitted."""
    home = RunHome.of(home)
    require_sweep(home, sweep_id)
    overrides = {"wandb": wandb} if wandb else {}
    RunConfig.from_dict({"d_model": 16, "tokens": 1, **overrides})
    ex = _executor(home, sweep_id, executor=executor, partition=partition, time_min=time_min, gpus=gpus, cpus=cpus,
                   mem_gb=mem_gb, account=account, qos=qos, parallelism=array_parallelism, folder=folder)
    holder = "slurm:" + agent_name()
    runs = queue.take_for_engine(home, sweep_id, holder)
    if not runs:
        return [], []
    if executor == "local" and array_parallelism is not None and array_parallelism < len(runs):
        try:
            throttle_local(ex, os.path.join(log_folder(home, folder), f"slots-{uuid.uuid4().hex[:12]}"),
                           array_parallelism)
        except BaseException:
            queue.release_engine_runs(home, holder, {r.run_id: r.status for r in runs})
            raise
    try:
        jobs = ex.map_array(PointTask(), [home.root] * len(runs), [r.run_id for r in runs],
                            [{**r.config, **overrides} for r in runs])
    except BaseException:
        queue.release_engine_runs(home, holder, {r.run_id: r.status for r in runs})
        raise
    return jobs, runs


def throttle_local(ex, folder: str, limit: int) -> None:
    """Make a local executor's array run at most `limit` of its tasks at once.

    submitit's LocalExecutor starts every task at once (slurm_array_parallelism is a SLURM key it
    drops). Each task's controller is started by a shell that first runs the executor's `setup`
    commands; there the task takes one of `limit` slot locks (flock(1) on files in `folder`), waiting
    while all are held, on descriptor 9, which the controller inherits: the slot is freed when the
    controller, and so the task, has ended. A waiting task has not started its controller, so its time
    limit (`--time`) has not started either.
    """
    if shutil.which("flock") is None:
        raise UsageError(f"--array-parallelism {limit}: the local executor limits its tasks with flock(1), "
                         "which is not on PATH (util-linux)")
    os.makedirs(folder, exist_ok=True)
    slots = " ".join(shlex.quote(os.path.join(folder, f"slot-{i}")) for i in range(limit))
    take_a_slot = (f'while :; do for slot in {slots}; do exec 9>>"$slot"; flock -n 9 && break 2; done; '
                   "sleep 0.2; done")
    ex.update_parameters(local_setup=[take_a_slot])


def wait(jobs: list) -> list[dict]:
    """Block until every task ends; one outcome per task."""
    outcomes = []
    for job in jobs:
        try:
            result = job.result()
            outcomes.append({"job_id": job.job_id, "error": None, **result})
        except Exception as err:  # submitit re-raises the task's failure here
            text = str(err).strip().splitlines()
            outcomes.append({"job_id": job.job_id, "error": text[-1] if text else type(err).__name__, "ran": 0})
    return outcomes
