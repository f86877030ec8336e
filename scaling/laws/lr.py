"""The optimal learning rate per model size, and its power law lr_opt(N) = c N^k.

From an lr-by-size sweep (several peak learning rates at each size, and possibly at several budgets):
for each (size, budget) group a parabola in log lr through the final losses (each point's mean over its
seeds, weighted by its count, as the isoFLOP fit does) gives lr_opt at its vertex; a vertex outside the
swept learning rates is flagged and left out of the power law, whose intervals come from a two-level
bootstrap within groups (points, then all the seeds of each drawn point).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.bootstrap import DEFAULT_RESAMPLES
from scaling.laws.isoflop import group_budgets, parabola_curve
from scaling.laws.powerlaw import PowerLaw, loglog_fit, power_law
from scaling.laws.result import Estimate, Table, estimates_frame
from scaling.laws.table import RunsTable, numeric_column
from scaling.laws.vertex import MIN_VALUES, group_vertices

MIN_LRS = MIN_VALUES  # a parabola needs three learning rates
MIN_SIZES = 2  # interior groups of distinct sizes for the power law


@dataclass(frozen=True)
class SizeOptimum:
    """One size (at one budget): the vertex of its parabola in log lr, and whether it is interior."""

    params: float
    flops: float
    lr_opt: float | None
    ci95: tuple[float, float] | None
    loss_opt: float | None
    interior: bool
    lrs: tuple[float, ...]
    parabola: tuple[float, float, float, float] | None  # loss = c0 + c1 x + c2 x^2, x = ln lr - centre

    def to_json(self) -> dict:
        return {"params": self.params, "flops": self.flops, "lr_opt": self.lr_opt,
                "ci95": None if self.ci95 is None else list(self.ci95), "loss_opt": self.loss_opt,
                "interior": self.interior, "lrs": list(self.lrs)}


@dataclass(frozen=True)
class LrFit:
    """lr_opt per size and lr_opt(N) = c N^k."""

    sizes: tuple[SizeOptimum, ...]
    lr_opt: PowerLaw
    n_points: int
    dropped: Mapping[str, int]
    n_resamples: int
    optimal: None = None
    law: str = field(default="lr")

    title = "optimal learning rate per size: a parabola in log lr, then lr_opt = c N^k"
    label = "learning rate"

    def rule(self, params) -> np.ndarray:
        """lr_opt at N from the power law (what `lr=fit:FIT.json` uses)."""
        return self.lr_opt(params)

    def method(self) -> str:
        return (f"a parabola in log lr per size and budget through replicate means; {self.n_resamples} two-level "
                f"bootstrap resamples within each size (points, each with all its seeds)")

    def estimates(self) -> list[Estimate]:
        return [Estimate("lr_opt = c N^k: c", self.lr_opt.coefficient, self.lr_opt.coefficient_ci95),
                Estimate("lr_opt = c N^k: k", self.lr_opt.exponent, self.lr_opt.ci95)]

    def details(self) -> list[Table]:
        rows = tuple((s.params, s.flops, s.lr_opt, None if s.ci95 is None else s.ci95[0],
                      None if s.ci95 is None else s.ci95[1], s.loss_opt,
                      "yes" if s.interior else "NO (not used)", len(s.lrs)) for s in self.sizes)
        return [Table(("N", "budget (FLOPs)", "lr_opt", "95% lo", "95% hi", "loss", "interior", "lrs"), rows)]

    def notes(self) -> list[str]:
        out = [f"N = {s.params:.4g} at C = {s.flops:.3g}: the best lr lies outside the swept "
               f"{min(s.lrs):.3g}..{max(s.lrs):.3g}; widen the sweep there" for s in self.sizes if not s.interior]
        out.append("a run takes the rule with recipe=FIT.json (at its model's N, recorded in its config.yaml) "
                   "or lr=fit:FIT.json (at its params=N)")
        return out

    def exponents(self):
        return None

    def frontier(self, flops, which: str):
        return None, None

    def to_frame(self):
        return estimates_frame(self.estimates())

    def to_json(self) -> dict:
        return clean({"law": self.law, "sizes": [s.to_json() for s in self.sizes], "lr_opt": self.lr_opt.to_json(),
                      "n_points": self.n_points, "n_dropped": int(sum(self.dropped.values())),
                      "dropped": dict(self.dropped), "bootstrap": self.n_resamples})

    def plot(self, ax, **style):
        """Loss against lr at each size, its parabola and vertex (a star inside the swept rates, an x
        outside)."""
        import matplotlib.pyplot as plt

        cmap = plt.get_cmap(style.get("cmap", "viridis"))
        for i, s in enumerate(self.sizes):
            color = cmap(0.1 + 0.8 * i / max(1, len(self.sizes) - 1))
            if s.parabola is not None:
                ax.plot(*parabola_curve(s.parabola, min(s.lrs), max(s.lrs)), "-", color=color,
                        label=f"N = {s.params:.3g}")
            if s.lr_opt is not None:
                ax.plot([s.lr_opt], [s.loss_opt], "*" if s.interior else "x", ms=11, color=color, mec="k")
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate")
        ax.set_ylabel("final loss")
        ax.legend(fontsize=7)
        return ax


def fit_lr(table: RunsTable, *, bootstrap: int = DEFAULT_RESAMPLES, seed: int = 0) -> LrFit:
    """lr_opt per (size, budget) and the power law lr_opt(N) through the interior ones.

    Args:
        table: runs with an `lr` column, at least 3 learning rates for some size.
        bootstrap: two-level resamples within each group (0 for none); seed: their seed.
    Returns:
        LrFit: each group's vertex with its interval, and lr_opt = c N^k with intervals.
    Raises:
        UsageError: no lr column, too few learning rates, or fewer than 2 sizes with an interior optimum.
    """
    if "lr" not in table.frame.columns:
        raise UsageError("law lr needs an 'lr' column (the peak learning rate of each run): fit an lr-by-size "
                         "sweep such as sweeps/lr-by-size.yaml")
    lr = numeric_column(table.frame["lr"], "lr").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(lr) & (lr > 0)):
        raise UsageError("column 'lr' must be a positive number on every row for law lr")
    budget, budget_flops = group_budgets(table)
    params = table.column("params")
    keys = np.array([f"{p!r}|{b}" for p, b in zip(params, budget)])
    # an lr x batch grid (sweep plan --hparams): each lr takes its best batch size
    found = group_vertices(table, lr, keys, bootstrap=bootstrap, seed=seed, profile=("batch_size",))
    if not found:
        raise UsageError(f"law lr needs at least {MIN_LRS} learning rates at some size; the table has at most "
                         f"{max(len(np.unique(lr[keys == g])) for g in set(keys))}")
    sizes = [SizeOptimum(params=float(params[v.rows][0]), flops=float(budget_flops[budget[v.rows][0]]),
                         lr_opt=v.optimum, ci95=v.ci95 if bootstrap > 1 else None,
                         loss_opt=float(v.loss_opt[0]) if np.isfinite(v.loss_opt[0]) else None,
                         interior=bool(v.inside[0]), lrs=v.values, parabola=v.parabola) for v in found]
    n = np.array([s.params for s in sizes])
    xs_all = np.array([v.log_opt for v in found]).T  # (R + 1, groups)
    inside_all = np.array([v.inside for v in found]).T
    if len(np.unique(n[inside_all[0]])) < MIN_SIZES:
        raise UsageError(f"law lr needs at least {MIN_SIZES} sizes whose best lr lies inside the swept learning "
                         f"rates; {len(np.unique(n[inside_all[0]]))} do (widen the lr sweep)")
    law = vertex_power_law(n, xs_all, inside_all)
    return LrFit(sizes=tuple(sizes), lr_opt=law, n_points=table.n_points, dropped=dict(table.dropped),
                 n_resamples=bootstrap)


def vertex_power_law(x: np.ndarray, log_opt: np.ndarray, inside: np.ndarray) -> PowerLaw:
    """opt = c x^k through the interior vertices (row 0), its intervals from each resample's own interior
    vertices (rows 1..; x may be per row, (R + 1, groups), or shared, (groups,))."""
    x = np.broadcast_to(x, log_opt.shape)
    fits = []
    for xr, xs, ok in zip(x[1:], log_opt[1:], inside[1:]):
        ok = ok & np.isfinite(xs) & np.isfinite(xr)
        fits.append(loglog_fit(xr[ok], np.exp(xs[ok])) if len(np.unique(xr[ok])) >= MIN_SIZES else (np.nan, np.nan))
    samples = np.array(fits) if len(fits) > 1 else None
    ok0 = inside[0]
    return power_law(x[0][ok0], np.exp(log_opt[0][ok0]), samples)
