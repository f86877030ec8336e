"""`scaling dashboard`: a saved W&B workspace for a sweep (its definition only, when offline)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("dashboard", help="a saved W&B workspace for a sweep (definition only when offline)",
                       description="Build the sweep's W&B workspace: loss vs FLOPs by size, isoFLOP, "
                                   "parallel coordinates.")
    p.add_argument("--sweep", required=True)
    p.add_argument("--project", default="scaling")
    p.add_argument("--out", default="reports", help="where the offline definition goes (default ./reports)")
    p.set_defaults(func=run)


def run(args) -> int:
    from scaling.commands.common import check_output_dir
    from scaling.errors import UsageError

    # The id names a file (workspace-<sweep>.json): no separators, no '..'.
    if not args.sweep or args.sweep.startswith(".") or not all(c.isalnum() or c in "-_." for c in args.sweep):
        raise UsageError(f"--sweep {args.sweep!r}: a sweep id uses letters, digits, '-', '_' and '.' only")
    check_output_dir(args.out, "--out")
    from scaling.report.dashboard import dashboard

    out = dashboard(args.sweep, args.out, project=args.project)
    if out["saved"]:
        print(f"saved W&B workspace: {out['url']}")
    else:
        print(f"W&B is offline: wrote the workspace definition to {out['definition']}\n"
              f"to push it: set WANDB_API_KEY and WANDB_ENTITY, sync the runs "
              f"(wandb sync runs/*/wandb/offline-run-*), then run `scaling dashboard --sweep {args.sweep}` again")
    return 0
