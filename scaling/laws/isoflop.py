"""Chinchilla Approach 2: isoFLOP profiles.

Runs are grouped by compute budget (a `flops_budget` column, else FLOP counts clustered when nearly
equal); at each budget a parabola in log N gives the loss-minimizing size. A minimum outside the sampled
sizes is an extrapolation: it is flagged `interior: false` and left out of the power laws
N_opt(C) = k C^a and D_opt(C) = k' C^b, whose intervals come from resampling runs within budgets.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.allocation import Allocation
from scaling.laws.bootstrap import DEFAULT_RESAMPLES, stratified_run_weights
from scaling.laws.powerlaw import PowerLaw, loglog_fit, power_law, power_law_allocation
from scaling.laws.result import Estimate, Table, power_law_estimates, power_law_exponents, power_law_frontier
from scaling.laws.table import RunsTable

MIN_POINTS_PER_BUDGET = 3
MIN_BUDGETS = 2
CLUSTER_RATIO = 1.1  # FLOP counts within 10% of their neighbour belong to one budget


@dataclass(frozen=True)
class BudgetProfile:
    """One isoFLOP profile: the parabola's minimum and whether it lies inside the sampled sizes."""

    flops: float
    n_opt: float | None
    d_opt: float | None
    loss_opt: float | None
    interior: bool
    n_points: int
    params_range: tuple[float, float]
    # loss = c0 + c1 x + c2 x^2 with x = ln N - centre: what a figure needs to draw the profile
    parabola: tuple[float, float, float, float] | None = None

    def to_json(self) -> dict:
        return {"flops": self.flops, "n_opt": self.n_opt, "d_opt": self.d_opt, "loss_opt": self.loss_opt,
                "interior": self.interior, "n_points": self.n_points, "params_range": list(self.params_range)}


@dataclass(frozen=True)
class IsoflopFit:
    """Per-budget minima and the power laws through the interior ones."""

    budgets: tuple[BudgetProfile, ...]
    n_opt: PowerLaw
    d_opt: PowerLaw
    n_points: int
    dropped: Mapping[str, int]
    n_resamples: int
    optimal: Allocation | None = None
    law: str = field(default="isoflop")

    def allocate(self, budgets: Sequence[float]) -> Allocation:
        """N_opt, D_opt and tokens per parameter at `budgets` from the power laws (no loss: an isoFLOP
        fit does not model it)."""
        return power_law_allocation(self.n_opt, self.d_opt, budgets)

    # -- the FitResult interface (result.py)
    title = "isoFLOP profiles (Approach 2): N_opt = k C^a"
    label = "Approach 2 (isoFLOP)"

    def method(self) -> str:
        return f"a parabola in log N per budget; {self.n_resamples} bootstrap resamples within budgets"

    def estimates(self) -> list[Estimate]:
        return power_law_estimates(self.n_opt, self.d_opt)

    def details(self) -> list[Table]:
        rows = tuple((b.flops, b.n_opt, b.d_opt, b.loss_opt, "yes" if b.interior else "NO (not used)", b.n_points)
                     for b in self.budgets)
        return [Table(("budget (FLOPs)", "N_opt", "D_opt", "loss", "interior", "runs"), rows)]

    def notes(self) -> list[str]:
        return []

    def exponents(self) -> tuple[Estimate, Estimate] | None:
        return power_law_exponents(self.n_opt, self.d_opt)

    def frontier(self, flops, which: str):
        return power_law_frontier(self.n_opt if which == "params" else self.d_opt, flops)

    def to_json(self) -> dict:
        return clean(self._json())

    def _json(self) -> dict:
        out = {"law": self.law, "budgets": [b.to_json() for b in self.budgets],
               "n_opt": self.n_opt.to_json(), "d_opt": self.d_opt.to_json()}
        if self.optimal is not None:
            out["optimal"] = self.optimal.to_json()
        out.update({"n_points": self.n_points, "n_dropped": int(sum(self.dropped.values())),
                    "dropped": dict(self.dropped), "bootstrap": self.n_resamples})
        return out


