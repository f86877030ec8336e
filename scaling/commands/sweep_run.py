"""`scaling sweep {agent,agents,slurm,ray}`: running a sweep's points here, on this machine's devices, on
SLURM or on Ray (scaling.agents)."""
from __future__ import annotations

import os
import sys

from scaling.commands.common import Subcommand, add_agent_options, number_above, positive_float, positive_int
from scaling.commands.sweep_design import print_status
from scaling.errors import UsageError


# ---- agent ----------------------------------------------------------------------------------------
def cmd_agent(args) -> int:
    from scaling.agents import Agent
    from scaling.commands.progress import SweepDisplay
    from scaling.sweep.status import sweep_status

    overrides = {"wandb": args.wandb} if args.wandb else {}
    if args.devices:
        # Several agents share a node: each JAX process takes GPU memory as it needs it, not all of it.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        overrides["devices"] = args.devices
    if args.count is not None and args.count < 1:
        raise UsageError(f"--count {args.count}: must be at least 1")
    agent = Agent(args.home, args.sweep, lease_s=args.lease, isolate=args.isolate, overrides=overrides,
                  wait=not args.no_wait, max_attempts=args.max_attempts, pack=args.pack)
    display = None if args.quiet else SweepDisplay(runnable=lambda: sweep_status(args.home, args.sweep).runnable)
    if display:
        agent.on_event = display
    try:
        results = agent.run(count=args.count)
    finally:
        if display:
            display.close()
    by = {}
    for r in results:
        by[r.status] = by.get(r.status, 0) + 1
    print(f"agent {agent.name}: ran {len(results)} run(s)"
          + (" (" + ", ".join(f"{n} {s}" for s, n in sorted(by.items())) + ")" if by else "")
          + ("; stopped early (SIGTERM or interruption), the run can resume" if agent.stop_requested else ""),
          file=sys.stderr)
    if agent.storage_fault is not None:  # one line, exit 2; the runs it stopped resume (`sweep retry` the failed)
        raise UsageError(f"{agent.storage_fault}; free space (or make the home writable), then "
                         f"`scaling sweep retry {args.sweep}` and start the agent again")
    if agent.stop_requested:
        return 130
    return 1 if any(r.status == "failed" for r in results) else 0


def cmd_agents(args) -> int:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # before JAX starts, here and in agents
    import jax

    from scaling.agents.fleet import device_groups, run_fleet
    from scaling.commands.watch import SweepWatch
    from scaling.runs import RunHome
    from scaling.sweep import require_sweep

    home = RunHome(args.home)
    require_sweep(home, args.sweep)
    devices = jax.local_devices()
    groups = device_groups(len(devices), args.devices_per_run, args.agents, devices[0].platform)
    print(f"{len(groups)} agent(s) " + ("sharing the CPU" if groups[0] is None else
                                         "on devices " + " | ".join(",".join(map(str, g)) for g in groups)),
          file=sys.stderr)
    extra = [f"--lease={args.lease}"] + (["--wandb", args.wandb] if args.wandb else []) + \
        (["--pack", str(args.pack)] if args.pack else [])
    watch = None if args.quiet else SweepWatch(home, args.sweep)
    try:
        done = run_fleet(home, args.sweep, groups, extra, on_tick=watch.poll if watch else None)
    finally:
        if watch:
            watch.close()
    for i, a in enumerate(done):
        where = f"on devices {','.join(map(str, a.devices))}" if a.devices is not None else f"{i + 1}"
        print(f"  agent {where}: exit {a.returncode}", file=sys.stderr)
    codes = {a.returncode for a in done}
    return 130 if 130 in codes else max(codes)


# ---- slurm ----------------------------------------------------------------------------------------
def cmd_slurm(args) -> int:
    from scaling.agents import slurm

    if args.per_point:
        return _slurm_per_point(args)
    if args.array_parallelism is not None:
        raise UsageError("--array-parallelism goes with --per-point (agents: --parallel K)")
    jobs = slurm.submit_agents(
        args.home, args.sweep, parallel=args.parallel, executor=args.executor, partition=args.partition,
        time_min=args.time, gpus=args.gpus, cpus=args.cpus, mem_gb=args.mem, account=args.account,
        qos=args.qos, count=args.count, lease_s=args.lease, isolate=args.isolate, wandb=args.wandb,
        folder=args.logs)
    ids = ", ".join(str(j.job_id) for j in jobs)
    print(f"submitted {len(jobs)} agent(s) ({args.executor}): {ids}", file=sys.stderr)
    print(f"  logs in {slurm.log_folder(args.home, args.logs)}; progress: scaling sweep status {args.sweep}",
          file=sys.stderr)
    if not args.wait:
        return 0
    outcomes = slurm.wait(jobs)
    bad = [o for o in outcomes if o["error"]]
    for o in outcomes:
        print(f"  job {o['job_id']}: " + (f"failed: {o['error']}" if o["error"] else f"ran {o['ran']} run(s)"),
              file=sys.stderr)
    return 1 if bad else 0


