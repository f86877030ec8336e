"""`scaling sweep {create,plan,agent,status,slurm}`: argument parsing and printing over scaling.sweep."""
from __future__ import annotations

import argparse
import os
import sys
import time

from scaling.commands.common import add_home, check_output_file, positive_float, positive_int, refresh_index
from scaling.display import duration, number
from scaling.errors import UsageError

SWEEP_EPILOG = """\
examples:
  scaling sweep create sweeps/demo.yaml          # prints the sweep id
  scaling sweep plan --budgets 2.5e11,5e11,1e12 --per-budget 5 --span 3 --base sweeps/demo-grid.yaml --out plan.yaml
  scaling sweep plan --budgets 2.5e11,5e11,1e12 --per-budget 5 --span 3 --branches --out plan.yaml  (cooldown branches)
  scaling sweep agent SWEEP                      # run it here; start more agents to share the work
  scaling sweep status SWEEP                     # counts, runs in flight, ETA
  scaling sweep slurm SWEEP --parallel 8 --partition gpu --gpus 1 --time 120
  scaling sweep slurm SWEEP --per-point --array-parallelism 16 --gpus 1   # no SQLite locks on the nodes
  scaling sweep ray SWEEP --address auto --gpus-per-run 1                 # on a Ray cluster
  scaling runs --sweep SWEEP --csv runs.csv      # the table `scaling fit` reads
Online instead (W&B's server chooses the points, same file):
  wandb sweep sweeps/demo.yaml && wandb agent ENTITY/PROJECT/ID
"""


# ---- create ---------------------------------------------------------------------------------------
def cmd_create(args) -> int:
    from scaling import sweep

    made = sweep.create_sweep(args.home, args.spec)
    runs = made["runs"]
    pending = [r for r in runs if r["status"] == "pending"]
    skipped = [r for r in runs if r["status"] == "skipped"]
    err = sys.stderr
    print(f"sweep {made['sweep_id']} ({made['method']}, {made['name']}): {len(pending)} runs queued"
          + (f", {len(skipped)} skipped" if skipped else ""), file=err)
    if pending:
        total = sum(r["plan"]["flops"] for r in pending)
        print(f"  C = 6ND over all runs: {total:.3g} FLOPs; N {min(r['plan']['params'] for r in pending):,}"
              f"..{max(r['plan']['params'] for r in pending):,}", file=err)
    for r in skipped:
        print(f"  skipped {r['run_id']}: {r['reason']}", file=err)
    for note in made["notes"]:
        print(f"  note: {note}", file=err)
    print(made["sweep_id"])
    return 0


