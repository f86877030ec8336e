"""Benchmark (not a test): `scaling fit`'s Chinchilla fit (4,500-start grid, 1,000 bootstrap resamples,
cross-check) on synthetic tables of 1k, 10k and 100k rows: wall time and peak RSS, each size in a fresh
process (peak RSS only grows within one).

    .venv/bin/python benchmarks/fit_rows.py [--rows 1000 10000 100000] [--tree DIR ...] [--limit S]

`--tree` runs the same fits from other checkouts of the project (each put first on PYTHONPATH), so a
before/after comparison is measured side by side in one invocation, alternating trees at each size:

    git worktree add /tmp/before <commit>   # or: git archive <commit> | tar -x -C /tmp/before
    .venv/bin/python benchmarks/fit_rows.py --tree /tmp/before --tree .

Each line gives wall and CPU seconds (on a shared machine the CPU figure is the steadier one), and the
fitted alpha, beta and E, so a speed-up that changed answers shows.
A fit past `--limit` seconds is stopped and reported as such. `--profile ROWS` prints cProfile's top
functions for one fit of that size instead.

The tables are `tests/laws_synth.py`'s (`chinchilla_table`: N and D log-uniform over a Chinchilla-like
range, 0.5% noise), one run per row.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(rows: int, bootstrap: int, profile: bool) -> None:
    """One fit in this process; a JSON line with its time, peak RSS and parameters on stdout."""
    import resource

    sys.path.insert(0, str(ROOT / "tests"))
    from laws_synth import chinchilla_table

    from scaling.laws import fit, load_runs

    table = load_runs(chinchilla_table(n_points=rows, seed=0))
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, cpu0 = time.perf_counter(), time.process_time()
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        result = prof.runcall(fit, table, "chinchilla", bootstrap=bootstrap, seed=0)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    else:
        result = fit(table, "chinchilla", bootstrap=bootstrap, seed=0)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak / 1024,
                      "before_fit_mb": rss0 / 1024,
                      "params": dict(result.params), "ci_alpha": list(result.ci95["alpha"]),
                      "objective": result.objective}))


def run_one(tree: Path, rows: int, bootstrap: int, limit: float) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(rows), "--bootstrap", str(bootstrap)]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=limit, cwd=tree)
    except subprocess.TimeoutExpired:
        return {"rows": rows, "timeout": time.perf_counter() - t0}
    if out.returncode != 0:
        return {"rows": rows, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--tree", action="append", default=[], help="a checkout to time (repeatable; default this one)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--limit", type=float, default=1800.0, help="seconds before a fit is stopped")
    ap.add_argument("--profile", type=int, metavar="ROWS")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        return child(args.child, args.bootstrap, profile=False)
    if args.profile is not None:
        return child(args.profile, args.bootstrap, profile=True)
    trees = [Path(t).resolve() for t in args.tree] or [ROOT]
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at the start; bootstrap {args.bootstrap}")
    for rows in args.rows:
        for tree in trees:
            r = run_one(tree, rows, args.bootstrap, args.limit)
            if "timeout" in r:
                line = f"stopped after {r['timeout']:.0f} s"
            elif "error" in r:
                line = f"failed: {r['error']}"
            else:
                p = r["params"]
                cpu = r.get("cpu_seconds", float("nan"))
                line = (f"{r['seconds']:8.1f} s ({cpu:7.1f} CPU-s)  peak RSS {r['peak_mb']:7.0f} MB  "
                        f"alpha {p['alpha']:.6f} beta {p['beta']:.6f} E {p['E']:.6f}  "
                        f"alpha 95% [{r['ci_alpha'][0]:.4f}, {r['ci_alpha'][1]:.4f}]")
            print(f"{rows:>7} rows  {tree.name:<12} {line}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
