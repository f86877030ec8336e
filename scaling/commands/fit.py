"""`scaling fit`: fit a scaling law to a runs table and print it with 95% intervals (thin over scaling.laws)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from contextlib import contextmanager

from scaling.commands import fit_domains, fit_ladder
from scaling.commands.common import check_output_file, parse_budgets, refresh_index
from scaling.display import aligned, number
from scaling.errors import UsageError

LAW_HELP = """laws:
  chinchilla        L = E + A/N^alpha + B/D^beta, Hoffmann et al. Approach 3 (default): Huber (delta 1e-3)
                    on log residuals, summed; L-BFGS from 4,500 starts; variable-projection cross-check
  isoflop           Approach 2: a parabola in log N per FLOP budget (a 'flops_budget' column, else FLOP
                    counts within 10% of each other), then N_opt = k C^a and D_opt = k' C^b
  envelope          Approach 1: lowest loss across per-checkpoint rows ('step') at each FLOP count
  kaplan-n          L = (N_c/N)^alpha_N   (Kaplan et al. 2020; use --params-column params_nonembed)
  kaplan-d          L = (D_c/D)^alpha_D
  kaplan-joint      L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D
  compute           L = E + (C0/C)^gamma, the compute frontier
  data-constrained  Muennighoff et al. 2023: Chinchilla form on effective data and parameters for
                    repeated epochs (needs an 'epochs' column)
  lr                the best peak learning rate per size (a parabola in log lr through the final
                    losses) and lr_opt = c N^k through them; from an lr-by-size sweep ('lr' column).
                    A run then takes lr=fit:FIT.json, or recipe=FIT.json (with a batch law too)
  batch             the best batch size per budget (a parabola in log batch size, each size at its
                    best swept lr) and batch_opt = c C^k (--against loss: c L^k); from a sweep that
                    varies 'batch_size' at several budgets (`scaling sweep plan --hparams`).
                    A run then takes recipe=LR.json,FIT.json (against compute only)
""" + fit_domains.LAW_HELP + """