# ---- plan -----------------------------------------------------------------------------------------
def cmd_plan(args) -> int:
    from scaling.commands.fit import parse_budgets
    from scaling.config import load_yaml, parse_overrides
    from scaling.runs import write_atomic
    from scaling.sweep import plan

    if args.branches and args.refine is not None:
        raise UsageError("--branches plans a new sweep (with --budgets); a refinement adds sizes to one budget each")
    if (args.budgets is None) == (args.refine is None):
        raise UsageError("give --budgets C1,C2,... (a new plan) or --refine SWEEP (sizes past the edges), one of them")
    settings = {k: _typed(v) for k, v in parse_overrides(args.settings).items()}
    base = load_yaml(args.base) if args.base else None
    if base is not None and not isinstance(base, dict):
        raise UsageError(f"--base {args.base}: expected a sweep spec (a mapping)")
    if args.refine is not None:
        made = plan.refine_points(args.home, args.refine, args.per_budget)
        print("\n".join(made.lines), file=sys.stderr)
        if not made.points:
            print(f"every budget's minimum lies inside its sizes: nothing to refine; {args.out} not written")
            return 0
        spec = plan.spec_dict(made.points, name=args.name or made.name, base=base or made.spec, settings=settings)
        header = [f"refinement of sweep {args.refine}: sizes past the edge for budgets whose minimum fell outside",
                  f"written by: scaling sweep plan --refine {args.refine} --per-budget {args.per_budget}",
                  "fit both sweeps together: scaling runs --csv all.csv && scaling fit all.csv --law isoflop"]
    else:
        budgets = parse_budgets(args.budgets, "--budgets")
        if not budgets:
            raise UsageError("--budgets: give at least one FLOP budget, e.g. 1e11,3e11,1e12")
        if args.span is None:
            raise UsageError("--span R is needed with --budgets (sizes from N_opt/R to N_opt*R)")
        prior = plan.prior_from(args.prior)
        spec = plan.spec_dict([], name=args.name or "isoflop-plan", base=base, settings=settings)
        constants = {k: v["value"] for k, v in spec.get("parameters", {}).items() if "value" in v}
        shapes = plan.recipe_shapes(constants, up_to=4 * args.span * max(prior.n_opt(c) for c in budgets))
        spec["points"] = points = plan.plan_points(budgets, args.per_budget, args.span, prior, shapes)
        if args.branches:
            spec["points"] = plan.as_branches(points)
            spec.setdefault("parameters", {})["schedule"] = {"value": "wsd"}
        header = [f"isoFLOP plan: {args.per_budget} sizes per budget, log-evenly from N_opt/{args.span:g} to "
                  f"N_opt*{args.span:g}, each the recipe's nearest model (distinct within a budget)",
                  f"N_opt(C) = {prior.coefficient:.4g} C^{prior.exponent:.4g} ({prior.source})",
                  "`points` is this workbench's key, not W&B's (a list of configurations, not a product grid)",
                  f"written by: scaling sweep plan --budgets {args.budgets} --per-budget {args.per_budget} "
                  f"--span {args.span:g} --prior {args.prior}" + (" --branches" if args.branches else "")]
        if args.branches:
            header.insert(1, f"as cooldown branches: {len(spec['points'])} WSD runs, each to the largest budget its "
                             f"size is planned at, branching at the others ({len(points)} points in all)")
        for c in budgets:
            sizes = [p["params"] for p in points if p["flops_budget"] == c]
            print(f"C = {c:.3g}: N_opt {prior.n_opt(c):.3g}; sizes {', '.join(f'{n:.3g}' for n in sizes)}",
                  file=sys.stderr)
    check_output_file(args.out, "--out")
    write_atomic(args.out, plan.render_spec(spec, header))
    print(f"wrote {args.out} ({len(spec['points'])} points); next: scaling sweep create {args.out}")
    return 0


