"""Chinchilla Approach 1: the envelope of training curves.

Each run's evaluation losses (one row per checkpoint, FLOPs = 6 N D at that checkpoint) are
interpolated in log FLOPs; at each of 1,500 log-spaced FLOP counts the lowest loss across runs forms
the frontier, and N_opt(C) is interpolated between the sizes around the best one (a parabola in log N
through it and its neighbours), not read off as the best run's size. Runs are only read inside the
FLOPs they covered: nothing is extrapolated. Intervals resample whole runs.
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
from scaling.laws.result import (
    Estimate,
    Table,
    estimates_frame,
    power_law_estimates,
    power_law_exponents,
    power_law_frontier,
)
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

    def to_frame(self):
        """k and a of N_opt = k C^a, and of D_opt, with 95% intervals."""
        return estimates_frame(self.estimates())

    def plot(self, ax, **style):
        """The frontier: the lowest loss at each FLOP count (dashed), and N_opt along it on a second axis."""
        ax.plot(self.flops, self.loss, "--", color=style.get("color", "k"), lw=1.6,
                label="compute frontier (min over runs)")
        ax.set_xscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel("loss")
        if style.get("sizes", True):
            right = ax.twinx()
            right.plot(self.flops, self.params, "-", color=style.get("size_color", "C1"), lw=1, label="N_opt")
            right.set_yscale("log")
            right.set_ylabel("N_opt along the frontier")
        ax.legend(loc="upper right", fontsize=7)
        return ax

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


def interpolated_frontier(curves: np.ndarray, sizes: np.ndarray, present: np.ndarray | None = None):
    """N_opt and the lowest loss at every grid FLOP count, N_opt interpolated between sizes.

    Per size, the lowest of its runs' curves; at each FLOP count, the best size and its neighbours in
    log N (those defined there) determine a parabola in log N, whose vertex is N_opt. With the best
    size strictly between two others the vertex lies between them, so nothing is extrapolated; at the
    edge of the sampled sizes N_opt is that size. A minimum over a handful of sizes alone would step
    between them and make N_opt(C) a staircase whose slope depends on where the steps fall.

    Returns:
        (n_opt, loss, interior) arrays over the grid: loss inf where no run covers that FLOP count;
        interior where N_opt was interpolated between sizes on both sides of it.
    """
    present = np.ones(len(curves), bool) if present is None else present
    unique = np.unique(sizes[present])
    by_size = np.stack([np.min(curves[present & (sizes == n)], axis=0) for n in unique])  # (S, G)
    cols = np.arange(by_size.shape[1])
    best = np.argmin(by_size, axis=0)
    loss = by_size[best, cols]
    n_opt = np.where(np.isfinite(loss), unique[best], np.inf)
    x = np.log(unique)
    lo, hi = np.maximum(best - 1, 0), np.minimum(best + 1, len(unique) - 1)
    inner = (best > 0) & (best < len(unique) - 1) & np.isfinite(loss)
    inner &= np.isfinite(by_size[lo, cols]) & np.isfinite(by_size[hi, cols])
    if inner.any():
        x0, x1, x2 = x[lo[inner]], x[best[inner]], x[hi[inner]]
        y0, y1, y2 = by_size[lo[inner], cols[inner]], loss[inner], by_size[hi[inner], cols[inner]]
        # the vertex of the parabola through three points (divided differences)
        d01, d12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
        curvature = (d12 - d01) / (x2 - x0)
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex = 0.5 * (x0 + x1) - d01 / (2.0 * curvature)
        vertex = np.where(curvature > 0, np.clip(vertex, x0, x2), x1)
        n_opt[inner] = np.exp(vertex)
    return n_opt, loss, inner


def _frontier_fit(curves, sizes, grid, present):
    """(log k, a) for N_opt and D_opt from the runs marked present."""
    if len(np.unique(sizes[present])) < 2:
        return (np.nan, np.nan), (np.nan, np.nan)
    n, _, used = frontier_used(curves, sizes, present)
    if used.sum() < 2 or len(np.unique(n[used])) < 2:
        return (np.nan, np.nan), (np.nan, np.nan)
    c = np.exp(grid[used])
    return loglog_fit(c, n[used]), loglog_fit(c, c / (6.0 * n[used]))


def frontier_used(curves, sizes, present=None):
    """The frontier and the FLOP counts the power laws are fitted on: those where N_opt lies between
    sampled sizes (where the best run is the smallest or largest size, the optimum may lie beyond it,
    as an isoFLOP minimum at an edge may), or every defined one when fewer than 2 distinct sizes are."""
    n, loss, interior = interpolated_frontier(curves, sizes, present)
    used = interior if len(np.unique(n[interior])) >= 2 else np.isfinite(loss)
    return n, loss, used


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
    n_all, loss_all, used = frontier_used(curves, sizes)
    defined = np.isfinite(loss_all)
    c_front, n_front, loss_front = np.exp(grid[defined]), n_all[defined], loss_all[defined]
    best_run = np.argmin(curves, axis=0)[defined]
    c_fit, n_fit = np.exp(grid[used]), n_all[used]

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
                      n_opt=power_law(c_fit, n_fit, sn), d_opt=power_law(c_fit, c_fit / (6 * n_fit), sd),
                      n_points=table.n_points, n_runs=n_runs,
                      frontier_sizes=tuple(float(s) for s in np.unique(sizes[best_run])), dropped=dict(table.dropped),
                      n_resamples=max(bootstrap, 0))
    if len(budgets):
        fit = EnvelopeFit(**{**fit.__dict__, "optimal": fit.allocate(budgets)})
    return fit
