"""`scaling sweep {create,plan,status}`: designing a sweep and watching it (scaling.sweep)."""
from __future__ import annotations

import sys
import time

from scaling.commands import sweep_mix
from scaling.commands.common import (
    Subcommand,
    check_output_file,
    number_above,
    parse_budgets,
    positive_int,
    refresh_index,
    typed_value,
)
from scaling.display import duration, number
from scaling.errors import UsageError


# ---- create ---------------------------------------------------------------------------------------
def cmd_create(args) -> int:
    from scaling import sweep

    made = sweep.create_sweep(args.home, args.spec)
    runs = made["runs"]
    pending = [r for r in runs if r["status"] == "pending"]
    skipped = [r for r in runs if r["status"] == "skipped"]
    err = sys.stderr
    print(f"sweep {made['sweep_id']} ({made['method']}, {made['name']}): {len(pending)} runs queued"
          + (f", {len(skipped)} skipped" if skipped else ""), file=err)
    if pending:
        total = sum(r["plan"]["flops"] for r in pending)
        print(f"  C = 6ND over all runs: {total:.3g} FLOPs; N {min(r['plan']['params'] for r in pending):,}"
              f"..{max(r['plan']['params'] for r in pending):,}", file=err)
    for r in skipped:
        print(f"  skipped {r['run_id']}: {r['reason']}", file=err)
    for note in made["notes"]:
        print(f"  note: {note}", file=err)
    print(made["sweep_id"])
    return 0


# ---- plan -----------------------------------------------------------------------------------------
def cmd_plan(args) -> int:
    from scaling.config import load_yaml, parse_overrides
    from scaling.runs import write_atomic
    from scaling.sweep import plan

    if args.mixtures is not None:  # data mixtures at fixed scales: scaling/commands/sweep_mix.py
        return sweep_mix.cmd_plan_mixtures(args, {k: typed_value(v) for k, v in parse_overrides(args.settings).items()},
                                           load_yaml(args.base) if args.base else None)
    if args.hparams or args.validate is not None:
        from scaling.commands.sweep_hparams import cmd_plan_hparams, cmd_plan_validate

        return cmd_plan_validate(args) if args.validate is not None else cmd_plan_hparams(args)
    if args.branches and args.refine is not None:
        raise UsageError("--branches plans a new sweep (with --budgets); a refinement adds sizes to one budget each")
    if (args.budgets is None) == (args.refine is None):
        raise UsageError("give --budgets C1,C2,... (a new plan) or --refine SWEEP (sizes past the edges), one of them")
    settings = {k: typed_value(v) for k, v in parse_overrides(args.settings).items()}
    base = load_yaml(args.base) if args.base else None
    if base is not None and not isinstance(base, dict):
        raise UsageError(f"--base {args.base}: expected a sweep spec (a mapping)")
    if args.refine is not None:
        made = plan.refine_points(args.home, args.refine, args.per_budget)
        print("\n".join(made.lines), file=sys.stderr)
        if not made.points:
            print(f"every budget's minimum lies inside its sizes: nothing to refine; {args.out} not written")
            return 0
        spec = plan.spec_dict(made.points, name=args.name or made.name, base=base or made.spec, settings=settings)
        header = [f"refinement of sweep {args.refine}: sizes past the edge for budgets whose minimum fell outside",
                  f"written by: scaling sweep plan --refine {args.refine} --per-budget {args.per_budget}",
                  "fit both sweeps together: scaling runs --csv all.csv && scaling fit all.csv --law isoflop"]
    else:
        budgets = parse_budgets(args.budgets, "--budgets")
        if not budgets:
            raise UsageError("--budgets: give at least one FLOP budget, e.g. 1e11,3e11,1e12")
        spec = plan.spec_dict([], name=args.name or "isoflop-plan", base=base, settings=settings)
        constants = {k: v["value"] for k, v in spec.get("parameters", {}).items() if "value" in v}
        prior = plan.prior_from(args.prior)
        if prior.per_byte:
            prior = prior.for_corpus(plan.bytes_per_token(constants))
        shapes = plan.recipe_shapes(constants, up_to=4 * args.span * max(prior.n_opt(c) for c in budgets))
        spec["points"] = points = plan.plan_points(budgets, args.per_budget, args.span, prior, shapes)
        if args.branches:
            spec["points"] = plan.as_branches(points)
            spec.setdefault("parameters", {})["schedule"] = {"value": "wsd"}
        header = [f"isoFLOP plan: {args.per_budget} sizes per budget, log-evenly from N_opt/{args.span:g} to "
                  f"N_opt*{args.span:g}, each the recipe's nearest model (distinct within a budget)",
                  f"N_opt(C) = {prior.coefficient:.4g} C^{prior.exponent:.4g} ({prior.source})",
                  "`points` is this workbench's key, not W&B's (a list of configurations, not a product grid)",
                  f"written by: scaling sweep plan --budgets {args.budgets} --per-budget {args.per_budget} "
                  f"--span {args.span:g} --prior {args.prior}" + (" --branches" if args.branches else "")]
        floor = [c for c in budgets if plan.low_edge(prior.n_opt(c), args.span, shapes) is not None]
        if floor:
            header.insert(1, f"asymmetric at {', '.join(f'{c:.3g}' for c in floor)}: N_opt/{args.span:g} is below the "
                             f"smallest model the recipe builds ({min(shapes):,}), so those sizes run from it to "
                             f"N_opt*{args.span:g}")
        if args.branches:
            header.insert(1, f"as cooldown branches: {len(spec['points'])} WSD runs, each to the largest budget its "
                             f"size is planned at, branching at the others ({len(points)} points in all)")
        for c in budgets:
            sizes = [p["params"] for p in points if p["flops_budget"] == c]
            print(f"C = {c:.3g}: N_opt {prior.n_opt(c):.3g}; sizes {', '.join(f'{n:.3g}' for n in sizes)}"
                  + (" (asymmetric: from the smallest model up)" if c in floor else ""), file=sys.stderr)
    check_output_file(args.out, "--out")
    write_atomic(args.out, plan.render_spec(spec, header))
    print(f"wrote {args.out} ({len(spec['points'])} points); next: scaling sweep create {args.out}")
    return 0



