"""`scaling sweep plan --hparams`: write an lr x batch-size sweep at several budgets (scaling.sweep.hparams),
the sweep `scaling fit --law batch` and `--law lr` read."""
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