def _typed(text: str):
    """128 -> 128, 1e-3 -> 0.001, stdlib -> 'stdlib': so the written spec reads as one typed by hand."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# ---- agent ----------------------------------------------------------------------------------------
def cmd_agent(args) -> int:
    from scaling.agents import Agent
    from scaling.commands.progress import AgentDisplay

    overrides = {"wandb": args.wandb} if args.wandb else {}
    if args.devices:
        # Several agents share a node: each JAX process takes GPU memory as it needs it, not all of it.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        overrides["devices"] = args.devices
    if args.count is not None and args.count < 1:
        raise UsageError(f"--count {args.count}: must be at least 1")
    agent = Agent(args.home, args.sweep, lease_s=args.lease, isolate=args.isolate, overrides=overrides,
                  wait=not args.no_wait, max_attempts=args.max_attempts, pack=args.pack)
    display = None if args.quiet else AgentDisplay()
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
    if agent.stop_requested:
        return 130
    return 1 if any(r.status == "failed" for r in results) else 0


def cmd_agents(args) -> int:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # before JAX starts, here and in agents
    import jax

    from scaling.agents.fleet import device_groups, run_fleet
    from scaling.runs import RunHome
    from scaling.sweep import require_sweep

    home = RunHome(args.home)
    require_sweep(home, args.sweep)
    groups = device_groups(len(jax.local_devices()), args.devices_per_run)
    print(f"{len(groups)} agent(s) on devices " + " | ".join(",".join(map(str, g)) for g in groups), file=sys.stderr)
    extra = [f"--lease={args.lease}"] + (["--wandb", args.wandb] if args.wandb else [])
    done = run_fleet(home, args.sweep, groups, extra)
    for a in done:
        print(f"  agent on devices {','.join(map(str, a.devices))}: exit {a.returncode}", file=sys.stderr)
    codes = {a.returncode for a in done}
    return 130 if 130 in codes else max(codes)


# ---- status ---------------------------------------------------------------------------------------
def cmd_status(args) -> int:
    from scaling.runs import STATUSES, RunHome

    home = RunHome(args.home)
    if args.sweep is None:
        found = home.sweeps()
        if not found:
            print(f"no sweeps in {home.root}", file=sys.stderr)
        refresh_index(home)
        for s in found:
            counts = home.sweep_counts(s["sweep_id"])
            text = ", ".join(f"{counts[k]} {k}" for k in STATUSES if counts.get(k))
            print(f"{s['sweep_id']:<28} {time.strftime('%Y-%m-%d %H:%M', time.localtime(s['created']))}  {text}")
        return 0
    print_status(home, args.sweep)
    return 0


def print_status(home, sweep_id: str) -> None:
    """The sweep's counts, runs in flight and problems, after reading in what other engines finished."""
    from scaling import sweep
    from scaling.runs import STATUSES

    sweep.require_sweep(home, sweep_id)
    refresh_index(home, sweep_id)
    st = sweep.sweep_status(home, sweep_id)
    print(f"sweep {st.sweep_id} ({st.name}): {st.total} runs, "
          + ", ".join(f"{st.counts[k]} {k}" for k in STATUSES if st.counts.get(k))
          + (f"; {len(st.to_come)} cooldown branch(es) to come as their parents reach their cuts"
             if st.to_come else ""))
    print(f"  done {st.finished}/{st.runnable}; {st.agents} agent(s) active; "
          f"elapsed {duration(time.time() - st.created)}; "
          f"ETA {duration(st.eta_s) if st.eta_s is not None else '? (no finished run to time yet)'}"
          + ("" if st.agents or st.held or not (st.runnable - st.finished) else " (if one agent runs)"))
    now = time.time()
    for r in st.current:
        p = r.progress or {}
        step = f"step {p.get('step', 0)}/{p.get('steps') or '?'}" if p.get("step") else "starting"
        print(f"  running {r.run_id}  {step}  loss {number(p.get('loss'))}  by {r.claimed_by}"
              f"  lease {r.lease_until - now:.0f} s" + (f"  attempt {r.attempts}" if r.attempts > 1 else ""))
    for r in st.held:
        p = r.progress or {}
        step = f"step {p.get('step', 0)}/{p.get('steps') or '?'}  loss {number(p.get('loss'))}" if p.get("step") \
            else "queued or starting"
        print(f"  running {r.run_id}  {step}  task of {r.claimed_by}")
    for run_id in st.stale:
        print(f"  stale   {run_id}: its agent stopped renewing the lease; the next agent takes it over")
    for r in st.problems:
        print(f"  {r.status:<7} {r.run_id}: {r.reason}")


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
    from scaling.runs import RunHome

    overrides = {"wandb": args.wandb} if args.wandb else {}
    results = run_on_ray(args.home, args.sweep, address=args.address, cpus_per_run=args.cpus_per_run,
                         gpus_per_run=args.gpus_per_run, max_concurrent=args.max_concurrent,
                         max_retries=args.max_retries, lease_s=args.lease, max_attempts=args.max_attempts,
                         overrides=overrides, on_event=None if args.quiet else _ray_line)
    print(f"ray: {len(results)} task(s) ended", file=sys.stderr)
    print_status(RunHome(args.home), args.sweep)
    return 1 if any(r.status == "failed" for r in results) else 0


