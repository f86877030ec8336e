"""The best mixture under a fitted data mixing law: the proportions minimising a target weighting of the
evaluation domains' losses, searched on a grid over the simplex, with bootstrap intervals (mixture.py)."""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from scaling.laws.bootstrap import interval
from scaling.laws.domains import MIX_PREFIX
from scaling.laws.errors import ArgumentError

GRID_POINTS = 30000  # simplex points searched for the optimum (step 1/100 for three domains)


def predict_loss(theta, proportions) -> np.ndarray:
    """Loss (S, n) of mixing-law parameter rows theta (S, J+1) = (log c, log k, t_1..t_{J-1}) at proportions
    (n, J); t_J is minus the sum of the others."""
    r = np.asarray(proportions, np.float64)
    theta = np.atleast_2d(theta)
    t = np.concatenate([theta[:, 2:], -theta[:, 2:].sum(axis=1, keepdims=True)], axis=1)
    return np.exp(np.logaddexp(theta[:, :1], theta[:, 1:2] + t @ r.T))


@dataclass(frozen=True)
class MixtureOptimum:
    """The mixture minimising the target weighting on a simplex grid of step `grid_step`: proportions with
    the resamples' own optima as intervals, and the target's and each domain's predicted loss there."""

    proportions: Mapping[str, float]
    proportions_ci95: Mapping[str, tuple[float, float]]
    loss: float
    ci95: tuple[float, float] | None
    losses: Mapping[str, float]
    losses_ci95: Mapping[str, tuple[float, float]]
    grid_step: float

    def to_json(self) -> dict:
        return {"proportions": dict(self.proportions),
                "proportions_ci95": {k: list(v) for k, v in self.proportions_ci95.items()}, "loss": self.loss,
                "ci95": None if self.ci95 is None else list(self.ci95), "losses": dict(self.losses),
                "losses_ci95": {k: list(v) for k, v in self.losses_ci95.items()}, "grid_step": self.grid_step}


def grid_steps(n_components: int, max_points: int = GRID_POINTS) -> int:
    """m of the simplex grid (proportions in steps of 1/m): at most 100, as large as `max_points` allows."""
    m = 100
    while m > 1 and math.comb(m + n_components - 1, n_components - 1) > max_points:
        m -= 1
    return m


def simplex_grid(n_components: int, max_points: int = GRID_POINTS) -> np.ndarray:
    """Every mixture of `n_components` with proportions in steps of 1/m (`grid_steps`), one per row."""
    m = grid_steps(n_components, max_points)
    # Stars and bars: n_components - 1 bars among m + n_components - 1 slots; the gaps are the counts.
    bars = np.array(list(itertools.combinations(range(m + n_components - 1), n_components - 1)))
    edges = np.column_stack([np.full(len(bars), -1), bars, np.full(len(bars), m + n_components - 1)])
    return (np.diff(edges, axis=1) - 1) / m


def _flag(target: Mapping[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in target.items())


def parse_target(target: Mapping[str, float] | None, domains: Sequence[str]) -> dict[str, float]:
    """Weights by evaluation domain, normalised to sum 1 (default: equal)."""
    if not target:
        return {d: 1.0 / len(domains) for d in domains}
    unknown = [d for d in target if d not in domains]
    if unknown:
        raise ArgumentError("target", f"{unknown[0]!r} is not an evaluation domain of the fit "
                            f"({', '.join(domains)})", repr(dict(target)), _flag(target))
    if any(not (v >= 0 and math.isfinite(v)) for v in target.values()) or sum(target.values()) <= 0:
        raise ArgumentError("target", "weights must be finite, 0 or more, and not all 0", repr(dict(target)),
                            _flag(target))
    total = sum(target.values())
    return {d: float(v) / total for d, v in target.items()}


def best_mixture(laws: Sequence, mix_cols, weights: Mapping[str, float]) -> MixtureOptimum:
    """The grid mixture minimising sum_i w_i L_i; intervals from every law's resamples (laws: DomainLaw)."""
    grid = simplex_grid(len(mix_cols))
    w = np.array([weights.get(law.domain, 0.0) for law in laws])
    full = np.array([predict_loss(law.theta, grid)[0] for law in laws])  # (D, G)
    best = int(np.argmin(w @ full))
    names = [c[len(MIX_PREFIX):] for c in mix_cols]
    n_samples = min(len(law.samples) for law in laws)
    r_ci, loss_ci, each_ci = {}, None, {}
    if n_samples > 1:
        at_best = np.array([predict_loss(law.samples[:n_samples], grid[best:best + 1])[:, 0] for law in laws])
        loss_ci = interval(w @ at_best)
        each_ci = {law.domain: interval(at_best[i]) for i, law in enumerate(laws)}
        optima = np.zeros((n_samples, len(names)))
        for lo in range(0, n_samples, 32):  # (D, 32, G) at a time: a thousand resamples at once is gigabytes
            chunk = np.array([predict_loss(law.samples[lo:lo + 32], grid) for law in laws])
            optima[lo:lo + 32] = grid[np.argmin(np.einsum("d,dsg->sg", w, chunk), axis=1)]
        r_ci = {j: interval(optima[:, i]) for i, j in enumerate(names)}
    return MixtureOptimum(proportions={j: float(v) for j, v in zip(names, grid[best])}, proportions_ci95=r_ci,
                          loss=float(w @ full[:, best]), ci95=loss_ci,
                          losses={law.domain: float(full[i, best]) for i, law in enumerate(laws)},
                          losses_ci95=each_ci, grid_step=1.0 / grid_steps(len(mix_cols)))

