"""The hyperparameter planner: an lr x batch-size grid at several budgets, around the recipe's own values.

`scaling fit --law batch` (and `--law lr`) need, at each budget, a model near the compute-optimal size
trained at several batch sizes and learning rates: enough values on each side of the best for a
parabola in log value to have its vertex inside them. At each budget the planner takes the prior's
N_opt(C) snapped to the recipe's nearest model, resolves that run as the trainer would (its lr and batch
size from the family's rules, or the settings given), and spreads K values of each log-evenly from
value / R to value * R (batch sizes rounded to distinct whole sequences).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scaling.errors import UsageError
from scaling.sweep.plan import Prior, check_design, recipe_shapes, sizes_around, snap


@dataclass(frozen=True)
class BudgetGrid:
    """One budget's model and the recipe's values there, and the grid swept around them."""

    flops: float
    params: int
    lr: float
    batch_size: int
    lrs: tuple[float, ...]
    batch_sizes: tuple[int, ...]

    def points(self) -> list[dict]:
        return [{"flops_budget": float(self.flops), "params": self.params, "lr": lr, "batch_size": b}
                for lr in self.lrs for b in self.batch_sizes]

    def describe(self) -> str:
        return (f"C = {self.flops:.3g}: N = {self.params:,}; recipe lr {self.lr:.3g}, batch {self.batch_size}; "
                f"lr {', '.join(f'{v:.3g}' for v in self.lrs)}; batch {', '.join(map(str, self.batch_sizes))}")


def _lr_values(lr: float, k: int, span: float) -> tuple[float, ...]:
    return tuple(float(f"{v:.3g}") for v in sizes_around(lr, k, span))


def _batch_values(batch: int, k: int, span: float) -> tuple[int, ...]:
    """K whole batch sizes log-evenly around `batch`, distinct (a collision among small ones moves up)."""
    out: list[int] = []
    for v in sizes_around(float(batch), k, span):
        b = max(1, round(v))
        out.append(max(b, out[-1] + 1) if out else b)
    return tuple(out)


def plan_grid(budgets: Sequence[float], per_axis: int, span: float, prior: Prior, constants: dict,
              resolve=None) -> list[BudgetGrid]:
    """The grid at each budget (see the module's docstring).

    Args:
        budgets: FLOPs; per_axis: values per hyperparameter (at least 3: a parabola needs three);
        span: the factor R; prior: N_opt(C); constants: the runs' constant settings (corpus, seq_len, ...).
        resolve: (settings dict) -> (lr, batch_size) as the trainer would pick them (default: plan_run).
    Raises:
        UsageError: per_axis under 3, a budget beyond the recipe's sizes, or a run shorter than one step.
    """
    if per_axis < 3:
        raise UsageError(f"--per-budget {per_axis}: --hparams needs at least 3 values per hyperparameter "
                         "(a parabola in log value needs three)")
    check_design(per_axis, span)
    shapes = recipe_shapes(constants, up_to=4 * max(prior.n_opt(c) for c in budgets))
    resolve = resolve or _recipe_values
    grids = []
    for c in budgets:
        (n,) = snap([prior.n_opt(c)], shapes)
        settings = {**constants, "params": n, "flops_budget": float(c)}
        try:
            lr, batch = resolve(settings)
        except UsageError as err:
            raise UsageError(f"--budgets {c:.3g}: {err}") from None
        lrs, batches = _lr_values(lr, per_axis, span), _batch_values(batch, per_axis, span)
        try:
            resolve({**settings, "batch_size": batches[-1]})  # the largest batch must still make a whole step
        except UsageError as err:
            raise UsageError(f"--budgets {c:.3g}: the largest batch size {batches[-1]}: {err}") from None
        grids.append(BudgetGrid(float(c), int(n), float(lr), int(batch), lrs, batches))
    return grids


def _recipe_values(settings: dict) -> tuple[float, int]:
    from scaling.config import RunConfig
    from scaling.train.plan import plan_run

    plan = plan_run(RunConfig.from_dict(settings))
    return plan.lr, plan.batch_size
