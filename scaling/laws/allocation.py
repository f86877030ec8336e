"""Compute-optimal allocation from a fitted law: N_opt, D_opt, tokens per parameter and loss at budgets.

Under C = 6 N D every two-variable law here has a closed-form optimum N_opt = G (C/6)^a,
D_opt = (C/6)^b / G (see `forms.allocation_exponents`). Intervals come from pushing every bootstrap
parameter vector through the same formulas, so they carry the parameters' joint uncertainty.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from scaling.laws.bootstrap import interval
from scaling.laws.forms import LawForm, allocation_exponents
from scaling.laws.optim import x64


@dataclass(frozen=True)
class BudgetPoint:
    """The compute-optimal choice at one budget (params, tokens are None for a law of C alone)."""

    flops: float
    params: float | None
    tokens: float | None
    tokens_per_param: float | None
    loss: float | None
    ci95: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"flops": self.flops}
        for key in ("params", "tokens", "tokens_per_param", "loss"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.ci95:
            out["ci95"] = {k: list(v) for k, v in self.ci95.items()}
        return out


@dataclass(frozen=True)
class Allocation:
    """N_opt = G (C/6)^a, D_opt = (C/6)^b / G, and the choice at each requested budget."""

    a: float | None
    b: float | None
    G: float | None
    ci95: Mapping[str, tuple[float, float]]
    at: tuple[BudgetPoint, ...]

    def to_json(self) -> dict:
        out = {}
        for key in ("a", "b", "G"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.ci95:
            out["ci95"] = {k: list(v) for k, v in self.ci95.items()}
        out["at"] = [p.to_json() for p in self.at]
        return out


def _features(form: LawForm, n, d, c):
    """Log features for per-sample points: fresh data, so unique tokens = tokens."""
    cols = {"log_params": n, "log_tokens": d, "log_flops": c, "log_unique_tokens": d}
    return np.log(np.stack([cols[f] for f in form.features], axis=-2))


def _predict_each(form: LawForm, thetas: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Loss for parameter vector i at its own features X[i] (thetas (R, P), X (R, F, k))."""
    with x64():
        one = lambda t, x: form.log_predict(t[None], x)[0]  # noqa: E731
        return np.exp(np.asarray(jax.vmap(one)(jnp.asarray(thetas, jnp.float64), jnp.asarray(X, jnp.float64))))


def optimal_allocation(form: LawForm, theta, budgets: Sequence[float] = (), samples=None) -> Allocation:
    """The compute-optimal choice under C = 6ND.

    Args:
        form: the fitted law's form.
        theta: its parameters in optimizer coordinates (P,).
        budgets: FLOP budgets to evaluate N_opt, D_opt, tokens per parameter and loss at.
        samples: bootstrap parameter vectors (R, P) for 95% intervals, or None.
    Returns:
        Allocation: a, b, G with intervals, and one BudgetPoint per budget.
    """
    budgets = np.asarray(list(budgets), dtype=np.float64)
    thetas = np.asarray(theta, dtype=np.float64)[None]
    have_ci = samples is not None and len(samples) > 1
    if have_ci:
        thetas = np.vstack([thetas, np.asarray(samples, dtype=np.float64)])
    if form.allocates:
        ex = allocation_exponents(form, thetas)
        with np.errstate(all="ignore"):
            scale = budgets[None, :] / 6.0
            n = ex["G"][:, None] * scale ** ex["a"][:, None]
            d = scale ** ex["b"][:, None] / ex["G"][:, None]
        c = np.broadcast_to(budgets, n.shape)
        ok = np.isfinite(n) & np.isfinite(d) & (n > 0) & (d > 0)
        safe_n, safe_d = np.where(ok, n, 1.0), np.where(ok, d, 1.0)
        loss = (np.where(ok, _predict_each(form, thetas, _features(form, safe_n, safe_d, c)), np.nan)
                if len(budgets) else n)
        figures = {"params": n, "tokens": d, "tokens_per_param": d / n, "loss": loss}
        head = {k: float(ex[k][0]) for k in ("a", "b", "G")}
        head_ci = {k: interval(ex[k][1:]) for k in ("a", "b", "G")} if have_ci else {}
    elif form.name == "compute":
        c = np.broadcast_to(budgets, (len(thetas), len(budgets)))
        loss = _predict_each(form, thetas, _features(form, c, c, c)) if len(budgets) else c
        figures = {"loss": loss}
        head, head_ci = {"a": None, "b": None, "G": None}, {}
    else:
        raise ValueError(f"{form.name} has no compute-optimal allocation")
    points = []
    for j, flops in enumerate(budgets):
        ci = {k: interval(v[1:, j]) for k, v in figures.items()} if have_ci else {}
        vals = {k: float(v[0, j]) for k, v in figures.items()}
        points.append(BudgetPoint(flops=float(flops), params=vals.get("params"), tokens=vals.get("tokens"),
                                  tokens_per_param=vals.get("tokens_per_param"), loss=vals["loss"], ci95=ci))
    return Allocation(a=head["a"], b=head["b"], G=head["G"], ci95=head_ci, at=tuple(points))
