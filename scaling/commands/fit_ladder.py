"""`scaling fit`'s ladder check: the ladder runs (config `validates`) are taken out of the table before the
fit, and each is compared with the laws of the sweep it names (scaling.laws.ladder_check). Imported by
fit.py's parser, so it imports jax (through scaling.laws) only when called: `--help` answers without it."""
from __future__ import annotations

NOT_FITTED = "ladder runs (checked below, not fitted)"


def take_ladder(args, source, metric_name: str):
    """(the source without ladder rows, the frame the check reads: the sweep's runs and the ladder runs that
    name it, or None without any, how many rows were taken out). A table file is read here only to look for
    a `validates` column, and passed on as its path when it has no ladder row.

    Args:
        args: the fit command's arguments (runs, sweep, home).
        source: what the fit reads: a DataFrame, or a table file's path.
        metric_name: --metric (an evaluation set's NAME:loss makes that column the ladder runs' loss too).
    """
    import pandas as pd

    from scaling.laws.ladder_check import COLUMN, split_ladder
    from scaling.laws.table import read_table

    if not args.sweep:
        frame, _ = read_table(source)
        if COLUMN not in frame.columns:
            return source, None, 0
        rest, ladder = split_ladder(frame)
        if not len(ladder):
            return source, None, 0
        if "step" in ladder.columns and "run_id" in ladder.columns:  # checkpoint rows: each run's last
            ladder = ladder.sort_values("step").groupby("run_id", sort=False).tail(1)
        return rest, pd.concat([rest, ladder], ignore_index=True), len(frame) - len(rest)
    from scaling.runs import RunHome, runs_table
    from scaling.runs.table import on_metric

    rest, _ = split_ladder(source)  # a run of this sweep that checks another is no point of it either
    home = RunHome(args.home)
    ladder = runs_table(home, validating=args.sweep)
    if not len(ladder):
        return rest, None, len(source) - len(rest)
    own, _ = split_ladder(runs_table(home, args.sweep))  # final rows (`source` has checkpoints for envelope)
    if metric_name not in ("loss", "bpb"):
        own, ladder = on_metric(own, metric_name, "the runs"), on_metric(ladder, metric_name, "the ladder runs")
    return rest, pd.concat([own, ladder], ignore_index=True), len(source) - len(rest)


def run_check(frame, args, law: str, metric: str, reuse=None, reuse_runs=()):
    """The check at the fit's settings (a LadderCheck): Approach 3, and the fitted law too when it predicts a loss."""
    from scaling.laws.ladder_check import check_ladder

    options = {"bootstrap": args.bootstrap, "seed": args.seed, "huber_delta": args.huber_delta,
               "bootstrap_starts": args.bootstrap_starts}
    return check_ladder(frame, ("chinchilla", law), reuse=reuse, reuse_runs=reuse_runs, metric=metric, **options)


def reusable(args, law: str, fixed: dict, grouped: bool) -> bool:
    """Whether the command's own fit is the fit the check needs (the law at its defaults on all the rows)."""
    from scaling.laws.ladder_check import PREDICTING

    return (law in PREDICTING and not fixed and not args.holdout and not args.best_of.strip()
            and args.params_column == "params" and not grouped)


def render(check) -> str:
    from scaling.display import aligned, number

    lines = ["ladder check: runs past the sweep, kept out of every fit; each law fitted to the runs of the sweep "
             "it names, its bootstrap 95% interval; noise = the sweep's run-to-run SD (seed replicates)"]
    if check.runs:
        lines += aligned(*reversed(check.table(number)))
    return "\n".join(lines + [f"note: {n}" for n in check.notes])
