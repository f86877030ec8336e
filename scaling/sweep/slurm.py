"""SLURM: local agents submitted as a job array through submitit. Each array task is one
`Agent` over the shared run home; the SQLite queue hands every run to exactly one of them.

The run home must be on a file system all nodes see, and SQLite's locks must work there: that holds
for a local disk (one node) and for most Lustre/GPFS/BeeGFS mounts with POSIX locks on; it does not
hold on many NFS mounts. On such clusters use W&B's online agents instead.
"""
from __future__ import annotations

import os
import shutil
import signal

from scaling import preempt
from scaling.errors import UsageError
from scaling.runs import RunHome
from scaling.sweep.agent import Agent
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
    if executor not in ("slurm", "local"):
        raise UsageError(f"--executor {executor!r}: allowed slurm, local")
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise UsageError("SLURM not found (no sbatch on PATH); --executor local runs the agents on this machine")
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
    params["slurm_array_parallelism"] = parallel
    for key, value in (("slurm_partition", partition), ("slurm_account", account), ("slurm_qos", qos)):
        if value:
            params[key] = value
    ex.update_parameters(**params)
    overrides = {"wandb": wandb} if wandb else {}
    n = parallel
    return ex.map_array(agent_task, [home.root] * n, [sweep_id] * n, [count] * n, [lease_s] * n,
                        [isolate] * n, [overrides] * n)


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
