"""`scaling sweep {create,agent,status,slurm}` and `scaling runs`: argument parsing and printing over
scaling.sweep, scaling.slurm and scaling.store."""
from __future__ import annotations

import argparse
import sys
import time

from scaling.display import duration, number
from scaling.errors import UsageError

SWEEP_EPILOG = """\
examples:
  scaling sweep create sweeps/demo.yaml          # prints the sweep id
  scaling sweep agent SWEEP                      # run it here; start more agents to share the work
  scaling sweep status SWEEP                     # counts, runs in flight, ETA
  scaling sweep slurm SWEEP --parallel 8 --partition gpu --gpus 1 --time 120
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


# ---- agent ----------------------------------------------------------------------------------------
class AgentDisplay:
    """Live on a terminal (rich): runs done/total, and the current run's step, loss and speed. In a log
    file: one line per run."""

    def __init__(self, stream=None):
        self.stream = stream = stream or sys.stderr
        self.live = stream.isatty()
        self.progress = None
        self.current = None
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
                                     console=Console(file=stream), transient=False)
            self.sweep_task = self.progress.add_task("runs", total=None, info="")
            self.progress.start()

    def __call__(self, kind: str, **data) -> None:
        getattr(self, "on_" + kind)(**data)

    def on_claimed(self, run, done, total) -> None:
        plan = run.get("plan") or {}
        what = f"{run['run_id']}  {plan.get('shape', '')} N={plan.get('params', 0):,} D={plan.get('tokens', 0):,}"
        what += "  (resuming)" if run.get("resumed") else ""
        if self.live:
            self.progress.update(self.sweep_task, completed=done, total=total)
            if self.current is not None:
                self.progress.remove_task(self.current)
            self.current = self.progress.add_task(what, total=plan.get("steps"), info="starting")
        else:
            print(f"[{done}/{total}] {what}", file=self.stream, flush=True)

    def on_progress(self, run_id, step, steps, loss, eval_loss, tokens_per_s) -> None:
        if not self.live or self.current is None:
            return
        info = f"loss {number(loss)}" + (f"  eval {number(eval_loss)}" if eval_loss is not None else "")
        if tokens_per_s:
            info += f"  {tokens_per_s / 1e3:.1f}k tok/s"
        self.progress.update(self.current, completed=step, total=steps, info=info)

    def on_finished(self, run_id, status, reason, summary, resumed, wall_s, startup_s, done, total) -> None:
        loss = summary.get("eval_loss") if summary else None
        line = (f"[{done}/{total}] {run_id} {status}" + (f"  eval {number(loss)}" if loss is not None else "")
                + f"  {wall_s:.1f} s" + (f" (first step after {startup_s:.1f} s)" if startup_s is not None else "")
                + (f"  {reason}" if reason else ""))
        if self.live:
            self.progress.update(self.sweep_task, completed=done, total=total)
            self.progress.console.print(line)
        else:
            print(line, file=self.stream, flush=True)

    def on_waiting(self, running) -> None:
        if self.live:
            self.progress.update(self.sweep_task, info=f"waiting for {running} run(s) of other agents")

    def on_stopped(self, reason) -> None:
        print(f"agent stopped: {reason}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def cmd_agent(args) -> int:
    from scaling import sweep

    overrides = {"wandb": args.wandb} if args.wandb else {}
    if args.count is not None and args.count < 1:
        raise UsageError(f"--count {args.count}: must be at least 1")
    agent = sweep.Agent(args.home, args.sweep, lease_s=args.lease, isolate=args.isolate, overrides=overrides,
                        wait=not args.no_wait)
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
        by[r["status"]] = by.get(r["status"], 0) + 1
    print(f"agent {agent.name}: ran {len(results)} run(s)"
          + (" (" + ", ".join(f"{n} {s}" for s, n in sorted(by.items())) + ")" if by else "")
          + ("; stopped early (SIGTERM or interruption), the run can resume" if agent.stop_requested else ""),
          file=sys.stderr)
    if agent.stop_requested:
        return 130
    return 1 if any(r["status"] == "failed" for r in results) else 0


# ---- status ---------------------------------------------------------------------------------------
def cmd_status(args) -> int:
    from scaling import sweep
    from scaling.store import STATUSES, RunHome

    home = RunHome(args.home)
    if args.sweep is None:
        found = home.sweeps()
        if not found:
            print(f"no sweeps in {home.root}", file=sys.stderr)
        for s in found:
            counts = home.sweep_counts(s["sweep_id"])
            text = ", ".join(f"{counts[k]} {k}" for k in STATUSES if counts.get(k))
            print(f"{s['sweep_id']:<28} {time.strftime('%Y-%m-%d %H:%M', time.localtime(s['created']))}  {text}")
        return 0
    st = sweep.sweep_status(home, args.sweep)
    counts = st["counts"]
    print(f"sweep {st['sweep_id']} ({st['name']}): {st['total']} runs, "
          + ", ".join(f"{counts[k]} {k}" for k in STATUSES if counts.get(k)))
    finished = sum(counts.get(k, 0) for k in ("complete", "diverged", "failed"))
    total = st["total"] - counts.get("skipped", 0)
    print(f"  done {finished}/{total}; {st['agents']} agent(s) active; elapsed {duration(time.time() - st['created'])}; "
          f"ETA {duration(st['eta_s']) if st['eta_s'] is not None else '? (no finished run to time yet)'}"
          + ("" if st["agents"] or not (total - finished) else " (if one agent runs)"))
    for c in st["current"]:
        step = f"step {c.get('step', 0)}/{c.get('steps') or '?'}" if c.get("step") else "starting"
        print(f"  running {c['run_id']}  {step}  loss {number(c.get('loss'))}  by {c['agent']}"
              f"  lease {c['lease_left_s']:.0f} s" + (f"  attempt {c['attempts']}" if c["attempts"] > 1 else ""))
    for run_id in st["stale"]:
        print(f"  stale   {run_id}: its agent stopped renewing the lease; the next agent takes it over")
    for run_id, status, reason in st["problems"]:
        print(f"  {status:<7} {run_id}: {reason}")
    return 0


# ---- slurm ----------------------------------------------------------------------------------------
def cmd_slurm(args) -> int:
    from scaling import slurm

    jobs = slurm.submit_agents(
        args.home, args.sweep, parallel=args.parallel, executor=args.executor, partition=args.partition,
        time_min=args.time, gpus=args.gpus, cpus=args.cpus, mem_gb=args.mem, account=args.account,
        qos=args.qos, count=args.count, lease_s=args.lease, isolate=args.isolate, wandb=args.wandb,
        folder=args.logs)
    print(f"submitted {len(jobs)} agent(s) ({args.executor}): {', '.join(str(j.job_id) for j in jobs)}", file=sys.stderr)
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


# ---- runs -----------------------------------------------------------------------------------------
def cmd_runs(args) -> int:
    from scaling.store import RunHome, runs_table

    home = RunHome(args.home)
    if args.reindex:
        counts = home.reindex()
        print(f"reindexed {home.root}: {counts['runs']} run dirs, {counts['sweeps']} sweep(s) restored, "
              f"{counts['reset']} reset to pending, {counts['dropped']} dropped", file=sys.stderr)
    if args.sweep is not None:
        from scaling.sweep import require_sweep

        require_sweep(home, args.sweep)
    table = runs_table(home, sweep_id=args.sweep, steps=args.steps)
    if args.csv:
        if args.csv == "-":
            table.to_csv(sys.stdout, index=False)
        elif args.csv.endswith(".parquet"):
            table.to_parquet(args.csv, index=False)
        else:
            table.to_csv(args.csv, index=False)
        if args.csv != "-":
            print(f"wrote {len(table)} rows to {args.csv}", file=sys.stderr)
        return 0
    if table.empty:
        print("no completed runs" + (f" in sweep {args.sweep}" if args.sweep else "") + f" in {home.root}",
              file=sys.stderr)
        return 0
    shown = ["run_id"] + (["step"] if args.steps else []) + ["params", "tokens", "flops", "loss", "lr", "batch_size",
                                                             "wall_s"]
    fmt = {"flops": "{:.3g}".format, "loss": "{:.4f}".format, "lr": "{:.3g}".format, "wall_s": "{:.1f}".format}
    print(table[shown].to_string(index=False, formatters=fmt))
    print(f"({len(table)} rows; --csv FILE for all columns)", file=sys.stderr)
    return 0


# ---- parsers --------------------------------------------------------------------------------------
def _home(p) -> None:
    p.add_argument("--home", default=argparse.SUPPRESS, help="run home (default ./runs or $SCALING_HOME)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be positive")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def _agent_options(p) -> None:
    p.add_argument("--count", type=_positive_int, help="stop after this many runs (default: until none is left)")
    p.add_argument("--lease", type=_positive_float, default=60.0, metavar="SECONDS",
                   help="claim lease, renewed every quarter of it; a dead agent's run is taken over after "
                        "it lapses (default 60)")
    p.add_argument("--isolate", action="store_true",
                   help="run each run in its own `python -m scaling.cli train` process (no compile reuse)")
    p.add_argument("--wandb", choices=("auto", "off", "offline", "online"),
                   help="override the runs' W&B mode (e.g. off for speed)")


def add_parsers(sub) -> None:
    p = sub.add_parser("sweep", help="sweeps: create from a W&B sweep spec, run agents, status, SLURM",
                       description="Sweeps in W&B's sweep YAML format, run offline by local agents.",
                       epilog=SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _home(p)
    ssub = p.add_subparsers(dest="sweep_command", metavar="SUBCOMMAND", required=True)

    q = ssub.add_parser("create", help="register a spec's runs in the run home; prints the sweep id",
                        description="Enumerate a sweep spec (grid, or run_cap random draws) into the run home. "
                                    "Points the trainer cannot run are recorded as skipped, with the reason.")
    q.add_argument("spec", metavar="SPEC.yaml")
    _home(q)
    q.set_defaults(func=cmd_create)

    q = ssub.add_parser("agent", help="claim and run a sweep's runs (start as many as you like)",
                        description="Claim runs exactly once (SQLite transactions) and train them in this "
                                    "process, reusing compiled code across runs of one shape.")
    q.add_argument("sweep", metavar="SWEEP")
    _agent_options(q)
    q.add_argument("--no-wait", action="store_true",
                   help="exit when nothing is free now, instead of waiting for other agents' runs "
                        "(whose runs would be taken over if their agents died)")
    q.add_argument("--quiet", action="store_true", help="no progress display")
    _home(q)
    q.set_defaults(func=cmd_agent)

    q = ssub.add_parser("status", help="counts by status, runs in flight, ETA",
                        description="Show a sweep's progress (or list the sweeps in the run home).")
    q.add_argument("sweep", metavar="SWEEP", nargs="?")
    _home(q)
    q.set_defaults(func=cmd_status)

    q = ssub.add_parser("slurm", help="submit agents as a SLURM job array (submitit)",
                        description="Submit K local agents as a job array through submitit. The run home must "
                                    "be on a file system every node sees, with working POSIX locks.")
    q.add_argument("sweep", metavar="SWEEP")
    q.add_argument("--parallel", type=_positive_int, default=1, metavar="K", help="array tasks (agents); default 1")
    q.add_argument("--partition", help="SLURM partition")
    q.add_argument("--time", type=_positive_int, default=60, metavar="MINUTES", help="time limit per task (default 60)")
    q.add_argument("--gpus", type=int, default=0, help="GPUs per task (default 0)")
    q.add_argument("--cpus", type=_positive_int, default=None, help="CPUs per task")
    q.add_argument("--mem", type=_positive_int, default=None, metavar="GB", help="memory per task")
    q.add_argument("--account", help="SLURM account")
    q.add_argument("--qos", help="SLURM QOS")
    q.add_argument("--executor", choices=("slurm", "local"), default="slurm",
                   help="local: run the tasks as processes here (for trying it out; default slurm)")
    q.add_argument("--logs", metavar="DIR", help="submitit's folder (default HOME/.slurm)")
    q.add_argument("--wait", action="store_true", help="wait for the tasks to end and report them")
    _agent_options(q)
    _home(q)
    q.set_defaults(func=cmd_slurm)

    p = sub.add_parser("runs", help="the tidy runs table (the input of fit and report)",
                       description="One row per completed run: params, tokens, flops, loss (final eval) and "
                                   "context; with --steps one row per evaluated checkpoint.")
    p.add_argument("--sweep", metavar="SWEEP", help="only this sweep's runs")
    p.add_argument("--csv", metavar="FILE", help="write the table (CSV; .parquet by extension; - for stdout)")
    p.add_argument("--steps", action="store_true", help="one row per evaluated checkpoint, with `step`")
    p.add_argument("--reindex", action="store_true", help="rebuild the SQLite index from the run directories first")
    _home(p)
    p.set_defaults(func=cmd_runs)