def _slurm_per_point(args) -> int:
    from scaling.agents import slurm
    from scaling.runs import RunHome

    if args.parallel != 1 or args.count is not None or args.isolate:
        raise UsageError("--parallel, --count and --isolate are for agents; --per-point submits one task per "
                         "free point (limit how many run at once with --array-parallelism K)")
    jobs, runs = slurm.submit_points(
        args.home, args.sweep, array_parallelism=args.array_parallelism, executor=args.executor,
        partition=args.partition, time_min=args.time, gpus=args.gpus, cpus=args.cpus, mem_gb=args.mem,
        account=args.account, qos=args.qos, wandb=args.wandb, folder=args.logs)
    if not jobs:
        print(f"nothing to submit: no free point in sweep {args.sweep}", file=sys.stderr)
        print_status(RunHome(args.home), args.sweep)
        return 0
    first = str(jobs[0].job_id).split("_")[0]
    print(f"submitted {len(jobs)} point(s) as array tasks ({args.executor}): {first}"
          + (f" .. {jobs[-1].job_id}" if len(jobs) > 1 else ""), file=sys.stderr)
    print(f"  logs in {slurm.log_folder(args.home, args.logs)}; progress: scaling sweep status {args.sweep}",
          file=sys.stderr)
    if not args.wait:
        return 0
    outcomes = slurm.wait(jobs)
    for run, o in zip(runs, outcomes):
        status = o.get("status") or (o["error"] and "error")
        print(f"  {run.run_id} (task {o['job_id']}): " + (f"failed: {o['error']}" if o["error"] else status),
              file=sys.stderr)
    print_status(RunHome(args.home), args.sweep)
    return 1 if any(o["error"] for o in outcomes) else 0


# ---- ray ------------------------------------------------------------------------------------------
def cmd_ray(args) -> int:
    from scaling.agents.ray_engine import run_on_ray
    from scaling.commands.progress import SweepDisplay
    from scaling.runs import RunHome

    overrides = {"wandb": args.wandb} if args.wandb else {}
    # Many tasks run at once: a bar each on a terminal, a line per task submitted and ended in a log.
    display = None if args.quiet else SweepDisplay(engine="ray", claimed="submitted")
    try:
        results = run_on_ray(args.home, args.sweep, address=args.address, cpus_per_run=args.cpus_per_run,
                             gpus_per_run=args.gpus_per_run, max_concurrent=args.max_concurrent,
                             max_retries=args.max_retries, lease_s=args.lease, max_attempts=args.max_attempts,
                             overrides=overrides, on_event=display)
    finally:
        if display:
            display.close()
    print(f"ray: {len(results)} task(s) ended", file=sys.stderr)
    print_status(RunHome(args.home), args.sweep)
    return 1 if any(r.status == "failed" for r in results) else 0


# ---- retry ----------------------------------------------------------------------------------------
def cmd_retry(args) -> int:
    from scaling.runs import RunHome, queue
    from scaling.sweep import require_sweep

    home = RunHome(args.home)
    require_sweep(home, args.sweep)
    requeued = queue.retry(home, args.sweep, tuple(args.status or ["failed"]))
    print(f"requeued {len(requeued)} run(s) of sweep {args.sweep}" + (": " + ", ".join(requeued) if requeued else "")
          + ("; next: scaling sweep agent " + args.sweep if requeued else ""), file=sys.stderr)
    return 0


# ---- parsers --------------------------------------------------------------------------------------
def _agent_arguments(q) -> None:
    q.add_argument("sweep", metavar="SWEEP")
    add_agent_options(q)
    q.add_argument("--no-wait", action="store_true",
                   help="exit when nothing is free now, instead of waiting for other agents' runs "
                        "(whose runs would be taken over if their agents died)")
    q.add_argument("--quiet", action="store_true", help="no progress display")
    q.add_argument("--max-attempts", type=positive_int, default=3, metavar="N",
                   help="a run whose agents died N times (its lease lapsed each time) is marked failed (default 3)")
    q.add_argument("--devices", metavar="I,J", help="local device indices this agent's runs use (default all)")
    q.add_argument("--pack", type=positive_int, default=None, metavar="K",
                   help="train up to K free runs of one shape together in one compiled step, each fenced by its "
                        "own claim (default: by size, 4 for steps under 1e10 FLOPs and 1 above; --pack 1: off)")


AGENT = Subcommand("agent", cmd_agent, _agent_arguments,
                   help="claim and run a sweep's runs (start as many as you like)",
                   description="Claim runs exactly once (SQLite transactions) and train them in this "
                               "process, reusing compiled code across runs of one shape.")


