"""The optimal batch size per compute budget, and its power law B_opt = c C^k (or c L^k in the loss).

From a sweep that varies the batch size at several budgets (`scaling sweep plan --hparams` writes an
lr x batch grid): per (budget, size) group the vertex of a parabola in log batch size through the final
losses, each batch size at its best learning rate when the lr is swept too (`vertex.py`, the same fit
as the learning-rate law's). Interior vertices enter the power law; intervals from a two-level bootstrap
within groups. Against the loss, each resample's x is its own vertex loss, so the loss's uncertainty is
in the interval as well.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.bootstrap import DEFAULT_RESAMPLES
from scaling.laws.errors import ArgumentError
from scaling.laws.isoflop import group_budgets, parabola_curve
from scaling.laws.lr import MIN_SIZES, vertex_power_law
from scaling.laws.powerlaw import PowerLaw
from scaling.laws.result import Estimate, Table, estimates_frame
from scaling.laws.table import RunsTable, numeric_column
from scaling.laws.vertex import MIN_VALUES, group_vertices

AGAINST = ("flops", "loss")


@dataclass(frozen=True)
class BudgetOptimum:
    """One budget (at one size): the vertex of its parabola in log batch size, and whether it is interior."""

    flops: float
    params: float
    batch_opt: float | None
    ci95: tuple[float, float] | None
    loss_opt: float | None
    interior: bool
    batch_sizes: tuple[float, ...]
    parabola: tuple[float, float, float, float] | None

    def to_json(self) -> dict:
        return {"flops": self.flops, "params": self.params, "batch_opt": self.batch_opt,
                "ci95": None if self.ci95 is None else list(self.ci95), "loss_opt": self.loss_opt,
                "interior": self.interior, "batch_sizes": list(self.batch_sizes)}


@dataclass(frozen=True)
class BatchFit:
    """batch_opt per budget and batch_opt = c C^k (or c L^k)."""

    budgets: tuple[BudgetOptimum, ...]
    batch_opt: PowerLaw
    against: str
    n_points: int
    dropped: Mapping[str, int]
    n_resamples: int
    optimal: None = None
    law: str = field(default="batch")

    label = "batch size"

    @property
    def title(self) -> str:
        x = "C" if self.against == "flops" else "L"
        return f"optimal batch size per budget: a parabola in log batch size, then batch_opt = c {x}^k"

    def rule(self, x) -> np.ndarray:
        """batch_opt (sequences per step) at compute C (or loss L, as fitted)."""
        return self.batch_opt(x)

    def method(self) -> str:
        return (f"a parabola in log batch size per budget and size through replicate means (each batch size at "
                f"its best swept lr); {self.n_resamples} two-level bootstrap resamples within each budget")

    def estimates(self) -> list[Estimate]:
        x = "C" if self.against == "flops" else "L"
        return [Estimate(f"batch_opt = c {x}^k: c", self.batch_opt.coefficient, self.batch_opt.coefficient_ci95),
                Estimate(f"batch_opt = c {x}^k: k", self.batch_opt.exponent, self.batch_opt.ci95)]

    def details(self) -> list[Table]:
        rows = tuple((b.flops, b.params, b.batch_opt, None if b.ci95 is None else b.ci95[0],
                      None if b.ci95 is None else b.ci95[1], b.loss_opt, "yes" if b.interior else "NO (not used)",
                      len(b.batch_sizes)) for b in self.budgets)
        return [Table(("budget (FLOPs)", "N", "batch_opt", "95% lo", "95% hi", "loss", "interior", "batch sizes"),
                      rows)]

    def notes(self) -> list[str]:
        return [f"C = {b.flops:.3g} (N = {b.params:.4g}): the best batch size lies outside the swept "
                f"{min(b.batch_sizes):g}..{max(b.batch_sizes):g}; widen the sweep there"
                for b in self.budgets if not b.interior]

    def exponents(self):
        return None

    def frontier(self, flops, which: str):
        return None, None

    def to_frame(self):
        return estimates_frame(self.estimates())

    def to_json(self) -> dict:
        return clean({"law": self.law, "against": self.against, "budgets": [b.to_json() for b in self.budgets],
                      "batch_opt": self.batch_opt.to_json(), "n_points": self.n_points,
                      "n_dropped": int(sum(self.dropped.values())), "dropped": dict(self.dropped),
                      "bootstrap": self.n_resamples})

    def plot(self, ax, **style):
        """Loss against batch size per budget, its parabola and vertex (a star inside the swept sizes)."""
        import matplotlib.pyplot as plt

        cmap = plt.get_cmap(style.get("cmap", "viridis"))
        for i, b in enumerate(self.budgets):
            color = cmap(0.1 + 0.8 * i / max(1, len(self.budgets) - 1))
            if b.parabola is not None:
                ax.plot(*parabola_curve(b.parabola, min(b.batch_sizes), max(b.batch_sizes)), "-", color=color,
                        label=f"C = {b.flops:.3g}")
            if b.batch_opt is not None:
                ax.plot([b.batch_opt], [b.loss_opt], "*" if b.interior else "x", ms=11, color=color, mec="k")
        ax.set_xscale("log")
        ax.set_xlabel("batch size (sequences)")
        ax.set_ylabel("final loss")
        ax.legend(fontsize=7)
        return ax


def fit_batch(table: RunsTable, *, bootstrap: int = DEFAULT_RESAMPLES, seed: int = 0,
              against: str = "flops") -> BatchFit:
    """batch_opt per (budget, size) and the power law batch_opt(C) (or batch_opt(L)) through the interior ones.

    Args:
        table: runs with a `batch_size` column, at least 3 batch sizes at some budget.
        bootstrap: two-level resamples within each group (0 for none); seed: theirs.
        against: "flops" (batch_opt = c C^k) or "loss" (c L^k, L each vertex's loss).
    Raises:
        UsageError: no batch_size column, too few batch sizes, or fewer than 2 budgets with an interior optimum.
    """
    if against not in AGAINST:
        raise ArgumentError("against", f"is one of {', '.join(AGAINST)}", repr(against), against)
    if "batch_size" not in table.frame.columns:
        raise UsageError("law batch needs a 'batch_size' column (sequences per step of each run): fit a sweep "
                         "that varies it, e.g. one from `scaling sweep plan --hparams`")
    batch = numeric_column(table.frame["batch_size"], "batch_size").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(batch) & (batch > 0)):
        raise UsageError("column 'batch_size' must be a positive number on every row for law batch")
    budget, budget_flops = group_budgets(table)
    params = table.column("params")
    keys = np.array([f"{b}|{p!r}" for p, b in zip(params, budget)])
    found = group_vertices(table, batch, keys, bootstrap=bootstrap, seed=seed, profile=("lr",))
    if not found:
        raise UsageError(f"law batch needs at least {MIN_VALUES} batch sizes at some budget; the table has at most "
                         f"{max(len(np.unique(batch[keys == g])) for g in set(keys))}")
    budgets = [BudgetOptimum(flops=float(budget_flops[budget[v.rows][0]]), params=float(params[v.rows][0]),
                             batch_opt=v.optimum, ci95=v.ci95 if bootstrap > 1 else None,
                             loss_opt=float(v.loss_opt[0]) if np.isfinite(v.loss_opt[0]) else None,
                             interior=bool(v.inside[0]), batch_sizes=v.values, parabola=v.parabola) for v in found]
    log_opt = np.array([v.log_opt for v in found]).T  # (R + 1, groups)
    inside = np.array([v.inside for v in found]).T
    if against == "flops":
        x = np.array([b.flops for b in budgets])
    else:
        x = np.array([v.loss_opt for v in found]).T
    distinct = len(np.unique(np.broadcast_to(x, log_opt.shape)[0][inside[0]]))
    if distinct < MIN_SIZES:
        raise UsageError(f"law batch needs at least {MIN_SIZES} budgets whose best batch size lies inside the swept "
                         f"sizes; {distinct} do (widen the batch sweep)")
    return BatchFit(budgets=tuple(budgets), batch_opt=vertex_power_law(x, log_opt, inside), against=against,
                    n_points=table.n_points, dropped=dict(table.dropped), n_resamples=bootstrap)
