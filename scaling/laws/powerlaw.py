"""N_opt(C) = k C^a style power laws, fitted by least squares in log-log space, with intervals."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from scaling.laws.allocation import Allocation, BudgetPoint
from scaling.laws.bootstrap import interval


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient * C^exponent; `ci95` is the exponent's interval, `coefficient_ci95` k's."""

    coefficient: float
    exponent: float
    ci95: tuple[float, float] | None = None
    coefficient_ci95: tuple[float, float] | None = None
    samples: np.ndarray | None = field(default=None, repr=False, compare=False)  # (R, 2): log k, a

    def __call__(self, flops):
        return self.coefficient * np.asarray(flops, dtype=np.float64) ** self.exponent

    def interval_at(self, flops: float) -> tuple[float, float] | None:
        """95% interval of k C^a at one budget, from the joint bootstrap (k and a are correlated)."""
        if self.samples is None:
            return None
        return interval(np.exp(self.samples[:, 0] + self.samples[:, 1] * np.log(flops)))

    def to_json(self) -> dict:
        out = {"coefficient": self.coefficient, "exponent": self.exponent}
        if self.ci95 is not None:
            out["ci95"] = list(self.ci95)
            out["coefficient_ci95"] = list(self.coefficient_ci95)
        return out


def loglog_fit(flops, values) -> tuple[float, float]:
    """(log k, a) of log y = log k + a log C; NaN when fewer than 2 distinct C."""
    x, y = np.log(np.asarray(flops, dtype=np.float64)), np.log(np.asarray(values, dtype=np.float64))
    ok = np.isfinite(x) & np.isfinite(y)
    if len(np.unique(x[ok])) < 2:
        return np.nan, np.nan
    a, log_k = np.polyfit(x[ok], y[ok], 1)
    return float(log_k), float(a)


def power_law(flops, values, samples: np.ndarray | None = None) -> PowerLaw:
    """The fit on the data, with intervals from bootstrap (log k, a) pairs (R, 2) when given."""
    log_k, a = loglog_fit(flops, values)
    if samples is None or len(samples) < 2:
        return PowerLaw(float(np.exp(log_k)), a)
    return PowerLaw(float(np.exp(log_k)), a, interval(samples[:, 1]), tuple(np.exp(interval(samples[:, 0]))),
                    np.asarray(samples, dtype=np.float64))


def power_law_allocation(n_law: PowerLaw, d_law: PowerLaw, budgets: Sequence[float]) -> Allocation:
    """N_opt, D_opt, tokens per parameter at `budgets` from N_opt(C) = k C^a and D_opt(C) power laws
    (no loss: these approaches do not model it; no G: k is in the power law); joint-bootstrap intervals."""
    points = []
    for c in budgets:
        n, d = float(n_law(c)), float(d_law(c))
        ci = {}
        if n_law.samples is not None:
            ci = {"params": n_law.interval_at(c), "tokens": d_law.interval_at(c)}
        points.append(BudgetPoint(flops=float(c), params=n, tokens=d, tokens_per_param=d / n, loss=None, ci95=ci))
    ci = {"a": n_law.ci95, "b": d_law.ci95} if n_law.ci95 is not None else {}
    return Allocation(a=n_law.exponent, b=d_law.exponent, G=None, ci95=ci, at=tuple(points))
