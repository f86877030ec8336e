"""`scaling fit --law mixture|loss-to-loss|accuracy`: the laws over several evaluation domains (thin over
scaling.laws.mixture, .loss_to_loss and .accuracy). Imports of scaling.laws stay inside functions, so that
`scaling fit --help` does not load jax."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from scaling.errors import UsageError

DOMAIN_LAWS = ("mixture", "loss-to-loss", "accuracy")  # scaling.laws.DOMAIN_LAWS (a test keeps them equal)

LAW_HELP = """  mixture           Ye et al.'s data mixing law per evaluation domain,
                    L_i(r) = c_i + k_i exp(sum_j t_ij r_j) over the mixture proportions (mix/<domain>
                    columns; eval/<domain>/loss per domain) at each scale (flops_budget, else params
                    and tokens), and the mixture minimising --target a=0.5,b=0.5 (default equal);
                    --holdout K predicts K unseen mixtures per scale (drawn by --seed)
  loss-to-loss      L_y = E_y + K (L_x - E_x)^kappa across runs (Brandfonbrener et al. 2024): --x NAME --y NAME
                    (domains, NAME:bpb, or columns such as loss); --holdout K predicts the K best points;
                    --fix E_x=V,E_y=V holds the irreducible losses (e.g. from each domain's own law)
  accuracy          --task NAME: task/NAME/acc = floor + (ceil - floor) / (1 + exp(s (L - L0))) against --x
                    (default loss; nll: task/NAME/nll); --fix floor=0.25 holds chance; --loss-fit FIT.json
                    [--at C] carries a loss law's loss at each budget through it (Llama 3's two steps)"""

FLAGS = {"holdout": "--holdout", "fixed": "--fix", "budgets": "--at", "huber_delta": "--huber-delta",
         "target": "--target", "x": "--x", "y": "--y", "task": "--task", "domains": "--domains",
         "loss_fit": "--loss-fit"}
OWN = ("x", "y", "task", "target", "domains", "loss_fit")  # flags of these laws only
# Flags of the other laws, with the value that means "not given".
OTHERS = {"keep_unresolved": False, "best_of": "", "metric": "loss", "params_column": "params",
          "bootstrap_starts": "warm", "by": "auto"}


@dataclass(frozen=True)
class Tools:
    """What `scaling fit` shares with these laws, handed over by it (this module may not import it: a cycle)."""

    source: Callable  # args -> (runs table or path, the sweep's exclusions)
    render: Callable  # (result, source name) -> the readable summary
    print_warnings: Callable  # caught warnings -> lines on stderr
    parse_fixed: Callable  # --fix items -> {name: value}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of the domain laws, on `scaling fit`'s parser."""
    p.add_argument("--x", metavar="NAME", help="loss-to-loss, accuracy: the predictor: a domain (eval/NAME/loss), "
                   "NAME:bpb, or a column (accuracy default: loss; nll: the task's correct-answer NLL)")
    p.add_argument("--y", metavar="NAME", help="loss-to-loss: the predicted domain or column")
    p.add_argument("--task", metavar="NAME", help="accuracy: the task (column task/NAME/acc)")
    p.add_argument("--target", metavar="A=W,B=W", help="mixture: weights of the domains' losses the best mixture "
                   "minimises (default equal)")
    p.add_argument("--domains", metavar="A,B", help="mixture: evaluation domains to fit (default every eval/*/loss)")
    p.add_argument("--loss-fit", metavar="FIT.json", help="accuracy: a `scaling fit --at C --json` file; the "
                   "accuracy at its budgets (or those of --at) through the sigmoid")


def refuse_own_flags(args) -> None:
    """For the other laws: these flags mean nothing there, so a given one is a mistake, not a no-op."""
    for name in OWN:
        if getattr(args, name, None) is not None:
            raise UsageError(f"--{name.replace('_', '-')} applies to laws {', '.join(DOMAIN_LAWS)} only, "
                             f"not {args.law}")


@contextmanager
def flag_names():
    from scaling.laws import ArgumentError

    try:
        yield
    except ArgumentError as err:
        raise err.for_flag(FLAGS) from None


