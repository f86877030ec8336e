"""`scaling sweep plan --mixtures K --domains a,b,c`: a spec of data mixtures (scaling/sweep/mixplan.py)."""
from __future__ import annotations

import sys

from scaling.commands.common import positive_int
from scaling.errors import UsageError

DEFAULT_AT = "2e4,1e6"


def add_arguments(q) -> None:
    """The mixture planner's flags of `scaling sweep plan`."""
    q.add_argument("--mixtures", type=positive_int, metavar="K",
                   help="instead of sizes: K data mixtures of --domains, Dirichlet-spread, plus the pure domains")
    q.add_argument("--domains", metavar="a,b,c",
                   help="--mixtures: the domains, NAME:DIR each (or NAME, with a domains=NAME:DIR,... setting)")
    q.add_argument("--at", metavar="PARAMS,TOKENS",
                   help=f"--mixtures: the (first) scale's size and length (default {DEFAULT_AT})")
    q.add_argument("--scales", metavar="M1,M2", default="1",
                   help="--mixtures: compute multiples of --at to plan the same mixtures at, e.g. 1,4 (params "
                        "and tokens each grow by sqrt(M)); default 1")
    q.add_argument("--mix-seed", type=int, default=0, metavar="S", help="--mixtures: the Dirichlet draws' seed")
    q.add_argument("--seeds", type=positive_int, default=1, metavar="R",
                   help="--mixtures: train the first scale's pure domains R times (seeds 0..R-1: the run-to-run noise)")


def cmd_plan_mixtures(args, settings: dict, base: dict | None) -> int:
    from scaling.commands.common import check_output_file
    from scaling.runs import write_atomic
    from scaling.sweep import mixplan
    from scaling.sweep.plan import render_spec

    if args.budgets is not None or args.refine is not None or args.branches:
        raise UsageError("--mixtures plans mixtures at fixed scales; --budgets, --refine and --branches plan sizes")
    if not args.domains:
        raise UsageError("--mixtures needs --domains NAME:DIR,NAME:DIR,... (two or more)")
    if "mixture" in settings:
        raise UsageError("mixture=...: the planner writes each point's mixture; leave it out")
    domains = mixplan.parse_domains(args.domains, settings, base)
    scales = mixplan.parse_scales(args.at or DEFAULT_AT, args.scales)
    spec = mixplan.mixture_spec(args.mixtures, domains, scales, seed=args.mix_seed, seeds=args.seeds,
                                name=args.name or "mixture-plan", base=base, settings=settings)
    flags = (f"--mixtures {args.mixtures} --domains {args.domains} --at {args.at or DEFAULT_AT} "
             f"--scales {args.scales}" + (f" --mix-seed {args.mix_seed}" if args.mix_seed else "")
             + (f" --seeds {args.seeds}" if args.seeds > 1 else ""))
    header = [f"mixture plan: the {len(domains)} pure domains and {args.mixtures} mixtures (flat Dirichlet, seed "
              f"{args.mix_seed}, the best-spread of 256 sets) at {len(scales)} scale(s): "
              + "; ".join(f"N {s.params:.3g} D {s.tokens:.3g} (C {s.flops:.3g})" for s in scales),
              "`points` is this workbench's key, not W&B's (a list of configurations, not a product grid)",
              f"written by: scaling sweep plan {flags}"]
    check_output_file(args.out, "--out")
    write_atomic(args.out, render_spec(spec, header))
    print(f"wrote {args.out} ({len(spec['points'])} points); next: scaling sweep create {args.out}")
    print("\n".join(f"  {p['mixture']}" for p in spec["points"][:len(domains) + args.mixtures]), file=sys.stderr)
    return 0