The runs table needs 'loss' and two of 'params', 'tokens', 'flops' (C = 6ND gives the third); rows
with missing values are dropped and counted. Runs that differ only in 'seed' are replicates of one
point: intervals are bootstrap percentiles over points, each drawn with all its seeds, and the
replicates give the noise floor (the run-to-run SD of the final loss, per budget and pooled). An
isoFLOP budget whose curve is shallower than twice that SD is flagged: its minimum is not resolved."""


# The names of scaling.laws.LAWS, repeated here so that `--help` does not import jax (a test keeps
# the two equal).
LAWS = ("chinchilla", "isoflop", "envelope", "kaplan-n", "kaplan-d", "kaplan-joint", "compute", "data-constrained",
        "lr", "batch")


# scaling.laws names a bad argument by its Python parameter; this command names the flag that gave it.
FLAGS = {"holdout": "--holdout", "fixed": "--fix", "budgets": "--at", "column": "--by", "huber_delta": "--huber-delta",
         "metric": "--metric", "params_column": "--params-column", "best_of": "--best-of",
         "keep_unresolved": "--keep-unresolved", "against": "--against"}


@contextmanager
def flag_names():
    """Re-raise a laws ArgumentError under this command's flag (`holdout=3: ...` -> `--holdout 3: ...`)."""
    from scaling.laws import ArgumentError

    try:
        yield
    except ArgumentError as err:
        raise err.for_flag(FLAGS) from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `fit` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "fit", help="fit a scaling law to a runs table; print parameters with 95%% intervals",
        description="Fit a scaling law to a runs table (CSV or Parquet) or a sweep, print parameters "
                    "with bootstrap 95% intervals and the compute-optimal allocation, and write the fit JSON.",
        epilog=LAW_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="?", metavar="RUNS", help="runs table: a .csv or .parquet file")
    p.add_argument("--sweep", metavar="SWEEP", help="read the runs of this sweep from the run home instead")
    p.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS,
                   help="run home for --sweep (default $SCALING_HOME or ./runs)")
    p.add_argument("--law", choices=LAWS + fit_domains.DOMAIN_LAWS, default="chinchilla", metavar="LAW",
                   help=f"one of {', '.join(LAWS + fit_domains.DOMAIN_LAWS)} (default chinchilla; see below)")
    p.add_argument("--json", metavar="FILE", help="write the fit JSON (unrounded numbers) here; - for stdout")
    p.add_argument("--at", metavar="C1,C2", default="",
                   help="FLOP budgets for the compute-optimal N, D, tokens/param and loss, e.g. 1e21,1e24")
    p.add_argument("--holdout", type=int, default=0, metavar="K",
                   help="leave out the K largest-compute runs, fit the rest, report the error predicting them")
    p.add_argument("--keep-unresolved", action="store_true",
                   help="isoflop: let a budget whose minimum is within the noise enter N_opt(C) (default: left out)")
    p.add_argument("--best-of", default="", metavar="COL,...",
                   help="for each (N, D) keep the lowest loss across these swept columns, e.g. lr,batch_size")
    p.add_argument("--huber-delta", type=float, default=1e-3, metavar="DELTA",
                   help="Huber threshold on log residuals (default 1e-3)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples of points, each with its seed replicates (default 1000; 0 = none)")
    p.add_argument("--bootstrap-starts", choices=("warm", "grid"), default="warm",
                   help="starts per resample: the full-data optima (warm, default) or the whole start grid (slow)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--metric", default="loss", metavar="METRIC",
                   help="fit the eval loss in nats/token (loss, default), in bits per byte (bpb: the eval_bpb "
                        "column; comparable across tokenizers), or an evaluation set's NAME:loss / NAME:bpb")
    p.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                   help="hold a parameter of the law at a value and fit the rest, e.g. --fix E=1.69 "
                        "(repeat for several; names as printed: E, A, B, alpha, beta, N_c, ...)")
    p.add_argument("--by", default="auto", metavar="COLUMN",
                   help="one law per value of this column, side by side, with the differences beyond their "
                        "intervals (default auto: by corpus when the table holds several corpora; none pools)")
    p.add_argument("--params-column", default="params", metavar="COL",
                   help="column used as N (default params, embeddings included; e.g. params_nonembed)")
    p.add_argument("--against", choices=("flops", "loss"), default="flops",
                   help="law batch: batch_opt as a power law of compute (default) or of the loss")
    fit_domains.add_arguments(p)
    p.set_defaults(func=run)
    return p


def parse_fixed(items: list[str]) -> dict[str, float]:
    """{"E": 1.69} from ["E=1.69"]; the law checks the names."""
    fixed: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--fix {item!r}: expected NAME=VALUE, e.g. --fix E=1.69")
        if name in fixed:
            raise UsageError(f"--fix {name}: given twice")
        try:
            fixed[name] = float(value)
        except ValueError:
            raise UsageError(f"--fix {item!r}: {value.strip()!r} is not a number") from None
    return fixed


def _source(args) -> tuple:
    """(the runs table or its path, the sweep's runs the table leaves out by why)."""
    if args.runs and args.sweep:
        raise UsageError("pass either a runs table or --sweep, not both")
    if args.sweep:
        from scaling.runs import RunHome, runs_table
        from scaling.runs.table import sweep_exclusions
        from scaling.sweep import require_sweep

        home = RunHome(args.home)
        require_sweep(home, args.sweep)
        refresh_index(home, args.sweep)
        # Approach 1 reads every evaluated checkpoint, the others each run's final loss.
        return runs_table(home, args.sweep, steps=args.law == "envelope"), sweep_exclusions(home, args.sweep)
    if not args.runs:
        raise UsageError("pass a runs table (CSV or Parquet) or --sweep SWEEP")
    return args.runs, {}