def _ray_line(event) -> None:
    """One line per task submitted and per task ended (many run at once: no live single-run display)."""
    kind = type(event).__name__
    if kind == "Claimed":
        plan = event.run.plan or {}
        print(f"[{event.done}/{event.total}] submitted {event.run.run_id}  {plan.get('shape', '')} "
              f"N={plan.get('params', 0):,} D={plan.get('tokens', 0):,}"
              + ("  (resuming)" if event.run.resumed else ""), file=sys.stderr, flush=True)
    elif kind == "Finished":
        r = event.result
        loss = (r.summary or {}).get("eval_loss")
        print(f"[{event.done}/{event.total}] {r.run_id} {r.status}" + (f"  eval {number(loss)}" if loss is not None
                                                                       else "")
              + f"  {r.wall_s:.1f} s" + (f"  {r.reason}" if r.reason else ""), file=sys.stderr, flush=True)
    elif kind == "Stopped":
        print(f"ray: {event.reason}", file=sys.stderr, flush=True)


# ---- parsers --------------------------------------------------------------------------------------
def _agent_options(p) -> None:
    p.add_argument("--count", type=positive_int, help="stop after this many runs (default: until none is left)")
    p.add_argument("--lease", type=positive_float, default=60.0, metavar="SECONDS",
                   help="claim lease, renewed every quarter of it; a dead agent's run is taken over after "
                        "it lapses (default 60)")
    p.add_argument("--isolate", action="store_true",
                   help="run each run in its own `python -m scaling.cli train` process (no compile reuse)")
    p.add_argument("--wandb", choices=("auto", "off", "offline", "online"),
                   help="override the runs' W&B mode (e.g. off for speed)")