def group_budgets(table: RunsTable, ratio: float = CLUSTER_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """(budget index per row, budget FLOPs): a given `flops_budget` column, else clustered FLOPs."""
    if "flops_budget" in table.frame.columns:
        given = table.frame["flops_budget"].to_numpy(dtype=np.float64)
        if np.all(np.isfinite(given) & (given > 0)):
            values, idx = np.unique(given, return_inverse=True)
            return idx, values
    flops = table.column("flops")
    order = np.argsort(flops)
    log_c = np.log(flops[order])
    cuts = np.concatenate([[0], np.cumsum(np.diff(log_c) > np.log(ratio))])
    idx = np.empty(len(flops), dtype=np.int64)
    idx[order] = cuts
    values = np.array([np.exp(np.mean(np.log(flops[idx == g]))) for g in range(cuts[-1] + 1)])
    return idx, values


def _parabolas(x: np.ndarray, loss: np.ndarray, weights: np.ndarray):
    """Weighted least-squares parabolas loss = c0 + c1 x + c2 x^2 for many weight vectors (R, n).

    Returns (c0, c1, c2) arrays of shape (R,), NaN where fewer than 3 distinct x carry weight.
    """
    powers = x[None, :] ** np.arange(5)[:, None]  # (5, n)
    m = weights @ powers.T  # (R, 5): sum w x^k
    r = weights @ (powers[:3] * loss).T  # (R, 3): sum w x^k L
    gram = np.stack([m[:, 0:3], m[:, 1:4], m[:, 2:5]], axis=1)
    distinct = (((weights > 0) @ _unique_indicator(x)) > 0).sum(axis=1)  # distinct sizes drawn
    ok = distinct >= 3
    coef = np.full((len(weights), 3), np.nan)
    if ok.any():
        coef[ok] = np.linalg.solve(gram[ok], r[ok][..., None])[..., 0]
    return coef[:, 0], coef[:, 1], coef[:, 2]


def _unique_indicator(x: np.ndarray) -> np.ndarray:
    _, inv = np.unique(x, return_inverse=True)
    ind = np.zeros((len(x), inv.max() + 1))
    ind[np.arange(len(x)), inv] = 1.0
    return ind


def _vertex(c0, c1, c2, lo, hi):
    with np.errstate(all="ignore"):
        xs = -c1 / (2.0 * c2)
        loss = c0 + c1 * xs + c2 * xs**2
    interior = (c2 > 0) & (xs >= lo) & (xs <= hi)
    has_min = c2 > 0
    return np.where(has_min, xs, np.nan), np.where(has_min, loss, np.nan), interior


def fit_isoflop(table: RunsTable, *, bootstrap: int = DEFAULT_RESAMPLES, seed: int = 0,
                budgets: Sequence[float] = (), cluster_ratio: float = CLUSTER_RATIO) -> IsoflopFit:
    """Chinchilla's Approach 2: a parabola in log N per FLOP budget, then power laws through the minima.

    Args:
        table: one row per run (checkpoint rows would each count as a point).
        bootstrap: resamples of runs within budgets (0 for none); seed: their seed.
        budgets: FLOPs at which to report N_opt and D_opt.
        cluster_ratio: FLOP counts within this ratio form one budget when there is no flops_budget column.
    Returns:
        IsoflopFit: each budget's minimum (flagged when outside the sampled sizes) and the power laws.
    """
    idx, values = group_budgets(table, cluster_ratio)
    log_n = np.log(table.column("params"))
    loss = table.column("loss")
    usable = [g for g in range(len(values)) if len(np.unique(log_n[idx == g])) >= MIN_POINTS_PER_BUDGET]
    if len(usable) < MIN_BUDGETS:
        raise UsageError(f"isoflop needs at least {MIN_BUDGETS} budgets with at least {MIN_POINTS_PER_BUDGET} "
                         f"model sizes each; the table has {len(usable)} (of {len(values)} budgets)")
    codes, _ = table.run_codes()
    resampled = stratified_run_weights(codes, idx, bootstrap, seed) if bootstrap > 0 else np.zeros((0, len(loss)))
    weights = np.vstack([np.ones((1, len(loss))), resampled])

    profiles, xs_all, inside_all = [], [], []
    for g in usable:
        rows = idx == g
        x = log_n[rows]
        centre = x.mean()  # centring keeps the normal equations well conditioned
        c0, c1, c2 = _parabolas(x - centre, loss[rows], weights[:, rows])
        xs, ls, inside = _vertex(c0, c1, c2, x.min() - centre, x.max() - centre)
        xs_all.append(xs + centre)
        inside_all.append(inside)
        n_opt = float(np.exp(xs[0] + centre)) if np.isfinite(xs[0]) else None
        profiles.append(BudgetProfile(
            flops=float(values[g]), n_opt=n_opt, d_opt=None if n_opt is None else float(values[g] / (6 * n_opt)),
            loss_opt=None if n_opt is None else float(ls[0]), interior=bool(inside[0]), n_points=int(rows.sum()),
            params_range=(float(np.exp(x.min())), float(np.exp(x.max()))),
            parabola=(float(c0[0]), float(c1[0]), float(c2[0]), float(centre))))
    flops = values[usable]
    xs_all, inside_all = np.array(xs_all).T, np.array(inside_all).T  # (R + 1, budgets)
    if inside_all[0].sum() < MIN_BUDGETS:
        raise UsageError(f"isoflop needs at least {MIN_BUDGETS} budgets whose loss minimum lies inside the "
                         f"sampled model sizes; {int(inside_all[0].sum())} of {len(usable)} do")
    n_opt, d_opt = _power_laws(flops, xs_all, inside_all)
    fit = IsoflopFit(budgets=tuple(profiles), n_opt=n_opt, d_opt=d_opt, n_points=table.n_points,
                     dropped=dict(table.dropped), n_resamples=bootstrap)
    if len(budgets):
        fit = IsoflopFit(**{**fit.__dict__, "optimal": fit.allocate(budgets)})
    return fit


def _power_laws(flops, xs_all, inside_all) -> tuple[PowerLaw, PowerLaw]:
    """Fit N_opt and D_opt = C/(6 N_opt) on interior minima, for the data (row 0) and every resample."""
    fits_n, fits_d = [], []
    for xs, inside in zip(xs_all, inside_all):
        if inside.sum() < MIN_BUDGETS:
            fits_n.append((np.nan, np.nan))
            fits_d.append((np.nan, np.nan))
            continue
        n = np.exp(xs[inside])
        fits_n.append(loglog_fit(flops[inside], n))
        fits_d.append(loglog_fit(flops[inside], flops[inside] / (6.0 * n)))
    fits_n, fits_d = np.array(fits_n), np.array(fits_d)
    inside0 = inside_all[0]
    n0 = np.exp(xs_all[0][inside0])
    samples_n = fits_n[1:] if len(fits_n) > 2 else None
    samples_d = fits_d[1:] if len(fits_d) > 2 else None
    return (power_law(flops[inside0], n0, samples_n),
            power_law(flops[inside0], flops[inside0] / (6.0 * n0), samples_d))
