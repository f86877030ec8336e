"""Chinchilla Approach 1: the envelope of training curves.

Each run's evaluation losses (one row per checkpoint, FLOPs = 6 N D at that checkpoint) are
interpolated in log FLOPs; at each of 1,500 log-spaced FLOP counts the lowest loss across runs forms
the frontier, and the runs on it give N_opt(C). Runs are only read inside the FLOPs they covered:
nothing is extrapolated. Intervals resample whole runs.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.allocation import Allocation
from scaling.laws.bootstrap import DEFAULT_RESAMPLES, run_weights
from scaling.laws.powerlaw import PowerLaw, loglog_fit, power_law, power_law_allocation
from scaling.laws.result import Estimate, Table, power_law_estimates, power_law_exponents, power_law_frontier
from scaling.laws.table import RunsTable

GRID_POINTS = 1500  # as Hoffmann et al.
JSON_FRONTIER_POINTS = 100


@dataclass(frozen=True)
class EnvelopeFit:
    """The frontier (lowest loss at each FLOP count) and the power laws through its sizes."""

    flops: np.ndarray = field(repr=False)
    params: np.ndarray = field(repr=False)
    loss: np.ndarray = field(repr=False)
    n_opt: PowerLaw = None
    d_opt: PowerLaw = None
    n_points: int = 0
    n_runs: int = 0
    frontier_sizes: tuple[float, ...] = ()
    dropped: Mapping[str, int] = field(default_factory=dict)
    n_resamples: int = 0
    optimal: Allocation | None = None
    law: str = "envelope"

    def allocate(self, budgets: Sequence[float]) -> Allocation:
        return power_law_allocation(self.n_opt, self.d_opt, budgets)

    # -- the FitResult interface (result.py)
    title = "training-curve envelope (Approach 1)"
    label = "Approach 1 (envelope)"

    def method(self) -> str:
        return (f"lowest loss across {self.n_runs} runs' curves at each FLOP count; "
                f"{self.n_resamples} bootstrap resamples")

    def estimates(self) -> list[Estimate]:
        return power_law_estimates(self.n_opt, self.d_opt)

    def details(self) -> list[Table]:
        return []

    def notes(self) -> list[str]:
        return [f"frontier sizes: {', '.join(f'{s:.4g}' for s in self.frontier_sizes)}"]

    def exponents(self) -> tuple[Estimate, Estimate] | None:
        return power_law_exponents(self.n_opt, self.d_opt)

    def frontier(self, flops, which: str):
        return power_law_frontier(self.n_opt if which == "params" else self.d_opt, flops)

    def to_json(self) -> dict:
        keep = np.unique(np.linspace(0, len(self.flops) - 1, min(JSON_FRONTIER_POINTS, len(self.flops))).astype(int))
        frontier = [{"flops": self.flops[i], "params": self.params[i], "tokens": self.flops[i] / (6 * self.params[i]),
                     "loss": self.loss[i]} for i in keep]
        out = {"law": self.law, "frontier": frontier, "frontier_sizes": list(self.frontier_sizes),
               "n_opt": self.n_opt.to_json(), "d_opt": self.d_opt.to_json()}
        if self.optimal is not None:
            out["optimal"] = self.optimal.to_json()
        out.update({"n_points": self.n_points, "n_runs": self.n_runs, "n_dropped": int(sum(self.dropped.values())),
                    "dropped": dict(self.dropped), "bootstrap": self.n_resamples})
        return clean(out)


def _curves(table: RunsTable, grid: np.ndarray):
    """Loss of every run at every grid FLOP count (inf outside the run's range), and each run's N."""
    codes, n_runs = table.run_codes()
    log_c, loss, params = np.log(table.column("flops")), table.column("loss"), table.column("params")
    curves = np.full((n_runs, len(grid)), np.inf)
    sizes = np.zeros(n_runs)
    for r in range(n_runs):
        rows = codes == r
        order = np.argsort(log_c[rows])
        x, y = log_c[rows][order], loss[rows][order]
        sizes[r] = params[rows][0]
        inside = (grid >= x[0]) & (grid <= x[-1])
        curves[r, inside] = np.interp(grid[inside], x, y)
    return curves, sizes


def _frontier_fit(curves, sizes, grid, present):
    """(log k, a) for N_opt and D_opt from the runs marked present."""
    masked = np.where(present[:, None], curves, np.inf)
    best = np.argmin(masked, axis=0)
    defined = np.isfinite(masked[best, np.arange(len(grid))])
    if defined.sum() < 2 or len(np.unique(sizes[best[defined]])) < 2:
        return (np.nan, np.nan), (np.nan, np.nan)
    c, n = np.exp(grid[defined]), sizes[best[defined]]
    return loglog_fit(c, n), loglog_fit(c, c / (6.0 * n))


def fit_envelope(table: RunsTable, *, bootstrap: int = DEFAULT_RESAMPLES, seed: int = 0,
                 budgets: Sequence[float] = (), grid_points: int = GRID_POINTS) -> EnvelopeFit:
    """Chinchilla's Approach 1 from per-checkpoint rows (`step`).

    Args:
        table: runs with at least 2 evaluations each, for at least 2 runs.
        bootstrap: resamples of whole runs (0 for none); seed: their seed.
        budgets: FLOPs at which to report N_opt and D_opt.
    Returns:
        EnvelopeFit: the frontier and N_opt(C), D_opt(C) power laws with intervals.
    """
    codes, n_runs = table.run_codes()
    per_run = np.bincount(codes, minlength=n_runs)
    if "step" not in table.frame.columns or (per_run >= 2).sum() < 2:
        raise UsageError("envelope needs per-checkpoint rows (a 'step' column) with at least 2 evaluations "
                         f"for each of at least 2 runs; the table has {(per_run >= 2).sum()} such runs")
    flops = table.column("flops")
    grid = np.linspace(np.log(flops.min()), np.log(flops.max()), grid_points)
    curves, sizes = _curves(table, grid)
    if len(np.unique(sizes)) < 2:
        raise UsageError("envelope needs runs of at least 2 model sizes; the table has 1")
    everyone = np.ones(n_runs, bool)
    (log_k, a), _ = _frontier_fit(curves, sizes, grid, everyone)
    if not np.isfinite(a):
        raise UsageError("envelope: one model size holds the whole frontier; add runs of other sizes "
                         "that become best at some FLOP count")
    masked = curves
    best = np.argmin(masked, axis=0)
    defined = np.isfinite(masked[best, np.arange(len(grid))])
    c_front, n_front = np.exp(grid[defined]), sizes[best[defined]]
    loss_front = masked[best, np.arange(len(grid))][defined]

    samples_n, samples_d = [], []
    if bootstrap > 0:
        draws = run_weights(np.arange(n_runs), n_runs, bootstrap, seed) > 0
        for present in draws:
            fn, fd = _frontier_fit(curves, sizes, grid, present)
            samples_n.append(fn)
            samples_d.append(fd)
    sn = np.array(samples_n) if bootstrap > 1 else None
    sd = np.array(samples_d) if bootstrap > 1 else None
    fit = EnvelopeFit(flops=c_front, params=n_front, loss=loss_front,
                      n_opt=power_law(c_front, n_front, sn), d_opt=power_law(c_front, c_front / (6 * n_front), sd),
                      n_points=table.n_points, n_runs=n_runs,
                      frontier_sizes=tuple(float(s) for s in np.unique(n_front)), dropped=dict(table.dropped),
                      n_resamples=max(bootstrap, 0))
    if len(budgets):
        fit = EnvelopeFit(**{**fit.__dict__, "optimal": fit.allocate(budgets)})
    return fit