# ---- status ---------------------------------------------------------------------------------------
def cmd_status(args) -> int:
    from scaling.runs import STATUSES, RunHome

    home = RunHome(args.home)
    if args.sweep is None:
        found = home.sweeps()
        if not found:
            print(f"no sweeps in {home.root}", file=sys.stderr)
        refresh_index(home)
        for s in found:
            counts = home.sweep_counts(s["sweep_id"])
            text = ", ".join(f"{counts[k]} {k}" for k in STATUSES if counts.get(k))
            print(f"{s['sweep_id']:<28} {time.strftime('%Y-%m-%d %H:%M', time.localtime(s['created']))}  {text}")
        return 0
    print_status(home, args.sweep)
    return 0


def print_status(home, sweep_id: str) -> None:
    """The sweep's counts, runs in flight and problems, after reading in what other engines finished."""
    from scaling import sweep
    from scaling.runs import STATUSES

    sweep.require_sweep(home, sweep_id)
    refresh_index(home, sweep_id)
    st = sweep.sweep_status(home, sweep_id)
    print(f"sweep {st.sweep_id} ({st.name}): {st.total} runs, "
          + ", ".join(f"{st.counts[k]} {k}" for k in STATUSES if st.counts.get(k))
          + (f"; {len(st.to_come)} cooldown branch(es) to come as their parents reach their cuts"
             if st.to_come else ""))
    print(f"  done {st.finished}/{st.runnable}; {st.agents} agent(s) active; "
          f"elapsed {duration(st.elapsed_s(time.time()))}" + (" (ended)" if st.ended is not None else "") + "; "
          f"ETA {duration(st.eta_s) if st.eta_s is not None else '? (no finished run to time yet)'}"
          + ("" if st.agents or st.held or not (st.runnable - st.finished) else " (if one agent runs)"))
    now = time.time()
    for r in st.current:
        p = r.progress or {}
        step = f"step {p.get('step', 0)}/{p.get('steps') or '?'}" if p.get("step") else "starting"
        print(f"  running {r.run_id}  {step}  loss {number(p.get('loss'))}  by {r.claimed_by}"
              f"  lease {r.lease_until - now:.0f} s" + (f"  attempt {r.attempts}" if r.attempts > 1 else ""))
    for r in st.held:
        p = r.progress or {}
        step = f"step {p.get('step', 0)}/{p.get('steps') or '?'}  loss {number(p.get('loss'))}" if p.get("step") \
            else "queued or starting"
        print(f"  running {r.run_id}  {step}  task of {r.claimed_by}")
    for run_id in st.stale:
        print(f"  stale   {run_id}: its agent stopped renewing the lease; the next agent takes it over")
    for r in st.problems:
        print(f"  {r.status:<7} {r.run_id}: {r.reason}")



