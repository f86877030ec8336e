"""`scaling dashboard`: a saved W&B workspace for a sweep (its definition only, when offline)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("dashboard", help="a saved W&B workspace for a sweep (definition only when offline)",
                       description="Build the sweep's W&B workspace: loss vs FLOPs by size, isoFLOP, "
                                   "parallel coordinates.")
    p.add_argument("--sweep", required=True)
    p.add_argument("--project", default="scaling")
    p.add_argument("--out", default="reports", help="where the offline definition goes (default ./reports)")
    p.add_argument("--report", metavar="DIR",
                   help="also a W&B Report of this `scaling report --out DIR` folder: its figures and tables")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from scaling.commands.common import check_output_dir
    from scaling.errors import UsageError

    # The id names a file (workspace-<sweep>.json): no separators, no '..'.
    if not args.sweep or args.sweep.startswith(".") or not all(c.isalnum() or c in "-_." for c in args.sweep):
        raise UsageError(f"--sweep {args.sweep!r}: a sweep id uses letters, digits, '-', '_' and '.' only")
    check_output_dir(args.out, "--out")
    if args.report is not None and not os.path.isfile(os.path.join(args.report, "report.md")):
        raise UsageError(f"--report {args.report}: not a report folder (no report.md; make one with "
                         f"`scaling report --sweep {args.sweep} --out DIR`)")
    from scaling.report.dashboard import dashboard

    out = dashboard(args.sweep, args.out, project=args.project, report_dir=args.report)
    if out["saved"]:
        print(f"saved W&B workspace: {out['url']}")
        if "report_url" in out:
            print(f"saved W&B report: {out['report_url']}")
        return 0
    wrote = out["definition"] + (f" and the report definition to {out['report_definition']}" if args.report else "")
    again = f"scaling dashboard --sweep {args.sweep}" + (f" --report {args.report}" if args.report else "")
    print(f"W&B is offline: wrote the workspace definition to {wrote}\n"
          f"to push: `wandb login` (or set WANDB_API_KEY), sync the runs and the report's analysis run "
          f"(wandb sync runs/*/wandb/offline-run-*), then run `{again}` again")
    return 0
