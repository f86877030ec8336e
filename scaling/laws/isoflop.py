"""Chinchilla Approach 2: isoFLOP profiles.

Runs are grouped by compute budget (a `flops_budget` column, else FLOP counts clustered when nearly
equal); at each budget a parabola in log N, fitted to each point's mean over its seed replicates
weighted by its standard error, gives the loss-minimizing size. A minimum outside the sampled sizes is
an extrapolation: it is flagged `interior: false` and left out of the power laws N_opt(C) = k C^a and
D_opt(C) = k' C^b, whose intervals come from a two-level bootstrap within budgets (points, then seeds
within each drawn point). A budget whose curve is shallower than twice the run-to-run noise is flagged
as not resolving its minimum (noise.py).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.allocation import Allocation
from scaling.laws.bootstrap import DEFAULT_RESAMPLES, two_level_weights
from scaling.laws.noise import RESOLVE_FACTOR, NoiseFloor, depth_of, noise_floor
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

MIN_POINTS_PER_BUDGET = 3
# Budgets with an interior minimum that an exponent needs: through 2 minima any line passes exactly, so
# the exponent's interval would only reflect where those two landed, with no check of the power law.
MIN_BUDGETS = 3
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
    depth: float | None = None  # loss gap between the curve's minimum and its better sampled edge
    noise_sd: float | None = None  # the run-to-run SD it is compared with (this budget's, else pooled)
    noise_from: str = "none"  # "budget", "pooled" or "none"
    replicated: int = 0  # points of this budget with seed replicates
    kept_unresolved: bool = False  # fitted with keep_unresolved: an unresolved minimum still enters the laws
    n_sizes: int = 0  # distinct model sizes sampled at this budget

    @property
    def used(self) -> bool:
        """Whether the minimum enters N_opt(C): interior, and resolved (or kept by keep_unresolved)."""
        return self.interior and (self.resolved is not False or self.kept_unresolved)

    @property
    def resolved(self) -> bool | None:
        """Whether the curve is deeper than RESOLVE_FACTOR times the noise (None: noise not measured)."""
        if self.noise_sd is None or self.depth is None:
            return None
        return bool(self.depth >= RESOLVE_FACTOR * self.noise_sd)

    def to_json(self) -> dict:
        return {"flops": self.flops, "n_opt": self.n_opt, "d_opt": self.d_opt, "loss_opt": self.loss_opt,
                "interior": self.interior, "n_points": self.n_points, "params_range": list(self.params_range),
                "depth": self.depth, "noise_sd": self.noise_sd, "noise_from": self.noise_from,
                "replicated_points": self.replicated, "resolved": self.resolved, "used": self.used}


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
    noise: NoiseFloor | None = None
    law: str = field(default="isoflop")
    # budgets whose parabola passes exactly through 3 sizes with one seed each: resampling their points
    # cannot vary it, so the bootstrap would give a zero-width interval; none is given (`notes` says why)
    exact: tuple[float, ...] = ()

    def allocate(self, budgets: Sequence[float]) -> Allocation:
        """N_opt, D_opt and tokens per parameter at `budgets` from the power laws (no loss: an isoFLOP
        fit does not model it)."""
        return power_law_allocation(self.n_opt, self.d_opt, budgets)

    # -- the FitResult interface (result.py)
    title = "isoFLOP profiles (Approach 2): N_opt = k C^a"
    label = "Approach 2 (isoFLOP)"

    def method(self) -> str:
        return (f"a parabola in log N per budget through replicate means; {self.n_resamples} two-level "
                f"bootstrap resamples within budgets (points, each with all its seeds)")

    def estimates(self) -> list[Estimate]:
        return power_law_estimates(self.n_opt, self.d_opt)

    def details(self) -> list[Table]:
        rows = tuple((b.flops, b.n_opt, b.d_opt, b.loss_opt, _interior_text(b), b.n_points,
                      b.depth, b.noise_sd, _resolved_text(b)) for b in self.budgets)
        return [Table(("budget (FLOPs)", "N_opt", "D_opt", "loss", "interior", "runs", "depth", "noise SD",
                       "resolves min"), rows)]

    def notes(self) -> list[str]:
        notes = [] if self.noise is None else noise_notes(self.noise, self.budgets)
        if self.exact:
            shown = ", ".join(f"{c:.3g}" for c in self.exact)
            notes.append(f"no intervals for N_opt(C), D_opt(C): the parabola at C = {shown} passes exactly "
                         "through 3 sizes of one seed each, so resampling its points cannot show the noise "
                         "(add a seed per point or a 4th size to that budget)")
        return notes

    def exponents(self) -> tuple[Estimate, Estimate] | None:
        return power_law_exponents(self.n_opt, self.d_opt)

    def frontier(self, flops, which: str):
        return power_law_frontier(self.n_opt if which == "params" else self.d_opt, flops)

    def to_json(self) -> dict:
        return clean(self._json())

    def to_frame(self):
        """k and a of N_opt = k C^a, and of D_opt, with 95% intervals."""
        return estimates_frame(self.estimates())

    def budgets_frame(self):
        """One row per budget: its minimum, whether it is interior, its depth and noise."""
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in b.to_json().items() if k != "params_range"} for b in self.budgets])

    def plot(self, ax, runs=None, **style):
        """The isoFLOP profiles: each budget's parabola over its sampled sizes and its minimum (a star
        inside the sampled sizes, an x outside), and, given the runs (a frame with params, flops, loss),
        their points: each point's mean over its seeds, with its standard error where it has replicates.
        Runs are put in budgets by a `flops_budget` column when it names the fit's budgets, else by
        their FLOPs (the nearest budget in log FLOPs), so a paper's table with no budget column draws
        the same figure."""
        import matplotlib.pyplot as plt

        cmap = plt.get_cmap(style.get("cmap", "plasma"))
        which = None if runs is None else assign_budgets(runs, [b.flops for b in self.budgets])
        labelled: set[str] = set()
        for i, prof in enumerate(self.budgets):
            color = cmap(0.1 + 0.8 * i / max(1, len(self.budgets) - 1))
            lo, hi = prof.params_range
            if runs is not None:
                rows = runs[which == i].sort_values("params")
                means = rows.groupby("params")["loss"].agg(["mean", "std", "size"])
                replicated = means["size"] > 1
                if replicated.any():  # every seed faintly, and each point's mean with its standard error
                    ax.plot(rows["params"], rows["loss"], ".", color=color, alpha=0.35, ms=4)
                ax.plot(means.index, means["mean"], "o", color=color, label=f"C = {prof.flops:.2g}")
                if replicated.any():
                    se = means["std"][replicated] / np.sqrt(means["size"][replicated])
                    ax.errorbar(means.index[replicated], means["mean"][replicated], yerr=se, fmt="none",
                                ecolor=color, capsize=3)
            if prof.parabola is not None:
                ax.plot(*parabola_curve(prof.parabola, lo, hi), "-", color=color, lw=1,
                        label=f"C = {prof.flops:.2g}" if runs is None else "parabola per budget" if i == 0 else None)
            if prof.n_opt is not None:
                marker = "*" if prof.used else "x" if not prof.interior else "P"
                label = {"*": "minimum (used)", "x": "minimum outside the sizes",
                         "P": "minimum not resolved (not used)"}[marker]
                ax.plot([prof.n_opt], [prof.loss_opt], marker, ms=12, color=color, mec="k",
                        label=None if label in labelled else label)  # each kind of marker once
                labelled.add(label)
        ax.set_xscale("log")
        ax.set_xlabel("parameters N")
        ax.set_ylabel("final loss")
        ax.legend(fontsize=7)
        return ax

    def _json(self) -> dict:
        out = {"law": self.law, "budgets": [b.to_json() for b in self.budgets],
               "n_opt": self.n_opt.to_json(), "d_opt": self.d_opt.to_json()}
        if self.noise is not None:
            out["noise"] = self.noise.to_json()
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


def assign_budgets(runs, budget_flops: Sequence[float]) -> np.ndarray:
    """Index into `budget_flops` of each run (a frame with flops, optionally flops_budget): its
    flops_budget when that is one of them, else the budget nearest its FLOPs in log."""
    budget_flops = np.asarray(budget_flops, dtype=np.float64)
    log_b = np.log(budget_flops)
    nearest = np.argmin(np.abs(np.log(runs["flops"].to_numpy(dtype=np.float64))[:, None] - log_b[None]), axis=1)
    if "flops_budget" in runs.columns:
        given = runs["flops_budget"].to_numpy(dtype=np.float64)
        match = np.isclose(given[:, None], budget_flops[None], rtol=1e-6)
        return np.where(match.any(axis=1), np.argmax(match, axis=1), nearest)
    return nearest


def _interior_text(b: BudgetProfile) -> str:
    if not b.interior:
        return "NO (not used)"
    return "yes" if b.used else "yes (unresolved: not used)"


def _resolved_text(b: BudgetProfile) -> str:
    if b.resolved is None:
        return "-"
    return "yes" if b.resolved else "NO (depth < 2 x noise)"


def noise_notes(noise: NoiseFloor, budgets: Sequence[BudgetProfile]) -> list[str]:
    """The noise floor in one line, then one line per budget too shallow to resolve its minimum."""
    out = [noise.describe()]
    for b in budgets:
        if b.resolved is False:
            where = "" if b.noise_from == "budget" else " (the pooled noise: this budget has no replicates)"
            out.append(f"budget {b.flops:.3g}: depth {b.depth:.3g} < {RESOLVE_FACTOR:g} x noise SD "
                       f"{b.noise_sd:.3g}{where}: its minimum is not resolved; add seeds or widen the sizes")
    return out


def _parabolas(x: np.ndarray, loss_sums: np.ndarray, weights: np.ndarray):
    """Weighted least-squares parabolas loss = c0 + c1 x + c2 x^2 through point means, for many
    weightings at once: `weights` (R, n) is each point's weight and `loss_sums` (R, n) its weight times
    its mean loss (zero where a point is not drawn).

    Returns (c0, c1, c2) arrays of shape (R,), NaN where fewer than 3 distinct x carry weight.
    """
    powers = x[None, :] ** np.arange(5)[:, None]  # (5, n)
    m = weights @ powers.T  # (R, 5): sum w x^k
    r = loss_sums @ powers[:3].T  # (R, 3): sum w x^k L
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


def parabola_curve(parabola: tuple, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Points (x, loss) of a fitted parabola in log x, from a little below `lo` to a little above `hi`."""
    c0, c1, c2, centre = parabola
    x = np.linspace(np.log(lo) - 0.2, np.log(hi) + 0.2, 100) - centre
    return np.exp(x + centre), c0 + c1 * x + c2 * x**2