# ---- parsers --------------------------------------------------------------------------------------
def _create_arguments(q) -> None:
    q.add_argument("spec", metavar="SPEC.yaml")


CREATE = Subcommand("create", cmd_create, _create_arguments,
                    help="register a spec's runs in the run home; prints the sweep id",
                    description="Enumerate a sweep spec (grid, or run_cap random draws) into the run home. "
                                "Points the trainer cannot run are recorded as skipped, with the reason.")


def _plan_arguments(q) -> None:
    q.add_argument("settings", nargs="*", metavar="key=value",
                   help="constant parameters of every run, e.g. corpus=stdlib seq_len=128")
    q.add_argument("--budgets", metavar="C1,C2,...", help="FLOP budgets, e.g. 2.5e11,5e11,1e12")
    q.add_argument("--per-budget", type=positive_int, default=5, metavar="K",
                   help="sizes per budget (default 5; with --refine: sizes added past the edge)")
    q.add_argument("--span", type=number_above(1.0, strict=True), metavar="R", default=3.0,
                   help="a factor: sizes from N_opt/R to N_opt*R (R = 4 spans 16x; default %(default)g)")
    q.add_argument("--prior", default="family", metavar="family|chinchilla|FIT.json",
                   help="N_opt(C): this family's law as the demo measured it (default; "
                        "analysis/family-prior.json), Hoffmann et al.'s, or a fit JSON (`scaling fit --json`, "
                        "or a report's fit.json)")
    q.add_argument("--branches", action="store_true",
                   help="one WSD run per size, to the largest budget it is planned at, with cooldown branches "
                        "at its other budgets (the same points for the cost of the longest runs and the decays)")
    q.add_argument("--hparams", action="store_true",
                   help="instead of sizes: at each budget's N_opt, an lr x batch-size grid of --per-budget values "
                        "each from the recipe's value/R to value*R (--span R), for `fit --law batch` and `--law lr`")
    q.add_argument("--validate", metavar="C_BIG",
                   help="instead: one run at C_BIG (4-30x past --sweep's largest), the compute-optimal model of "
                        "its fitted law, with the predicted loss; lr and batch size from --rules when given")
    q.add_argument("--sweep", metavar="SWEEP", help="with --validate: the finished sweep")
    q.add_argument("--rules", metavar="FIT.json,...", help="with --validate: fit JSONs of law lr and/or batch")
    q.add_argument("--refine", metavar="SWEEP",
                   help="instead of a new plan: sizes past the edge for this sweep's off-edge budgets")
    q.add_argument("--base", metavar="SPEC.yaml",
                   help="take parameters, command and metric from this spec (its size keys dropped)")
    q.add_argument("--name", help="the spec's name (default isoflop-plan, or SWEEP-refine)")
    q.add_argument("--out", required=True, metavar="SPEC.yaml", help="where to write the spec")
    sweep_mix.add_arguments(q)


PLAN = Subcommand("plan", cmd_plan, _plan_arguments,
                  help="write an isoFLOP spec centred on each budget's predicted optimum",
                  description="Write a sweep spec whose sizes, per budget, are spread log-evenly from "
                              "N_opt/R to N_opt*R around that budget's predicted N_opt (a list of points, "
                              "not a product grid); or, with --refine, sizes past the edge for each budget "
                              "of a sweep whose isoFLOP minimum fell outside its sizes.")


def _status_arguments(q) -> None:
    q.add_argument("sweep", metavar="SWEEP", nargs="?")


STATUS = Subcommand("status", cmd_status, _status_arguments,
                    help="counts by status, runs in flight, ETA",
                    description="Show a sweep's progress (or list the sweeps in the run home).")