def add_parser(sub) -> None:
    p = sub.add_parser("sweep", help="sweeps: create from a W&B sweep spec, run agents, status, SLURM, Ray",
                       description="Sweeps in W&B's sweep YAML format, run offline by local agents.",
                       epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_home(p)
    ssub = p.add_subparsers(dest="sweep_command", metavar="SUBCOMMAND", required=True)

    q = ssub.add_parser("create", help="register a spec's runs in the run home; prints the sweep id",
                        description="Enumerate a sweep spec (grid, or run_cap random draws) into the run home. "
                                    "Points the trainer cannot run are recorded as skipped, with the reason.")
    q.add_argument("spec", metavar="SPEC.yaml")
    add_home(q)
    q.set_defaults(func=cmd_create)

    q = ssub.add_parser("plan", help="write an isoFLOP spec centred on each budget's predicted optimum",
                        description="Write a sweep spec whose sizes, per budget, are spread log-evenly from "
                                    "N_opt/R to N_opt*R around that budget's predicted N_opt (a list of points, "
                                    "not a product grid); or, with --refine, sizes past the edge for each budget "
                                    "of a sweep whose isoFLOP minimum fell outside its sizes.")
    q.add_argument("settings", nargs="*", metavar="key=value",
                   help="constant parameters of every run, e.g. corpus=stdlib seq_len=128")
    q.add_argument("--budgets", metavar="C1,C2,...", help="FLOP budgets, e.g. 2.5e11,5e11,1e12")
    q.add_argument("--per-budget", type=positive_int, default=5, metavar="K",
                   help="sizes per budget (default 5; with --refine: sizes added past the edge)")
    q.add_argument("--span", type=_count(1.0, strict=True), metavar="R", default=3.0,
                   help="a factor: sizes from N_opt/R to N_opt*R (R = 4 spans 16x; default %(default)g)")
    q.add_argument("--prior", default="chinchilla", metavar="chinchilla|FIT.json",
                   help="N_opt(C): Hoffmann et al.'s law (default) or a fit JSON (`scaling fit --json`, or a "
                        "report's fit.json)")
    q.add_argument("--branches", action="store_true",
                   help="one WSD run per size, to the largest budget it is planned at, with cooldown branches "
                        "at its other budgets (the same points for the cost of the longest runs and the decays)")
    q.add_argument("--refine", metavar="SWEEP",
                   help="instead of a new plan: sizes past the edge for this sweep's off-edge budgets")
    q.add_argument("--base", metavar="SPEC.yaml",
                   help="take parameters, command and metric from this spec (its size keys dropped)")
    q.add_argument("--name", help="the spec's name (default isoflop-plan, or SWEEP-refine)")
    q.add_argument("--out", required=True, metavar="SPEC.yaml", help="where to write the spec")
    add_home(q)
    q.set_defaults(func=cmd_plan)

    q = ssub.add_parser("agent", help="claim and run a sweep's runs (start as many as you like)",
                        description="Claim runs exactly once (SQLite transactions) and train them in this "
                                    "process, reusing compiled code across runs of one shape.")
    q.add_argument("sweep", metavar="SWEEP")
    _agent_options(q)
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
    add_home(q)
    q.set_defaults(func=cmd_agent)

    q = ssub.add_parser("agents", help="one agent per group of K devices of this machine, supervised",
                        description="Start one `sweep agent --devices ...` per group of K visible devices and "
                                    "wait for them all; SIGTERM stops every agent at a checkpoint.")
    q.add_argument("sweep", metavar="SWEEP")
    q.add_argument("--devices-per-run", type=positive_int, default=1, metavar="K", help="devices per run (default 1)")
    q.add_argument("--lease", type=positive_float, default=60.0, metavar="SECONDS", help="claim lease (default 60)")
    q.add_argument("--wandb", choices=("auto", "off", "offline", "online"), help="override the runs' W&B mode")
    add_home(q)
    q.set_defaults(func=cmd_agents)

    q = ssub.add_parser("status", help="counts by status, runs in flight, ETA",
                        description="Show a sweep's progress (or list the sweeps in the run home).")
    q.add_argument("sweep", metavar="SWEEP", nargs="?")
    add_home(q)
    q.set_defaults(func=cmd_status)

    q = ssub.add_parser("slurm", help="submit agents as a SLURM job array (submitit)",
                        description="Submit K local agents as a job array through submitit. The run home must "
                                    "be on a file system every node sees, with working POSIX locks.")
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
    _agent_options(q)
    add_home(q)
    q.set_defaults(func=cmd_slurm)

    q = ssub.add_parser("ray", help="the sweep's points as Ray tasks on a Ray cluster (optional extra)",
                        description="Submit each free point as a Ray task with its resource request; Ray places "
                                    "them, retries a task whose worker or node died (the run resumes from its "
                                    "checkpoint). The run home must be on storage every node sees. Needs "
                                    "pip install 'scaling-workbench[ray]'.")
    q.add_argument("sweep", metavar="SWEEP")
    q.add_argument("--address", help="the Ray cluster: auto, ray://HOST:10001, HOST:PORT (default: $RAY_ADDRESS, "
                                     "else a Ray started on this machine)")
    q.add_argument("--cpus-per-run", type=_count(0, strict=True), default=1.0, metavar="C",
                   help="CPUs per task (default 1)")
    q.add_argument("--gpus-per-run", type=_count(0), default=0.0, metavar="K", help="GPUs per task (default 0)")
    q.add_argument("--max-concurrent", type=positive_int, metavar="M",
                   help="tasks in flight at once (default: as many as the cluster's CPUs/GPUs hold now)")
    q.add_argument("--max-retries", type=_count(0, whole=True), default=3, metavar="N",
                   help="Ray re-executes a task whose worker or node died up to N times (default 3)")
    q.add_argument("--lease", type=positive_float, default=60.0, metavar="SECONDS",
                   help="the driver's claims on its runs, renewed every quarter of it (default 60)")
    q.add_argument("--max-attempts", type=positive_int, default=3, metavar="N",
                   help="a run whose driver died N times is marked failed (default 3)")
    q.add_argument("--wandb", choices=("auto", "off", "offline", "online"), help="override the runs' W&B mode")
    q.add_argument("--quiet", action="store_true", help="no line per task")
    add_home(q)
    q.set_defaults(func=cmd_ray)


def _count(low: float, strict: bool = False, whole: bool = False):
    """An argparse type: a number (a whole one with `whole`) above `low`, or at least `low`."""

    def parse(text: str):
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a {'whole ' if whole else ''}number") from None
        if value < low or (strict and value == low) or value != value:
            raise argparse.ArgumentTypeError(f"{text!r}: must be {'above' if strict else 'at least'} {low}")
        return value

    return parse
