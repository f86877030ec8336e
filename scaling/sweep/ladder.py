"""The ladder run: one run at a budget beyond a finished sweep, where its fitted law says to put it.

A law fitted to small runs is a prediction about larger ones; the check is to train the model the law
calls compute-optimal at a budget 4-30x past the sweep's largest (far enough that the law has to
extrapolate, near enough that one run is affordable) and compare its loss with the prediction. The
planner fits Chinchilla's Approach 3 to the sweep's completed runs, takes N_opt at C_BIG snapped to the
recipe's nearest model (D = C_BIG / 6N), predicts that run's loss with a bootstrap interval, and sets its
learning rate and batch size from fitted rules (`scaling fit --law lr` / `--law batch` JSON) when given.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from scaling.errors import UsageError
from scaling.laws import fit_parametric, load_runs
from scaling.laws.ladder_check import largest_budget, predict_with_interval
from scaling.rules import Rules
from scaling.rules import read_rules as read_rule_files
from scaling.runs import RunHome, runs_table
from scaling.sweep.plan import _registered_shapes, snap

LADDER_RANGE = (4.0, 30.0)  # C_BIG over the sweep's largest budget


@dataclass(frozen=True)
class LadderRun:
    """The planned run and the law's prediction for it."""

    flops: float
    largest: float  # the sweep's largest compute
    n_opt: float
    n_opt_ci95: tuple[float, float] | None
    params: int  # N_opt snapped to a model the recipe builds
    tokens: float
    loss: float  # predicted for (params, tokens)
    loss_ci95: tuple[float, float] | None
    lr: float | None = None
    batch_size: int | None = None
    validates: str | None = None  # the sweep it checks: its config key, so fit and report find it when it ran

    def point(self) -> dict:
        out = {"flops_budget": float(self.flops), "params": int(self.params)}
        if self.validates is not None:
            out["validates"] = self.validates
        if self.lr is not None:
            out["lr"] = float(f"{self.lr:.3g}")
        if self.batch_size is not None:
            out["batch_size"] = int(self.batch_size)
        return out

    def lines(self) -> list[str]:
        ci = lambda c: "" if c is None else f" [{c[0]:.4g}, {c[1]:.4g}]"  # noqa: E731
        out = [f"ladder run at C = {self.flops:.3g} ({self.flops / self.largest:.3g}x the sweep's largest "
               f"{self.largest:.3g}): N_opt {self.n_opt:.4g}{ci(self.n_opt_ci95)}, planned N = {self.params:,}, "
               f"D = {self.tokens:.4g}",
               f"predicted loss {self.loss:.4g}{ci(self.loss_ci95)} (Approach 3, 95% bootstrap interval)"]
        if self.lr is not None or self.batch_size is not None:
            out.append("from fitted rules:" + (f" lr {self.lr:.3g}" if self.lr is not None else "")
                       + (f" batch_size {self.batch_size}" if self.batch_size is not None else ""))
        return out


def check_budget(flops: float, largest: float) -> None:
    lo, hi = LADDER_RANGE
    if not lo * largest <= flops <= hi * largest:
        raise UsageError(f"--validate {flops:g}: {flops / largest:.3g}x the sweep's largest compute ({largest:.3g}); "
                         f"a ladder run goes {lo:g}-{hi:g}x past it ({lo * largest:.3g}..{hi * largest:.3g})")


def plan_ladder(frame, flops: float, shapes: Sequence[int] | None, rules: Rules = Rules(), *,
                bootstrap: int = 1000, seed: int = 0, **options) -> LadderRun:
    """The ladder run for a runs table (a sweep's completed runs).

    Args:
        frame: the runs (DataFrame or RunsTable source); flops: C_BIG.
        shapes: the recipe's parameter counts (N_opt snaps to the nearest), or None to round.
        rules: fitted lr and/or batch laws (scaling/rules.py): lr at the planned N, batch at C_BIG
            (or at the predicted loss, for a batch law against the loss).
        bootstrap, seed, options: for the Approach 3 fit.
    Raises:
        UsageError: C_BIG outside 4-30x the largest compute, a fit that fails, a rule of another law.
    """
    table = load_runs(frame)
    largest = largest_budget(table)
    check_budget(flops, largest)
    fit = fit_parametric(table, "chinchilla", bootstrap=bootstrap, seed=seed, budgets=[flops], **options)
    (best,) = fit.optimal.at
    n = snap([best.params], shapes)[0] if shapes else int(float(f"{best.params:.3g}"))
    d = flops / (6.0 * n)
    loss, loss_ci = predict_with_interval(fit, n, d)
    lr, batch = rules.lr(n), rules.batch_size(flops, loss)
    return LadderRun(flops=float(flops), largest=largest, n_opt=float(best.params), n_opt_ci95=best.ci95.get("params"),
                     params=int(n), tokens=float(d), loss=loss, loss_ci95=loss_ci, lr=lr, batch_size=batch)


def read_rules(paths: Sequence[str]) -> Rules:
    """`--rules FIT.json,...`: the fit JSONs of law lr and/or batch."""
    return read_rule_files(paths, "--rules ")


def ladder_for_sweep(home: RunHome | str | None, sweep_id: str, flops: float, rules: Rules = Rules(),
                     **options) -> tuple[LadderRun, dict, str]:
    """`plan_ladder` on a sweep's completed runs: (the run, the sweep's registered spec, a name)."""
    from scaling.sweep.register import require_sweep

    home = RunHome.of(home)
    registered = require_sweep(home, sweep_id)
    frame = runs_table(home, sweep_id)
    if not len(frame):
        raise UsageError(f"--sweep {sweep_id}: no completed runs to fit (see `scaling sweep status {sweep_id}`)")
    run = plan_ladder(frame, flops, _registered_shapes(registered["spec"]), rules, **options)
    return replace(run, validates=sweep_id), registered["spec"], f"{registered['name']}-ladder"