def parse_target(text: str | None) -> dict[str, float] | None:
    """{"a": 0.5, "b": 0.5} from "a=0.5,b=0.5"; the law checks the names against its domains."""
    if text is None:
        return None
    out: dict[str, float] = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value) if sep and name.strip() else float("nan")
        except ValueError:
            out[name.strip()] = float("nan")
        if out[name.strip()] != out[name.strip()]:
            raise UsageError(f"--target {item!r}: expected DOMAIN=WEIGHT, e.g. --target code=0.5,prose=0.5")
    if not out:
        raise UsageError("--target is empty: expected DOMAIN=WEIGHT,..., e.g. code=0.5,prose=0.5")
    return out


def _check(args, allowed: tuple[str, ...]) -> None:
    for name in OWN:
        if name not in allowed and getattr(args, name, None) is not None:
            raise UsageError(f"--{name.replace('_', '-')} does not apply to law {args.law}")
    for name, default in OTHERS.items():
        if getattr(args, name, default) != default:
            raise UsageError(f"--{name.replace('_', '-')} does not apply to law {args.law}")
    if args.law == "mixture" and args.fix:
        raise UsageError(f"--fix does not apply to law {args.law} (it holds no parameter fixed)")
    if args.law != "accuracy":
        if args.at:
            raise UsageError(f"--at does not apply to law {args.law} (it has no compute budget)")


def run_mixture(args, tools: Tools) -> int:
    def fit():
        from scaling.laws.mixture import fit_mixture

        _check(args, ("target", "domains"))
        domains = [d.strip() for d in args.domains.split(",") if d.strip()] if args.domains else None
        return fit_mixture(tools.source(args)[0], domains, target=parse_target(args.target),
                           huber_delta=args.huber_delta, **_common(args))

    return _fit_and_emit(args, tools, fit)


def run_loss_to_loss(args, tools: Tools) -> int:
    def fit():
        from scaling.laws.loss_to_loss import fit_loss_to_loss

        _check(args, ("x", "y"))
        if not args.x or not args.y:
            raise UsageError("--law loss-to-loss needs --x NAME and --y NAME (two domains or columns)")
        return fit_loss_to_loss(tools.source(args)[0], args.x, args.y, huber_delta=args.huber_delta,
                                fixed=tools.parse_fixed(args.fix), **_common(args))

    return _fit_and_emit(args, tools, fit)


def run_accuracy(args, tools: Tools) -> int:
    def fit():
        from scaling.commands.common import parse_budgets

        _check(args, ("x", "task", "loss_fit"))
        if args.huber_delta != 1e-3:
            raise UsageError("--huber-delta does not apply to law accuracy (least squares in accuracy)")
        return _accuracy(args, tools, parse_budgets(args.at), _common(args))

    return _fit_and_emit(args, tools, fit)


def _common(args) -> dict:
    for name in ("holdout", "bootstrap"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} must be 0 or more, got {getattr(args, name)}")
    return {"bootstrap": args.bootstrap, "seed": args.seed, "holdout": args.holdout}


def _fit_and_emit(args, tools: Tools, fit) -> int:
    """The fit (its warnings as `scaling fit` prints them), then the summary and the fit JSON."""
    from scaling.commands.common import check_output_file

    if args.json:
        check_output_file(args.json, "--json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with flag_names():
            result = fit()
    tools.print_warnings(caught)
    return emit(args, result, tools.render(result, args.runs or f"sweep {args.sweep}"))


def _accuracy(args, tools: Tools, budgets, common):
    from scaling.laws.accuracy import fit_accuracy, loss_at_budgets

    if not args.task:
        raise UsageError("--law accuracy needs --task NAME (the column task/NAME/acc)")
    if budgets and not args.loss_fit:
        raise UsageError("--at with law accuracy picks budgets of --loss-fit FIT.json; pass that file")
    points = ()
    if args.loss_fit:
        try:
            with open(args.loss_fit) as fh:
                loss_json = json.load(fh)
        except (OSError, ValueError) as err:
            raise UsageError(f"--loss-fit {args.loss_fit}: cannot read it as JSON ({err})") from None
        points = loss_at_budgets(loss_json, budgets)
    return fit_accuracy(tools.source(args)[0], args.task, args.x or "loss", fixed=tools.parse_fixed(args.fix),
                        budgets=points, **common)


def emit(args, result, summary: str) -> int:
    from scaling.runs import write_atomic

    text = json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n"
    if args.json == "-":
        print(summary, file=sys.stderr)
        sys.stdout.write(text)
        return 0
    print(summary)
    if args.json:
        write_atomic(args.json, text)
        print(f"wrote {args.json}")
    return 0
