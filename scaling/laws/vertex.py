"""The best value of one swept hyperparameter per group of runs: the vertex of a parabola in its log.

Shared by the learning-rate law (groups: size and budget) and the batch-size law (groups: budget and
size). In each group, the final losses (each point's mean over its seeds, weighted by its count, as
the isoFLOP fit does) are fitted by a parabola in log value; its vertex is the optimum, flagged when it
lies outside the swept values. When another hyperparameter is swept too (an lr x batch grid), each value
of this one takes its best point over the others (the profile minimum), by the replicate means of that
resample. Intervals come from a two-level bootstrap within groups (points, then all seeds of each).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaling.laws.bootstrap import interval, two_level_weights
from scaling.laws.isoflop import _parabolas, _vertex
from scaling.laws.table import RunsTable

MIN_VALUES = 3  # a parabola needs three values


@dataclass(frozen=True)
class GroupVertex:
    """One group's parabola in log value and its vertex (the optimum at row 0; rows 1.. resamples)."""

    rows: np.ndarray  # bool mask of the table's rows in the group
    values: tuple[float, ...]  # the swept values
    parabola: tuple[float, float, float, float]  # loss = c0 + c1 x + c2 x^2, x = ln value - centre
    log_opt: np.ndarray  # (R + 1,) ln of the optimum (NaN: no minimum)
    loss_opt: np.ndarray  # (R + 1,)
    inside: np.ndarray  # (R + 1,) bool: the vertex lies within the swept values

    @property
    def optimum(self) -> float | None:
        return float(np.exp(self.log_opt[0])) if np.isfinite(self.log_opt[0]) else None

    @property
    def ci95(self) -> tuple[float, float] | None:
        xs = self.log_opt[1:]
        return interval(np.exp(xs)) if len(xs) > 1 and np.isfinite(xs).sum() > 1 else None


def group_vertices(table: RunsTable, values: np.ndarray, keys: np.ndarray, *, bootstrap: int, seed: int,
                   profile: Sequence[str] = ()) -> list[GroupVertex]:
    """A parabola in ln `values` per group of `keys` that sweeps at least `MIN_VALUES` values.

    Args:
        table: the runs; values: the swept hyperparameter per row (positive); keys: each row's group.
        bootstrap: two-level resamples within each group (0 for none); seed: theirs.
        profile: other swept columns: each value takes its best point over them.
    Returns:
        One GroupVertex per qualifying group, in order of appearance (empty when none qualifies).
    """
    loss = table.column("loss")
    codes, point_of_run = table.run_points()
    points, n_pts = table.point_codes()
    group_of_point = np.zeros(n_pts, dtype=np.int64)
    group_of_point[points] = np.unique(keys, return_inverse=True)[1]
    resampled = (two_level_weights(codes, point_of_run, bootstrap, seed, strata=group_of_point)
                 if bootstrap > 0 else np.zeros((0, len(loss))))
    weights = np.vstack([np.ones((1, len(loss))), resampled])
    profiled = [c for c in profile if c in table.frame.columns]
    out = []
    for g in dict.fromkeys(keys):
        rows = keys == g
        if len(np.unique(values[rows])) < MIN_VALUES:
            continue
        local, first = np.unique(points[rows], return_index=True)
        member = (points[rows][:, None] == local[None, :]).astype(np.float64)  # (rows, points)
        w_rows = weights[:, rows]
        sums, counts = (w_rows * loss[rows]) @ member, w_rows @ member  # (R + 1, points)
        x_point = np.log(values[rows][first])
        if profiled:
            sums, counts, x = _profile_minimum(sums, counts, x_point)
        else:
            x = x_point
        centre = x.mean()
        c0, c1, c2 = _parabolas(x - centre, sums, counts)
        xs, ls, inside = _vertex(c0, c1, c2, x.min() - centre, x.max() - centre)
        out.append(GroupVertex(rows=rows, values=tuple(float(v) for v in np.unique(values[rows])),
                               parabola=(float(c0[0]), float(c1[0]), float(c2[0]), float(centre)),
                               log_opt=xs + centre, loss_opt=ls, inside=inside))
    return out


def _profile_minimum(sums: np.ndarray, counts: np.ndarray, x_point: np.ndarray):
    """Per resample and per distinct x, the point of lowest mean among those drawn (its weight and
    weighted sum); (R + 1, distinct x) arrays and the distinct x."""
    x, which = np.unique(x_point, return_inverse=True)
    with np.errstate(all="ignore"):
        mean = np.where(counts > 0, sums / counts, np.inf)
    best_sums, best_counts = np.zeros((len(sums), len(x))), np.zeros((len(sums), len(x)))
    for j in range(len(x)):
        cols = np.flatnonzero(which == j)
        pick = cols[np.argmin(mean[:, cols], axis=1)]
        r = np.arange(len(sums))
        drawn = np.isfinite(mean[r, pick])
        best_counts[:, j] = np.where(drawn, counts[r, pick], 0.0)
        best_sums[:, j] = np.where(drawn, sums[r, pick], 0.0)
    return best_sums, best_counts, x