def run(args) -> int:
    if args.law == "mixture":
        return fit_domains.run_mixture(args, _domain_tools())
    if args.law == "loss-to-loss":
        return fit_domains.run_loss_to_loss(args, _domain_tools())
    if args.law == "accuracy":
        return fit_domains.run_accuracy(args, _domain_tools())
    fit_domains.refuse_own_flags(args)
    from scaling.laws import fit, load_runs
    from scaling.laws.table import describe_dropped
    from scaling.runs import write_atomic

    for name in ("holdout", "bootstrap"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} must be 0 or more, got {getattr(args, name)}")
    budgets = parse_budgets(args.at)
    fixed = parse_fixed(args.fix)
    if args.json:
        check_output_file(args.json, "--json")
    source, excluded = _source(args)
    if excluded and not len(source):
        raise UsageError(f"sweep {args.sweep} has no completed run to fit ({describe_dropped(excluded)})")
    metric = args.metric
    if metric not in ("loss", "bpb"):  # an evaluation set's NAME:loss or NAME:bpb becomes the table's loss
        from scaling.laws.table import read_table
        from scaling.runs.table import on_metric

        source, metric = on_metric(read_table(source)[0], metric, "the runs"), "loss"
    named = source if isinstance(source, str) else None
    loss_law = args.law not in ("lr", "batch")  # hyperparameter rules read ladder runs as any other run
    source, ladder, n_ladder = fit_ladder.take_ladder(args, source, args.metric) if loss_law else (source, None, 0)
    with flag_names():
        table = load_runs(source, params_column=args.params_column, metric=metric,
                          best_of=[c for c in args.best_of.split(",") if c.strip()])
    if named and not isinstance(source, str):  # the table file, less its ladder rows: still named by its path
        table = dataclasses.replace(table, source=named)
    # the sweep's runs the table left out, and the ladder runs (checked, never fitted), count as dropped
    table = table.with_frame(table.frame, **excluded, **{fit_ladder.NOT_FITTED: n_ladder})
    options = {"bootstrap_starts": args.bootstrap_starts} if args.law not in ("isoflop", "envelope", "lr") else {}
    if args.law == "batch":
        options = {"against": args.against}
    elif args.against != "flops":
        raise UsageError(f"--against {args.against}: applies to --law batch only")

    def fit_one(part):
        with flag_names():  # a group's reason, kept by fit_by, reads in flags too
            return fit(part, args.law, huber_delta=args.huber_delta, bootstrap=args.bootstrap, seed=args.seed,
                       budgets=budgets, holdout=args.holdout, fixed=fixed, keep_unresolved=args.keep_unresolved,
                       **options)

    by = group_column(args.by, table)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if by is not None:
            from scaling.laws import fit_by

            with flag_names():
                result = fit_by(table, by, fit_one)
            summary = render_grouped(result, table.source, table.metric)
        else:
            result = fit_one(table)
            summary = render(result, table.source, table.metric)
    check = None
    if ladder is not None:
        with warnings.catch_warnings(record=True) as more:
            warnings.simplefilter("always")
            reuse = fit_ladder.reusable(args, args.law, fixed, by is not None)
            check = fit_ladder.run_check(ladder, args, args.law, metric, reuse={args.law: result} if reuse else None,
                                         reuse_runs=set(table.frame["run"]) if reuse else ())
        caught += more
        if check is not None:
            summary += "\n\n" + fit_ladder.render(check)
    print_warnings(caught)
    extra = {} if check is None else {"ladder_check": check.to_json()}
    text = json.dumps({**result.to_json(), "metric": args.metric, **extra}, indent=2, allow_nan=False) + "\n"
    if args.json == "-":  # the JSON alone on stdout, for a pipe; the readable summary goes to stderr
        print(summary, file=sys.stderr)
        sys.stdout.write(text)
        return 0
    print(summary)
    if args.json:
        write_atomic(args.json, text)
        print(f"wrote {args.json}")
    return 0