def _vertex(c0, c1, c2, lo, hi):
    with np.errstate(all="ignore"):
        xs = -c1 / (2.0 * c2)
        loss = c0 + c1 * xs + c2 * xs**2
    interior = (c2 > 0) & (xs >= lo) & (xs <= hi)
    has_min = c2 > 0
    return np.where(has_min, xs, np.nan), np.where(has_min, loss, np.nan), interior


def fit_isoflop(table: RunsTable, *, bootstrap: int = DEFAULT_RESAMPLES, seed: int = 0,
                budgets: Sequence[float] = (), cluster_ratio: float = CLUSTER_RATIO,
                min_budgets: int = MIN_BUDGETS, keep_unresolved: bool = False) -> IsoflopFit:
    """Chinchilla's Approach 2: a parabola in log N per FLOP budget, then power laws through the minima.

    Seed replicates of one point (RunsTable `point`) enter as their mean, weighted by its inverse
    squared standard error sd^2/n: within one budget the noise SD is common (an SD from each point's
    own 2 or 3 seeds would make the weights noisier than the losses), so the weights are the numbers
    of replicates. The noise floor (per budget and pooled) and each curve's depth come with the fit.

    Args:
        table: one row per run (checkpoint rows would each count as a point).
        bootstrap: two-level resamples within budgets (0 for none); seed: their seed.
        budgets: FLOPs at which to report N_opt and D_opt.
        cluster_ratio: FLOP counts within this ratio form one budget when there is no flops_budget column.
        min_budgets: budgets with an interior minimum required (a UsageError below it); 0 returns the
            profiles of whatever budgets there are (the planner's refinement reads them), whose power
            laws are NaN with fewer than MIN_BUDGETS interior minima.
        keep_unresolved: let a budget whose curve is shallower than twice the noise (its minimum not
            resolved) into the power laws; by default it is left out, as one seed's luck could move it.
    Returns:
        IsoflopFit: each budget's minimum (flagged when outside the sampled sizes, or shallower than
        twice the noise) and the power laws.
    """
    idx, values = group_budgets(table, cluster_ratio)
    log_n = np.log(table.column("params"))
    loss = table.column("loss")
    usable = [g for g in range(len(values)) if len(np.unique(log_n[idx == g])) >= MIN_POINTS_PER_BUDGET]
    if len(usable) < max(min_budgets, 1):
        raise UsageError(f"isoflop needs at least {max(min_budgets, 1)} budgets with at least "
                         f"{MIN_POINTS_PER_BUDGET} model sizes each; the table has {len(usable)} "
                         f"(of {len(values)} budgets)")
    noise = noise_floor(table, idx, values)
    codes, point_of_run = table.run_points()
    points, n_pts = table.point_codes()
    budget_of_point = np.zeros(n_pts, dtype=np.int64)
    budget_of_point[points] = idx
    resampled = (two_level_weights(codes, point_of_run, bootstrap, seed, strata=budget_of_point)
                 if bootstrap > 0 else np.zeros((0, len(loss))))
    weights = np.vstack([np.ones((1, len(loss))), resampled])

    profiles, xs_all, inside_all = [], [], []
    for g in usable:
        rows = idx == g
        local, first = np.unique(points[rows], return_index=True)
        member = (points[rows][:, None] == local[None, :]).astype(np.float64)  # (rows, points)
        x = log_n[rows][first]
        centre = x.mean()  # centring keeps the normal equations well conditioned
        w_rows = weights[:, rows]
        c0, c1, c2 = _parabolas(x - centre, (w_rows * loss[rows]) @ member, w_rows @ member)
        lo, hi = x.min() - centre, x.max() - centre
        xs, ls, inside = _vertex(c0, c1, c2, lo, hi)
        xs_all.append(xs + centre)
        inside_all.append(inside)
        n_opt = float(np.exp(xs[0] + centre)) if np.isfinite(xs[0]) else None
        parabola = (float(c0[0]), float(c1[0]), float(c2[0]), float(centre))
        sd, source = noise.at(values[g])
        profiles.append(BudgetProfile(
            flops=float(values[g]), n_opt=n_opt, d_opt=None if n_opt is None else float(values[g] / (6 * n_opt)),
            loss_opt=None if n_opt is None else float(ls[0]), interior=bool(inside[0]), n_points=int(rows.sum()),
            params_range=(float(np.exp(x.min())), float(np.exp(x.max()))), parabola=parabola,
            depth=depth_of(parabola, lo, hi) if np.isfinite(c0[0]) else None, noise_sd=sd, noise_from=source,
            replicated=int((member.sum(axis=0) > 1).sum()), kept_unresolved=keep_unresolved,
            n_sizes=len(np.unique(x))))
    flops = values[usable]
    xs_all, inside_all = np.array(xs_all).T, np.array(inside_all).T  # (R + 1, budgets)
    unresolved = np.array([p.resolved is False for p in profiles], dtype=bool)
    if not keep_unresolved:
        inside_all = inside_all & ~unresolved[None, :]
    if inside_all[0].sum() < min_budgets:
        shallow = f", {int(unresolved.sum())} more not resolved (depth < 2 x noise: add seeds there)" \
            if unresolved.any() and not keep_unresolved else ""
        raise UsageError(f"isoflop needs at least {min_budgets} budgets whose loss minimum lies inside the "
                         f"sampled model sizes for an exponent; {int(inside_all[0].sum())} of {len(usable)} do"
                         f"{shallow} (`scaling sweep plan --refine SWEEP` adds sizes beyond the edges)")
    exact = tuple(p.flops for p, used in zip(profiles, inside_all[0]) if used and p.n_sizes == 3 and not p.replicated)
    n_opt, d_opt = _power_laws(flops, xs_all[:1] if exact else xs_all, inside_all[:1] if exact else inside_all)
    fit = IsoflopFit(budgets=tuple(profiles), n_opt=n_opt, d_opt=d_opt, n_points=table.n_points,
                     dropped=dict(table.dropped), n_resamples=bootstrap, noise=noise, exact=exact)
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
    if inside0.sum() < MIN_BUDGETS:
        return PowerLaw(np.nan, np.nan), PowerLaw(np.nan, np.nan)
    n0 = np.exp(xs_all[0][inside0])
    samples_n = fits_n[1:] if len(fits_n) > 2 else None
    samples_d = fits_d[1:] if len(fits_d) > 2 else None
    return (power_law(flops[inside0], n0, samples_n),
            power_law(flops[inside0], flops[inside0] / (6.0 * n0), samples_d))
