"""The run-to-run noise floor: the standard deviation of the final loss between seed replicates of one
point, pooled over the points that have replicates, per compute budget and over all of them.

Pooling is over within-point deviations only (each point's replicates around their own mean), so a
difference between sizes or budgets never counts as noise. A curve whose depth (the loss gap between
its minimum and the better of its sampled edges) is under `RESOLVE_FACTOR` times the noise cannot
place its minimum: moving one run by a typical seed-to-seed difference could move it to an edge.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scaling.laws.table import RunsTable

RESOLVE_FACTOR = 2.0


@dataclass(frozen=True)
class NoiseEstimate:
    """The pooled SD of one run's final loss, with its degrees of freedom (sum of replicates - 1 per
    point) and the number of points with replicates it comes from; sd is None without replicates."""

    sd: float | None
    dof: int
    points: int

    def to_json(self) -> dict:
        return {"sd": self.sd, "dof": self.dof, "points": self.points}


@dataclass(frozen=True)
class NoiseFloor:
    """The noise per budget (FLOPs, estimate) and pooled over all budgets."""

    budgets: tuple[tuple[float, NoiseEstimate], ...]
    pooled: NoiseEstimate

    def at(self, flops: float) -> tuple[float | None, str]:
        """The SD to compare a budget's depth with, and where it comes from ("budget", "pooled" or "none")."""
        for c, est in self.budgets:
            if np.isclose(c, flops, rtol=1e-6) and est.sd is not None:
                return est.sd, "budget"
        if self.pooled.sd is not None:
            return self.pooled.sd, "pooled"
        return None, "none"

    def describe(self) -> str:
        """One line: the pooled SD and what it rests on."""
        if self.pooled.sd is None:
            return "noise floor: not measured (no point has seed replicates)"
        return (f"noise floor: run-to-run SD of the final loss {self.pooled.sd:.3g} (pooled over "
                f"{self.pooled.points} points with seed replicates, {self.pooled.dof} degrees of freedom)")

    def to_json(self) -> dict:
        return {"pooled": self.pooled.to_json(),
                "budgets": [{"flops": c, **est.to_json()} for c, est in self.budgets]}


def _pool(final: pd.DataFrame) -> NoiseEstimate:
    # Deviations from each point's own mean, in whole columns: a Python call per point (groupby.apply)
    # cost a minute on a 10,000-run table.
    groups = final.groupby("point", sort=False)["loss"]
    n = groups.size()
    ss = float(np.sum((final["loss"] - groups.transform("mean")) ** 2))
    dof = int((n - 1).sum())
    points = int((n > 1).sum())
    return NoiseEstimate(float(np.sqrt(ss / dof)) if dof > 0 else None, dof, points)


def final_rows(table: RunsTable) -> pd.DataFrame:
    """One row per run: its last (largest-compute) row, for tables with per-checkpoint rows."""
    frame = table.frame
    order = frame["step"] if "step" in frame.columns else frame["flops"]
    return (frame.assign(_order=order.to_numpy()).sort_values("_order", kind="stable")
            .groupby("run", sort=False).tail(1).drop(columns="_order"))


def noise_floor(table: RunsTable, budget_of_row: np.ndarray, budget_flops: np.ndarray) -> NoiseFloor:
    """The noise floor of a runs table whose rows are grouped into budgets (see `group_budgets`).

    Returns:
        NoiseFloor: per budget with at least one replicated point, and pooled over all of them.
    """
    frame = table.frame.assign(_budget=np.asarray(budget_of_row))
    final = final_rows(table.with_frame(frame))
    per_budget = []
    for g, rows in final.groupby("_budget", sort=True):
        est = _pool(rows)
        if est.sd is not None:
            per_budget.append((float(budget_flops[int(g)]), est))
    return NoiseFloor(tuple(per_budget), _pool(final))


def depth_of(parabola, x_lo: float, x_hi: float) -> float:
    """The loss gap between a profile's lowest value on the sampled range [x_lo, x_hi] (x = ln N minus
    the parabola's centre) and the lower of its two edges; 0 when the lowest value is an edge."""
    c0, c1, c2 = parabola[:3]
    f = lambda x: c0 + c1 * x + c2 * x * x  # noqa: E731
    lowest = min(f(x_lo), f(x_hi))
    if c2 > 0:
        x_min = -c1 / (2 * c2)
        if x_lo < x_min < x_hi:
            lowest = min(lowest, f(x_min))
    return float(min(f(x_lo), f(x_hi)) - lowest)
