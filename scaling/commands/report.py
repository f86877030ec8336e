"""`scaling report`: fit a sweep (or a runs table) and write the report; print its headline."""
from __future__ import annotations

import os
import sys

from scaling.commands.common import add_home, check_output_dir, refresh_index
from scaling.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="figures, tables and the compute-optimal answer as HTML and Markdown",
                       description="Fit the runs of a sweep (or a runs table) and write the report.")
    p.add_argument("inputs", nargs="*", metavar="[SPEC.yaml] [RUNS.csv]",
                   help="a report spec from analysis/ and/or a runs table")
    p.add_argument("--sweep", help="the sweep whose finished runs to use")
    p.add_argument("--out", required=True, help="output directory (index.html, report.md, fit.json, figures/)")
    p.add_argument("--bootstrap", type=int, help="bootstrap resamples (default: the spec's, 1000)")
    p.add_argument("--metric", metavar="METRIC",
                   help="fit and plot the eval loss in nats/token (loss, default), in bits per byte (bpb; runs of "
                        "different tokenizers), or an evaluation set's NAME:loss / NAME:bpb (the spec's `metric`)")
    p.add_argument("--keep-unresolved", action="store_true", default=None,
                   help="isoflop: let a budget whose minimum is within the noise enter N_opt(C) (default: listed "
                        "under excluded and left out; the spec's `keep_unresolved`)")
    p.add_argument("--wandb", default="auto", choices=("auto", "off", "offline", "online"),
                   help="log figures and tables to a W&B analysis run (default: offline without an API key)")
    add_home(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling import report

    spec_path, csv = None, None
    for item in args.inputs:
        if item.endswith((".yaml", ".yml")):
            spec_path = item
        elif item.endswith((".csv", ".parquet")):
            csv = item
        else:
            raise UsageError(f"{item!r}: expected a report spec (.yaml) or a runs table (.csv, .parquet)")
    if args.bootstrap is not None and args.bootstrap < 0:
        raise UsageError(f"--bootstrap {args.bootstrap}: must be 0 or more resamples")
    check_output_dir(args.out, "--out")
    spec = report.ReportSpec.load(spec_path, sweep=args.sweep, bootstrap=args.bootstrap, metric=args.metric,
                                     keep_unresolved=args.keep_unresolved)
    csv = csv or spec.runs
    if csv is None and spec.sweep is None:
        raise UsageError("give --sweep SWEEP, a RUNS.csv, or a spec that names one")
    if csv is None:
        refresh_index(args.home, spec.sweep)
    made = report.build(spec, args.out, home=args.home, csv=csv, wandb=args.wandb,
                        progress=lambda m: print(m, file=sys.stderr))
    files = made.files
    print("\n".join(files.headline))
    print(f"report: {files.html}  ({len(files.figures)} figures; {files.markdown}, {files.fit_json})")
    if made.wandb_dir:
        push = f"  (push later: wandb sync {os.path.dirname(made.wandb_dir)})" if made.wandb_mode == "offline" else ""
        print(f"W&B analysis run ({made.wandb_mode}): {made.wandb_dir}{push}")
    return 0
