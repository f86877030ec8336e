"""`scaling runs`: the tidy runs table (the input of `scaling fit` and `scaling report`)."""
from __future__ import annotations

import io
import os
import sys

from scaling.commands.common import add_home, check_output_file, refresh_index


def add_parser(sub) -> None:
    p = sub.add_parser("runs", help="the tidy runs table (the input of fit and report)",
                       description="One row per completed run: params, tokens, flops, loss (final eval) and "
                                   "context; with --steps one row per evaluated checkpoint.")
    p.add_argument("--sweep", metavar="SWEEP", help="only this sweep's runs")
    p.add_argument("--csv", metavar="FILE", help="write the table (CSV; .parquet by extension; - for stdout)")
    p.add_argument("--steps", action="store_true", help="one row per evaluated checkpoint, with `step`")
    p.add_argument("--reindex", action="store_true", help="rebuild the SQLite index from the run directories first")
    p.add_argument("--from-wandb", metavar="ENTITY/PROJECT[/SWEEP_ID]",
                   help="read the finished runs from W&B's API instead of the run home (runs that `wandb agent` "
                        "trained on other machines); with --csv, the table `fit` and `report` read")
    add_home(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling.runs import RunHome, rebuild, runs_table
    from scaling.sweep import require_sweep

    if args.csv:
        check_output_file(args.csv, "--csv")
    if args.from_wandb is not None:
        return _from_wandb(args)
    home = RunHome(args.home)
    if args.reindex:
        counts = rebuild.reindex(home)
        for skipped in counts["skipped"]:
            print(f"skipped {skipped}", file=sys.stderr)
        print(f"reindexed {home.root}: {counts['runs']} run dirs, {counts['sweeps']} sweep(s) restored, "
              f"{counts['reset']} reset to pending, {counts['dropped']} dropped", file=sys.stderr)
    if args.sweep is not None:
        require_sweep(home, args.sweep)
    refresh_index(home, args.sweep)
    table = runs_table(home, sweep_id=args.sweep, steps=args.steps)
    if args.csv:
        _write(table, args.csv)
        return 0
    if table.empty:
        print("no completed runs" + (f" in sweep {args.sweep}" if args.sweep else "") + f" in {home.root}",
              file=sys.stderr)
        return 0
    # corpus and metric beside the loss: a BPE run's 5-7 nats/token and a byte run's 1-2 are not comparable
    shown = ["run_id"] + (["step"] if args.steps else []) + ["params", "tokens", "flops", "loss", "metric", "corpus",
                                                             "lr", "wall_s"]
    fmt = {"flops": "{:.3g}".format, "loss": "{:.4f}".format, "lr": "{:.3g}".format, "wall_s": "{:.1f}".format,
           "corpus": _short_corpus}
    print(table[shown].to_string(index=False, formatters=fmt))
    print(f"({len(table)} rows; --csv FILE for all columns)", file=sys.stderr)
    return 0


def _from_wandb(args) -> int:
    from scaling.errors import UsageError
    from scaling.runs.wandb_import import parse_wandb_path, wandb_runs_table

    for flag, given in (("--sweep", args.sweep), ("--steps", args.steps), ("--reindex", args.reindex)):
        if given:
            raise UsageError(f"{flag} does not apply to --from-wandb (give the sweep as ENTITY/PROJECT/SWEEP_ID; "
                             f"W&B runs give final losses only)")
    parse_wandb_path(args.from_wandb)  # a malformed path is refused before wandb is imported
    table, left_out = wandb_runs_table(args.from_wandb)
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(left_out.items()))
    print(f"{args.from_wandb}: {len(table)} finished runs" + (f" ({skipped} left out)" if skipped else ""),
          file=sys.stderr)
    if args.csv:
        _write(table, args.csv)
    elif not table.empty:
        fmt = {"flops": "{:.3g}".format, "loss": "{:.4f}".format, "lr": "{:.3g}".format}
        print(table[["run_id", "sweep_id", "params", "tokens", "flops", "loss", "lr"]].to_string(index=False,
                                                                                                formatters=fmt))
    return 0


def _short_corpus(spec) -> str:
    """A corpus folder's own name (the CSV keeps the whole path)."""
    text = str(spec)
    return os.path.basename(text.rstrip("/")) or text if "/" in text else text


def _write(table, path: str) -> None:
    from scaling.runs import write_atomic

    if path == "-":
        table.to_csv(sys.stdout, index=False)
        return
    if path.endswith(".parquet"):
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        write_atomic(path, buffer.getvalue())
    else:
        write_atomic(path, table.to_csv(index=False))
    print(f"wrote {len(table)} rows to {path}", file=sys.stderr)
