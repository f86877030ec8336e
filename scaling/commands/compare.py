"""`scaling compare`: two or more recipes compared by effective compute (thin over scaling.laws.compare)."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from scaling.commands.common import check_output_file, parse_budgets, refresh_index
from scaling.display import aligned, number
from scaling.errors import UsageError

EPILOG = """For each group of --by, Chinchilla's law (Approach 3, as `scaling fit`) gives the compute-optimal
frontier L*(C). For each pair (A, B, in order of appearance) k(C) is the effective-compute multiplier:
B reaches at C the loss A reaches at k*C (k > 1: B is better; inf: B's loss lies below A's floor E).
Intervals: bootstrap percentiles over points, each drawn with its seed replicates. The crossover is
the compute where the frontiers meet, searched up to 1e6x the data's largest compute.
--shared E adds a joint fit with one irreducible loss for all groups, and says which of the two
predicts each group's --holdout largest-compute runs better.

examples:
  scaling compare --sweep SWEEP --by parametrization --shared E
  scaling compare runs.csv --by qk_norm --budgets 1e15,1e17 --json compare.json --figure k.png"""

HOLDOUT_DEFAULT = 3  # per group, with --shared E: the largest-compute runs both fits must predict


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare", help="compare recipes by effective compute: k(C), crossover, shared-E fit",
        description="Compare groups of runs (recipes) by the effective-compute multiplier of their fitted laws.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="?", metavar="RUNS", help="runs table: a .csv or .parquet file")
    p.add_argument("--sweep", metavar="SWEEP", help="read the runs of this sweep from the run home instead")
    p.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS,
                   help="run home for --sweep (default $SCALING_HOME or ./runs)")
    p.add_argument("--by", required=True, metavar="COLUMN", help="the column whose values are the recipes")
    p.add_argument("--budgets", default="", metavar="C1,C2",
                   help="FLOPs for k(C) (default: the data's largest compute x1, x10, x100)")
    p.add_argument("--shared", choices=("E",), metavar="E",
                   help="also fit all groups with one irreducible loss E, and compare the two on held-out runs")
    p.add_argument("--holdout", type=int, default=None, metavar="K",
                   help=f"with --shared E: per group, the K largest-compute runs held out of both fits "
                        f"(default {HOLDOUT_DEFAULT}; 0 skips the comparison)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples per group (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--metric", choices=("loss", "bpb"), default="loss",
                   help="compare the eval loss in nats/token (default) or bits per byte (eval_bpb)")
    p.add_argument("--params-column", default="params", metavar="COL", help="column used as N (default params)")
    p.add_argument("--json", metavar="FILE", help="write the comparison JSON (unrounded) here; - for stdout")
    p.add_argument("--figure", metavar="FILE", help="draw k(C) with its band into FILE (.png, .svg, .pdf)")
    p.set_defaults(func=run)
    return p


def _table(args):
    from scaling.laws import load_runs

    if args.runs and args.sweep:
        raise UsageError("pass either a runs table or --sweep, not both")
    if args.sweep:
        from scaling.runs import RunHome, runs_table
        from scaling.sweep import require_sweep

        home = RunHome(args.home)
        require_sweep(home, args.sweep)
        refresh_index(home, args.sweep)
        source = runs_table(home, args.sweep)
        if not len(source):
            raise UsageError(f"sweep {args.sweep} has no completed run to compare")
        if args.by not in source.columns:  # a recipe key (qk_norm, mlp, parametrization): from each run's config
            from scaling.report.grouping import config_values

            given = config_values({r.run_id: r.config or {} for r in home.sweep_runs(args.sweep)}, args.by)
            if given is None:
                raise UsageError(f"--by {args.by}: neither a runs-table column nor a key the sweep's runs set")
            source = source.assign(**{args.by: source["run_id"].map(given).astype(str)})
    elif args.runs:
        source = args.runs
    else:
        raise UsageError("pass a runs table (CSV or Parquet) or --sweep SWEEP")
    return load_runs(source, params_column=args.params_column, metric=args.metric)


def run(args) -> int:
    from scaling.commands.fit import flag_names, print_warnings
    from scaling.laws import split_by
    from scaling.laws.compare import compare_groups
    from scaling.runs import write_atomic

    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap must be 0 or more, got {args.bootstrap}")
    holdout = HOLDOUT_DEFAULT if args.holdout is None else args.holdout
    if holdout < 0:
        raise UsageError(f"--holdout must be 0 or more, got {holdout}")
    if args.holdout and not args.shared:
        raise UsageError("--holdout compares the separate fits with the shared-E fit: add --shared E")
    budgets = parse_budgets(args.budgets, "--budgets")
    for path, flag in ((args.json, "--json"), (args.figure, "--figure")):
        if path and path != "-":
            check_output_file(path, flag)
    if args.figure and not args.figure.endswith((".png", ".svg", ".pdf")):
        raise UsageError(f"--figure {args.figure}: give a .png, .svg or .pdf file")
    with flag_names():
        table = _table(args)
        parts = split_by(table, args.by)
    if len(parts) < 2:
        raise UsageError(f"--by {args.by}: the table has one value ({next(iter(parts))}); nothing to compare")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compare_groups(parts, args.by, budgets=budgets, bootstrap=args.bootstrap, seed=args.seed,
                                shared_e=bool(args.shared), holdout=holdout if args.shared else 0)
    print_warnings(caught)
    summary = render(result, table.source)
    if args.figure:
        from scaling.report.compare_figure import save_multiplier_figure

        save_multiplier_figure(result, args.figure)
    text = json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n"
    if args.json == "-":
        print(summary, file=sys.stderr)
        sys.stdout.write(text)
        return 0
    print(summary)
    if args.json:
        write_atomic(args.json, text)
        print(f"wrote {args.json}")
    if args.figure:
        print(f"wrote {args.figure}")
    return 0


def _k(value, ci) -> str:
    show = lambda x: "inf" if x == float("inf") else number(x)  # noqa: E731
    return show(value) + ("" if ci is None else f" [{show(ci[0])}, {show(ci[1])}]")


def render(result, source: str) -> str:
    """The groups' laws and noise floors, then per pair k(C) at each budget and the crossover."""
    lines = [f"compare by {result.column}: {source}; Chinchilla's law per group, frontier "
             "L*(C) = E + K (C/6)^-gamma", ""]
    for g, fit in result.fits.items():
        p = fit.params
        noise = fit.noise.pooled.sd if fit.noise is not None else None
        lines.append(f"  {g}: E {number(p['E'])}  alpha {number(p['alpha'])}  beta {number(p['beta'])}  "
                     f"({fit.n_points} points; seed-noise SD {number(noise) if noise is not None else 'not measured'})")
    for pair in result.pairs:
        lines += ["", f"{pair.b} (B) against {pair.a} (A): B at C reaches A's loss at k*C"]
        header = ("budget (FLOPs)", "k [95%]", "loss A", "loss B", "A - B [95%]", "")
        rows = [(number(m.flops), _k(m.k, m.ci95), number(m.loss_a), number(m.loss_b),
                 number(m.gap) + ("" if m.gap_ci95 is None else f" [{number(m.gap_ci95[0])}, {number(m.gap_ci95[1])}]"),
                 m.verdict) for m in pair.separate]
        lines += aligned(rows, header, indent="  ")
        lines.append(f"crossover: {pair.crossover.describe()}")
        if pair.shared:
            lines.append("with E shared: " + "; ".join(f"k at {number(m.flops)} = {_k(m.k, m.ci95)}"
                                                       for m in pair.shared))
            lines.append(f"with E shared, crossover: {pair.shared_crossover.describe()}")
    if result.shared is not None:
        s = result.shared
        lines += ["", f"shared E: {number(s.E)}" + ("" if s.E_ci95 is None else
                                                    f" [{number(s.E_ci95[0])}, {number(s.E_ci95[1])}]")
                  + " (separately: " + ", ".join(f"{g} {number(f.params['E'])}" for g, f in result.fits.items())
                  + ")"]
    if result.preference is not None:
        h = result.preference
        lines.append(f"held out {h.held_runs} largest-compute runs: mean |relative error| separate "
                     f"{100 * h.separate_error:.3g}%, shared E {100 * h.shared_error:.3g}%: the data prefer "
                     f"{h.preferred}")
    return "\n".join(lines)

