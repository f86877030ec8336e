"""Ray: a sweep's points as Ray tasks on a Ray cluster (`scaling sweep ray`).

Ray is the queue: it places each task where its CPUs and GPUs are free, and re-executes a task whose
worker process or node died (`max_retries`); the retried task resumes its run from the latest checkpoint
in the run directory, which must be on storage every node sees. The tasks never touch the SQLite index
(`pointwise.train_point`); this driver, one process, claims each run in the index before submitting it
(so local agents and a second driver never take it), renews those claims with each run's latest step
(what `sweep status` shows, and what it reports as the agent does), and records each run's end from its
directory when its task returns. A claim that cannot be renewed was taken over (the driver was suspended
past its lease): its task is cancelled and nothing of it is recorded.

Ray worker processes are reused between CPU tasks, and compiled steps are cached per process by shape,
so later runs of one shape on a reused worker skip compilation. Ray gives GPU tasks a fresh process each
(a JAX process cannot move to another GPU). `ray` is an optional extra, imported only here.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from scaling import preempt
from scaling.agents.agent import agent_name
from scaling.agents.events import Claimed, Event, Finished, RunProgress, RunResult, Stopped, sweep_done
from scaling.agents.lease import Claim, Heartbeat
from scaling.agents.pointwise import progress, record_outcome, train_point
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.runs import Fence, IndexedRun, RunHome, queue
from scaling.sweep.register import require_sweep


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("ray is not installed: pip install 'scaling-workbench[ray]'") from None
    return ray


def run_on_ray(home: RunHome | str | None, sweep_id: str, *, address: str | None = None, cpus_per_run: float = 1.0,
               gpus_per_run: float = 0.0, max_concurrent: int | None = None, max_retries: int = 3,
               lease_s: float = 60.0, max_attempts: int = 3, overrides: dict | None = None,
               on_event: Callable[[Event], None] | None = None) -> list[RunResult]:
    """Run a sweep's free points as Ray tasks until none is left; returns one result per task.

    Args:
        address: the cluster (`auto`, `ray://HOST:10001`, an IP:port); None: $RAY_ADDRESS, else a Ray
            started on this machine for the command's duration. A Ray already initialised in this process
            is used as it is.
        cpus_per_run, gpus_per_run: each task's resource request.
        max_concurrent: tasks in flight at once (default: as many as the cluster's CPUs and GPUs hold now).
        max_retries: how often Ray re-executes a task whose worker or node died.
        lease_s, max_attempts: the driver's claims, as an agent's (`sweep agent --lease/--max-attempts`).
        overrides: config keys set on every run (e.g. wandb=off).
    """
    home = RunHome.of(home)
    require_sweep(home, sweep_id)
    if not cpus_per_run > 0:
        raise UsageError(f"--cpus-per-run {cpus_per_run}: must be positive")
    if gpus_per_run < 0:
        raise UsageError(f"--gpus-per-run {gpus_per_run}: must be >= 0")
    if max_concurrent is not None and max_concurrent < 1:
        raise UsageError(f"--max-concurrent {max_concurrent}: must be at least 1")
    if max_retries < 0:
        raise UsageError(f"--max-retries {max_retries}: must be >= 0")
    if not lease_s > 0:
        raise UsageError(f"--lease {lease_s}: must be positive seconds")
    overrides = dict(overrides or {})
    RunConfig.from_dict({"d_model": 16, "tokens": 1, **overrides})  # refuse bad overrides before Ray starts
    home.check_writable()
    ray = import_ray()
    on_event = on_event or (lambda event: None)

    started = not ray.is_initialized()
    # A Ray this command starts is this command's to end: on a stop (SIGTERM, Ctrl-C) or an error the
    # finally below shuts it down; a driver killed outright leaves that to the watcher.
    reaper = _start_reaper() if started else None
    try:
        if started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        limit = max_concurrent or max(1, _capacity(ray.cluster_resources(), cpus_per_run, gpus_per_run))
        # The resources go on the function itself, not on .options(): only then does Ray give a GPU task a
        # fresh worker process each time (max_calls=1), which a JAX process bound to one GPU needs.
        remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=max_retries,
                            retry_exceptions=False)(train_point)

        def submit(run: IndexedRun):
            return remote.options(name=f"scaling {run.run_id}").remote(home.root, run.run_id,
                                                                       {**run.config, **overrides})

        return _drive(ray, submit, home, sweep_id, limit, lease_s, max_attempts, on_event)
    finally:
        try:
            if started:
                ray.shutdown()
        finally:
            if reaper is not None:
                _stop_reaper(reaper)


def _start_reaper() -> subprocess.Popen | None:
    """The watcher (ray_reaper.py) that ends this driver's Ray processes once the driver is gone, or None
    where it cannot start (the driver then relies on Ray's own clean-up alone)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ray_reaper.py")
    try:
        return subprocess.Popen([sys.executable, "-S", script, str(os.getpid())], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
    except OSError:
        return None


def _stop_reaper(reaper: subprocess.Popen) -> None:
    """Close the watcher's pipe (what the driver's death would do) and let it end what Ray left."""
    try:
        reaper.stdin.close()
        reaper.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass


def _capacity(resources: dict, cpus: float, gpus: float) -> int:
    fits = [int(resources.get("CPU", 0) // cpus)]
    if gpus:
        fits.append(int(resources.get("GPU", 0) // gpus))
    return min(fits)


def _drive(ray, submit, home: RunHome, sweep_id: str, limit: int, lease_s: float, max_attempts: int,
           on_event) -> list[RunResult]:
    name = "ray:" + agent_name()
    leases = Heartbeat(home, lease_s, name="ray-leases")
    leases.start()
    in_flight: dict = {}  # object ref -> (run, claim, submitted at)
    shown: dict[str, dict | None] = {}  # run id -> the progress last reported
    results: list[RunResult] = []

    try:
        with preempt.sigterm_requests_stop():
            while True:
                while len(in_flight) < limit and not preempt.stop_requested():
                    run = queue.claim(home, sweep_id, name, lease_s, max_attempts)
                    if run is None:
                        break
                    fence = Fence(name, run.attempts)
                    try:
                        ref = submit(run)
                    except BaseException:
                        queue.release(home, run.run_id, name, token=fence.token)
                        raise
                    claim = leases.add(run.run_id, fence, lambda run=run: progress(home, run))
                    in_flight[ref] = (run, claim, time.perf_counter())
                    on_event(Claimed(run, *sweep_done(home, sweep_id)))
                if not in_flight or preempt.stop_requested():
                    break
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
                for ref in done:
                    run, claim, t0 = in_flight.pop(ref)
                    shown.pop(run.run_id, None)
                    error = None
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayError as err:  # the engine gave up (workers died, cancelled)
                        error = f"Ray: {_last_line(err)}"
                    held = leases.remove(claim)
                    status, reason, summary = (record_outcome(home, run, claim.fence, error) if held
                                               else ("lost", None, None))
                    result = RunResult(run.run_id, status, reason, summary, run.resumed, time.perf_counter() - t0,
                                       None)
                    results.append(result)
                    on_event(Finished(result, *sweep_done(home, sweep_id)))
                for ref, (run, claim, _) in in_flight.items():
                    if claim.lost:
                        ray.cancel(ref, force=True)
                    elif claim.last_progress and claim.last_progress != shown.get(run.run_id):
                        shown[run.run_id] = claim.last_progress
                        on_event(_progress_event(run.run_id, claim))
            if preempt.stop_requested():
                on_event(Stopped("stop requested: tasks cancelled, their runs resume from their checkpoints"))
    finally:
        # A stop, Ctrl-C or a driver error: the tasks die with this driver anyway (Ray's ownership), so
        # cancel them and hand their runs back as resumable.
        for ref, (run, claim, _) in in_flight.items():
            ray.cancel(ref, force=True)
            if leases.remove(claim):
                queue.release(home, run.run_id, claim.fence.agent, token=claim.fence.token)
        leases.stop()
    return results


def _progress_event(run_id: str, claim: Claim) -> RunProgress:
    """The run's latest step as its lease was renewed with it (read from its metrics file)."""
    p = claim.last_progress or {}
    return RunProgress(run_id, p.get("step"), p.get("steps"), p.get("loss"), p.get("eval_loss"), None)


def _last_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(err).__name__
