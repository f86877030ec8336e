"""`scaling demo`: the main job on the built-in default — the isoFLOP sweep `sweeps/demo.yaml` on the
stdlib corpus in the run home, then the fit and the report in `reports/demo/`, ending with the headline.
Running it again reuses the finished runs and continues unfinished ones."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_SWEEP = ROOT / "sweeps" / "demo.yaml"
DEMO_REPORT = ROOT / "analysis" / "demo.yaml"


def find_or_create_sweep(home, spec_path: str) -> tuple[str, bool]:
    """The sweep registered from this same spec before (so a rerun continues it), or a new one."""
    from scaling import sweep

    spec = sweep.load_spec(spec_path)
    for found in reversed(home.sweeps() if os.path.exists(home.db_path) else []):
        if found["name"] == spec.name and home.sweep(found["sweep_id"])["spec"] == spec.raw:
            return found["sweep_id"], False
    return sweep.create_sweep(home, spec_path)["sweep_id"], True


def run(args) -> int:
    from scaling import report, sweep
    from scaling.store import RunHome
    from scaling.sweepcmd import AgentDisplay
    from scaling.track import wandb_mode

    t0 = time.perf_counter()
    home = RunHome(args.home)
    sweep_id, created = find_or_create_sweep(home, str(DEMO_SWEEP))
    counts = home.sweep_counts(sweep_id)
    done = counts.get("complete", 0)
    print(f"demo: sweep {sweep_id} ({'new' if created else f'continuing, {done} runs already done'}) "
          f"from {os.path.relpath(DEMO_SWEEP)} in {home.root}", file=sys.stderr)
    # Small models leave part of the two cores idle (XLA's per-op overhead dominates their steps), so
    # a second agent process takes runs from the same queue: about 20% more throughput here.
    others = [subprocess.Popen([sys.executable, "-m", "scaling.cli", "--home", home.root, "sweep", "agent",
                                sweep_id, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for _ in range(max(0, args.agents - 1))]
    display = AgentDisplay()
    agent = sweep.Agent(home, sweep_id, on_event=display)
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
    out = args.out or os.path.join("reports", "demo")
    data = report.gather(home, sweep_id)
    fits = report.fit_all(data, spec, progress=lambda m: print(f"demo: {m}", file=sys.stderr))
    written = report.write_report(data, fits, spec, out)
    mode = wandb_mode("auto")
    wandb_dir = report.log_to_wandb(written, spec, sweep_id, out, mode) if mode else None

    print("\n" + "=" * 78)
    print(f"{spec.title}\n")
    for line in written["headline"]:
        print("  " + line)
    if fits.errors:
        print("\n  not fitted: " + "; ".join(f"{k}: {v}" for k, v in fits.errors.items()))
    print(f"\n  runs: {len(data.runs)} used, {len(data.excluded)} excluded   sweep {t_sweep:.0f} s, "
          f"total {time.perf_counter() - t0:.0f} s")
    print(f"  report: {os.path.abspath(written['html'])}")
    if wandb_dir:
        print(f"  W&B analysis run ({mode}): {wandb_dir}")
    print("=" * 78)
    return 0
