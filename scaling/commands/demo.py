"""`scaling demo`: the main job on the built-in default — the isoFLOP sweep `sweeps/demo.yaml` on the
stdlib corpus in the run home, then the fit and the report in `reports/demo/`, ending with the headline.
Running it again reuses the finished runs and continues unfinished ones."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from scaling.commands.common import add_home
from scaling.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
DEMO_SWEEP = ROOT / "sweeps" / "demo.yaml"
DEMO_REPORT = ROOT / "analysis" / "demo.yaml"


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job on the built-in corpus",
                       description="Run the demo isoFLOP sweep (sweeps/demo.yaml) on the stdlib corpus, fit "
                                   "Chinchilla's three approaches, and write reports/demo/. Rerunning continues it.")
    add_home(p)
    p.add_argument("--out", help="report directory (default reports/demo)")
    p.add_argument("--agents", type=int, default=2, help="agent processes taking runs from the sweep (default 2)")
    p.add_argument("--pack", type=int, default=None, metavar="K",
                   help="each agent trains up to K runs of one shape together (default: by size; 1: off)")
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling import report
    from scaling.agents.fleet import run_fleet
    from scaling.commands.watch import SweepWatch
    from scaling.runs import RunHome
    from scaling.sweep import find_or_create_sweep

    t0 = time.perf_counter()
    if args.agents < 1:
        raise UsageError(f"--agents {args.agents}: must be at least 1")
    if args.pack is not None and args.pack < 1:
        raise UsageError(f"--pack {args.pack}: must be at least 1")
    home = RunHome(args.home)
    sweep_id, created = find_or_create_sweep(home, str(DEMO_SWEEP))
    done = home.sweep_counts(sweep_id).get("complete", 0)
    print(f"demo: sweep {sweep_id} ({'new' if created else f'continuing, {done} runs already done'}) "
          f"from {os.path.relpath(DEMO_SWEEP)} in {home.root}", file=sys.stderr)
    # Small models leave part of the two cores idle (XLA's per-op overhead dominates their steps), so
    # a second agent process takes runs from the same queue: about 20% more throughput here. Packing
    # (the default for the demo's small models) trains the runs of one shape in one compiled step.
    pack = [] if args.pack is None else ["--pack", str(args.pack)]
    # Every agent is a process of its own, sharing the machine; this one watches the index, so the log
    # shows every agent's runs and a total that counts the cooldown branches to come.
    watch = SweepWatch(home, sweep_id)
    try:
        agents = run_fleet(home, sweep_id, [None] * args.agents, pack, on_tick=watch.poll)
    finally:
        watch.close()
    if any(a.returncode == 130 for a in agents):
        print("demo: stopped; run `make demo` again to continue", file=sys.stderr)
        return 130
    failed = [a.returncode for a in agents if a.returncode not in (0, 1)]
    if failed:  # 1: some run failed, which the report lists; anything else: the agent itself broke
        print(f"demo: an agent exited {failed[0]}; see `scaling sweep status {sweep_id}`", file=sys.stderr)
        return failed[0]
    t_sweep = time.perf_counter() - t0

    spec = report.ReportSpec.load(str(DEMO_REPORT), sweep=sweep_id)
    made = report.build(spec, args.out or os.path.join("reports", "demo"), home=home,
                        progress=lambda m: print(f"demo: {m}", file=sys.stderr))
    print("\n" + "=" * 78)
    print(f"{spec.title}\n")
    for line in made.files.headline:
        print("  " + line)
    if made.fits.errors:
        print("\n  not fitted: " + "; ".join(f"{k}: {v}" for k, v in made.fits.errors.items()))
    print(f"\n  runs: {len(made.data.runs)} used, {len(made.data.excluded)} excluded   sweep {t_sweep:.0f} s, "
          f"total {time.perf_counter() - t0:.0f} s")
    print(f"  report: {os.path.abspath(made.files.html)}")
    if made.wandb_dir:
        print(f"  W&B analysis run ({made.wandb_mode}): {made.wandb_dir}")
    print("=" * 78)
    return 0
