"""`scaling demo`: the main job on the built-in default — the isoFLOP sweep `sweeps/demo.yaml` on the
stdlib corpus in the run home, then the fit and the report in `reports/demo/`, ending with the headline.
Running it again reuses the finished runs and continues unfinished ones."""
from __future__ import annotations

import os
import subprocess
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
    from scaling.agents import Agent
    from scaling.commands.progress import SweepDisplay
    from scaling.runs import RunHome
    from scaling.sweep import find_or_create_sweep

    t0 = time.perf_counter()
    home = RunHome(args.home)
    sweep_id, created = find_or_create_sweep(home, str(DEMO_SWEEP))
    done = home.sweep_counts(sweep_id).get("complete", 0)
    print(f"demo: sweep {sweep_id} ({'new' if created else f'continuing, {done} runs already done'}) "
          f"from {os.path.relpath(DEMO_SWEEP)} in {home.root}", file=sys.stderr)
    # Small models leave part of the two cores idle (XLA's per-op overhead dominates their steps), so
    # a second agent process takes runs from the same queue: about 20% more throughput here.
    if args.pack is not None and args.pack < 1:
        raise UsageError(f"--pack {args.pack}: must be at least 1")
    pack = [] if args.pack is None else ["--pack", str(args.pack)]
    # Packing (the default for the demo's small models) trains the runs of one shape in one compiled step.
    others = [subprocess.Popen([sys.executable, "-m", "scaling.cli", "--home", home.root, "sweep", "agent",
                                sweep_id, "--quiet", *pack], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for _ in range(max(0, args.agents - 1))]
    display = SweepDisplay()
    agent = Agent(home, sweep_id, on_event=display, pack=args.pack)
    try:
        agent.run()
    finally:
        display.close()
        for proc in others:
            if agent.stop_requested:
                proc.terminate()  # SIGTERM: the agent checkpoints its run and releases it
            proc.wait()
    if agent.stop_requested:
        print("demo: stopped; run `make demo` again to continue", file=sys.stderr)
        return 130
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
