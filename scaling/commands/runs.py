"""`scaling runs`: the tidy runs table (the input of `scaling fit` and `scaling report`)."""
from __future__ import annotations

import io
import sys

from scaling.commands.common import add_home, check_output_file


def add_parser(sub) -> None:
    p = sub.add_parser("runs", help="the tidy runs table (the input of fit and report)",
                       description="One row per completed run: params, tokens, flops, loss (final eval) and "
                                   "context; with --steps one row per evaluated checkpoint.")
    p.add_argument("--sweep", metavar="SWEEP", help="only this sweep's runs")
    p.add_argument("--csv", metavar="FILE", help="write the table (CSV; .parquet by extension; - for stdout)")
    p.add_argument("--steps", action="store_true", help="one row per evaluated checkpoint, with `step`")
    p.add_argument("--reindex", action="store_true", help="rebuild the SQLite index from the run directories first")
    add_home(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling.runs import RunHome, runs_table, write_atomic
    from scaling.sweep import require_sweep

    home = RunHome(args.home)
    if args.csv:
        check_output_file(args.csv, "--csv")
    if args.reindex:
        counts = home.reindex()
        print(f"reindexed {home.root}: {counts['runs']} run dirs, {counts['sweeps']} sweep(s) restored, "
              f"{counts['reset']} reset to pending, {counts['dropped']} dropped", file=sys.stderr)
    if args.sweep is not None:
        require_sweep(home, args.sweep)
    table = runs_table(home, sweep_id=args.sweep, steps=args.steps)
    if args.csv:
        if args.csv == "-":
            table.to_csv(sys.stdout, index=False)
        elif args.csv.endswith(".parquet"):
            buffer = io.BytesIO()
            table.to_parquet(buffer, index=False)
            write_atomic(args.csv, buffer.getvalue())
        else:
            write_atomic(args.csv, table.to_csv(index=False))
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
