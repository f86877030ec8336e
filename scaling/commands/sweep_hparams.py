"""`scaling sweep plan --hparams`: write an lr x batch-size sweep at several budgets (scaling.sweep.hparams),
the sweep `scaling fit --law batch` and `--law lr` read; and `--validate C_BIG`: the ladder run past a finished
sweep (scaling.sweep.ladder)."""
from __future__ import annotations

import sys

from scaling.commands.common import check_output_file, parse_budgets, typed_value
from scaling.errors import UsageError

HPARAM_KEYS = ("lr", "batch_size")  # the grid sets them per point: a constant of either would contradict it


def cmd_plan_hparams(args) -> int:
    from scaling.config import load_yaml, parse_overrides
    from scaling.runs import write_atomic
    from scaling.sweep import plan
    from scaling.sweep.hparams import plan_grid

    if args.refine is not None or args.branches:
        raise UsageError("--hparams plans a new lr x batch sweep at --budgets; it takes neither --refine nor "
                         "--branches")
    if args.budgets is None:
        raise UsageError("--hparams needs --budgets C1,C2,... (at least two: the batch law is a power law in C)")
    budgets = parse_budgets(args.budgets, "--budgets")
    if len(budgets) < 2:
        raise UsageError("--budgets: --hparams needs at least two budgets (the batch law is a power law in C)")
    settings = {k: typed_value(v) for k, v in parse_overrides(args.settings).items()}
    base = load_yaml(args.base) if args.base else None
    if base is not None and not isinstance(base, dict):
        raise UsageError(f"--base {args.base}: expected a sweep spec (a mapping)")
    prior = plan.prior_from(args.prior)
    spec = plan.spec_dict([], name=args.name or "hparam-plan", base=base, settings=settings)
    parameters = spec.get("parameters", {})
    # The recipe's values come from the constants (a given lr or batch_size is the centre); the points set both.
    constants = {k: v["value"] for k, v in parameters.items() if "value" in v}
    for key in HPARAM_KEYS:
        parameters.pop(key, None)
    if not parameters:
        spec.pop("parameters", None)
    grids = plan_grid(budgets, args.per_budget, args.span, prior, constants)
    spec["points"] = [p for g in grids for p in g.points()]
    for g in grids:
        print(g.describe(), file=sys.stderr)
    k = args.per_budget
    header = [f"hyperparameter plan: at each budget the prior's N_opt snapped to the recipe's nearest model, and "
              f"{k} learning rates x {k} batch sizes log-evenly from the recipe's value/{args.span:g} to "
              f"value*{args.span:g}",
              f"N_opt(C) = {prior.coefficient:.4g} C^{prior.exponent:.4g} ({prior.source})",
              "fit: scaling fit --sweep ID --law batch (batch_opt = c C^k), scaling fit --sweep ID --law lr",
              f"written by: scaling sweep plan --hparams --budgets {args.budgets} --per-budget {k} "
              f"--span {args.span:g} --prior {args.prior}"]
    check_output_file(args.out, "--out")
    write_atomic(args.out, plan.render_spec(spec, header))
    print(f"wrote {args.out} ({len(spec['points'])} points); next: scaling sweep create {args.out}")
    return 0


def cmd_plan_validate(args) -> int:
    """`sweep plan --validate C_BIG --sweep SWEEP [--rules FIT.json,...]`: the ladder run's spec."""
    import warnings

    from scaling.commands.fit import print_warnings
    from scaling.config import parse_overrides
    from scaling.runs import write_atomic
    from scaling.sweep import plan
    from scaling.sweep.ladder import ladder_for_sweep, read_rules

    if args.refine is not None or args.branches or args.budgets is not None or args.hparams:
        raise UsageError("--validate plans one run past a finished sweep; it takes none of --budgets, --refine, "
                         "--branches, --hparams")
    if not args.sweep:
        raise UsageError("--validate C_BIG needs --sweep SWEEP (the finished sweep whose law to check)")
    (flops,) = parse_budgets(args.validate, "--validate") or [None]
    if flops is None:
        raise UsageError("--validate: give one FLOP budget, e.g. --validate 1e13")
    rules = read_rules([p for p in (args.rules or "").split(",") if p.strip()])
    check_output_file(args.out, "--out")
    with warnings.catch_warnings(record=True) as caught:  # the fit's numeric warnings: one counted note
        warnings.simplefilter("always")
        run, registered, name = ladder_for_sweep(args.home, args.sweep, flops, rules)
    print_warnings(caught)
    settings = {k: typed_value(v) for k, v in parse_overrides(args.settings).items()}
    spec = plan.spec_dict([run.point()], name=args.name or name, base=registered, settings=settings)
    for key in HPARAM_KEYS:  # a fitted rule replaces the sweep's constant
        if key in run.point():
            spec.get("parameters", {}).pop(key, None)
    spec["description"] = " ".join(run.lines())
    header = [f"ladder run of sweep {args.sweep}: the compute-optimal model of its fitted law, past its largest budget",
              *run.lines(),
              f"after it finishes: scaling fit --sweep {args.sweep} (or its report) checks its loss against the "
              "prediction (its `validates` keeps it out of the fit)",
              f"written by: scaling sweep plan --validate {args.validate} --sweep {args.sweep}"
              + (f" --rules {args.rules}" if args.rules else "")]
    print("\n".join(run.lines()), file=sys.stderr)
    write_atomic(args.out, plan.render_spec(spec, header))
    print(f"wrote {args.out} (1 point); next: scaling sweep create {args.out}")
    return 0