def _domain_tools() -> fit_domains.Tools:
    return fit_domains.Tools(source=_source, render=render, print_warnings=print_warnings, parse_fixed=parse_fixed)


def print_warnings(caught) -> None:
    """The fit's warnings as lines in the command's terms: a budget past the law's reach names --at; numeric
    warnings (e.g. an exp overflowing at a far-off optimizer start) become one counted note, never a raw
    Python warning with its source line."""
    from scaling.laws.table import warning_notes

    messages, numeric = warning_notes(caught)
    for message in messages:  # the laws say at=C; this command's flag is --at
        print("warning: " + (message.replace("at=", "--at ", 1) if message.startswith("at=") else message),
              file=sys.stderr)
    if numeric:
        print(f"note: {numeric}", file=sys.stderr)


def group_column(by: str, table) -> str | None:
    """--by: auto splits by corpus when the table holds several (a law pooled over corpora fits none of
    them), none pools, anything else names a column."""
    from scaling.laws import several_corpora

    if by == "none":
        return None
    if by == "auto":
        return "corpus" if several_corpora(table) else None
    return by


# --- display (rounding happens only here) -------------------------------------------------------
def _ci(ci) -> str:
    return "" if not ci else f"[{number(ci[0])}, {number(ci[1])}]"


def render(result, source: str, metric: str = "loss") -> str:
    """A readable summary of any law's fit: method, estimates with 95% intervals, the law's own
    tables, the compute-optimal choice at the requested budgets, and findings."""
    from scaling.laws.table import describe_dropped

    lines = [f"{result.law}: {result.title}",
             f"{source}: {result.n_points} points used, {sum(result.dropped.values())} dropped"
             f" ({describe_dropped(result.dropped)})"
             + ("; loss = eval bits per byte (eval_bpb)" if metric == "bpb" else ""), result.method(), ""]
    lines += aligned([(e.name, e.value, _ci(e.ci95)) for e in result.estimates()],
                   ("parameter", "value", "95% interval"))
    for table in result.details():
        lines += [""] + aligned(table.rows, table.header)
    opt = result.optimal
    if opt is not None and opt.at:
        rows = [(p.flops, f"{number(p.params)} {_ci(p.ci95.get('params'))}" if p.params is not None else "-",
                 f"{number(p.tokens)} {_ci(p.ci95.get('tokens'))}" if p.tokens is not None else "-",
                 number(p.tokens_per_param, 3) if p.tokens_per_param is not None else "-",
                 f"{number(p.loss)} {_ci(p.ci95.get('loss'))}" if p.loss is not None else "-") for p in opt.at]
        lines += [""] + aligned(rows, ("budget (FLOPs)", "N_opt", "D_opt", "tokens/param", "loss"))
    notes = result.notes()
    if notes:
        lines += [""] + notes
    return "\n".join(lines)


def render_grouped(grouped, source: str, metric: str = "loss") -> str:
    """Each group's fit in full, then the quantities side by side and the differences beyond intervals."""
    lines = []
    for value, result in grouped.results.items():
        lines += [f"=== {grouped.column} = {value}", render(result, f"{source} [{grouped.column} = {value}]", metric),
                  ""]
    for value, why in grouped.errors.items():
        lines += [f"=== {grouped.column} = {value}: not fitted: {why}", ""]
    groups = list(grouped.results)
    rows = [(name, *(f"{number(by[g][0])} {_ci(by[g][1])}" if g in by and by[g][0] is not None else "-"
                     for g in groups)) for name, by in grouped.quantities().items()]
    lines += [f"side by side ({grouped.column}):"] + aligned(rows, ("quantity", *groups)) + [""]
    found = grouped.differences()
    lines += [f"differences beyond the 95% intervals ({len(found)}):"] + [
        "  " + d.describe(grouped.column) for d in found] if found else [
        "no quantity differs beyond the 95% intervals (overlap is not evidence of equality)"]
    return "\n".join(lines)