def _agents_arguments(q) -> None:
    q.add_argument("sweep", metavar="SWEEP")
    q.add_argument("--agents", type=positive_int, default=None, metavar="N",
                   help="agent processes (default: one per device group; on CPU, 1: N share its cores)")
    q.add_argument("--devices-per-run", type=positive_int, default=1, metavar="K", help="devices per run (default 1)")
    q.add_argument("--pack", type=positive_int, default=None, metavar="K",
                   help="each agent trains up to K runs of one shape together (default: by size)")
    q.add_argument("--quiet", action="store_true", help="no progress display")
    q.add_argument("--lease", type=positive_float, default=60.0, metavar="SECONDS", help="claim lease (default 60)")
    q.add_argument("--wandb", choices=("auto", "off", "offline", "online"), help="override the runs' W&B mode")


AGENTS = Subcommand("agents", cmd_agents, _agents_arguments,
                    help="one agent per group of K devices of this machine, supervised",
                    description="Start one `sweep agent --devices ...` per group of K visible devices (on "
                                "CPU: --agents N processes sharing the cores) and wait for them all, showing "
                                "every agent's runs; SIGTERM stops every agent at a checkpoint.")


def _slurm_arguments(q) -> None:
    q.add_argument("sweep", metavar="SWEEP")
    q.add_argument("--parallel", type=positive_int, default=1, metavar="K", help="array tasks (agents); default 1")
    q.add_argument("--partition", help="SLURM partition")
    q.add_argument("--time", type=positive_int, default=60, metavar="MINUTES", help="time limit per task (default 60)")
    q.add_argument("--gpus", type=int, default=0, help="GPUs per task (default 0)")
    q.add_argument("--cpus", type=positive_int, default=None, help="CPUs per task")
    q.add_argument("--mem", type=positive_int, default=None, metavar="GB", help="memory per task")
    q.add_argument("--account", help="SLURM account")
    q.add_argument("--qos", help="SLURM QOS")
    q.add_argument("--executor", choices=("slurm", "local"), default="slurm",
                   help="local: run the tasks as processes here (for trying it out; default slurm)")
    q.add_argument("--logs", metavar="DIR", help="submitit's folder (default HOME/.slurm)")
    q.add_argument("--wait", action="store_true", help="wait for the tasks to end and report them")
    q.add_argument("--per-point", action="store_true",
                   help="one array task per free point, no SQLite lock on the nodes (any shared file system); "
                        "a task warned before its time limit checkpoints and is requeued")
    q.add_argument("--array-parallelism", type=positive_int, metavar="K",
                   help="with --per-point: at most K tasks run at once (default: as SLURM allows)")
    add_agent_options(q)


SLURM = Subcommand("slurm", cmd_slurm, _slurm_arguments,
                   help="submit agents as a SLURM job array (submitit)",
                   description="Submit K local agents as a job array through submitit. The run home must "
                               "be on a file system every node sees, with working POSIX locks.")


def _ray_arguments(q) -> None:
    q.add_argument("sweep", metavar="SWEEP")
    q.add_argument("--address", help="the Ray cluster: auto, ray://HOST:10001, HOST:PORT (default: $RAY_ADDRESS, "
                                     "else a Ray started on this machine)")
    q.add_argument("--cpus-per-run", type=number_above(0, strict=True), default=1.0, metavar="C",
                   help="CPUs per task (default 1)")
    q.add_argument("--gpus-per-run", type=number_above(0), default=0.0, metavar="K", help="GPUs per task (default 0)")
    q.add_argument("--max-concurrent", type=positive_int, metavar="M",
                   help="tasks in flight at once (default: as many as the cluster's CPUs/GPUs hold now)")
    q.add_argument("--max-retries", type=number_above(0, whole=True), default=3, metavar="N",
                   help="Ray re-executes a task whose worker or node died up to N times (default 3)")
    q.add_argument("--lease", type=positive_float, default=60.0, metavar="SECONDS",
                   help="the driver's claims on its runs, renewed every quarter of it (default 60)")
    q.add_argument("--max-attempts", type=positive_int, default=3, metavar="N",
                   help="a run whose driver died N times is marked failed (default 3)")
    q.add_argument("--wandb", choices=("auto", "off", "offline", "online"), help="override the runs' W&B mode")
    q.add_argument("--quiet", action="store_true", help="no line per task")


RAY = Subcommand("ray", cmd_ray, _ray_arguments,
                 help="the sweep's points as Ray tasks on a Ray cluster (optional extra)",
                 description="Submit each free point as a Ray task with its resource request; Ray places "
                             "them, retries a task whose worker or node died (the run resumes from its "
                             "checkpoint). The run home must be on storage every node sees. Needs "
                             "pip install 'scaling-workbench[ray]'.")


def _retry_arguments(q) -> None:
    from scaling.runs.queue import RETRYABLE

    q.add_argument("sweep", metavar="SWEEP")
    q.add_argument("--status", action="append", choices=RETRYABLE,
                   help="requeue runs with this status (default failed; repeat for several)")


RETRY = Subcommand("retry", cmd_retry, _retry_arguments,
                   help="requeue a sweep's failed runs (e.g. after a full disk), attempts counted afresh",
                   description="Put runs that ended `failed` (or, with --status, `diverged`) back in the "
                               "queue for the agents; a run that recorded a state resumes from its "
                               "checkpoints. Runs under a live claim are left alone.")
