"""The variable-projection cross-check of Chinchilla's Approach 3 (the fit itself is
`parametric.fit_parametric(table, "chinchilla")`).

`varpro_fit` is an independent estimator: for fixed exponents (alpha, beta) the law is linear in
(E, A, B) >= 0, so those come from
non-negative least squares, and only (alpha, beta) are searched: on a grid, then on finer and finer
grids around the best point. Residuals are relative ((pred - L)/L, close to log residuals) and squared, not Huber, so
the two estimators share no code path and no loss: agreement is evidence, disagreement a warning.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from scaling.laws.forms import chinchilla_allocation
from scaling.laws.table import RunsTable

# Disagreement thresholds: the compute-optimal exponent a = beta/(alpha+beta) is what users act on.
MAX_A_DIFF = 0.03
MAX_EXPONENT_REL_DIFF = 0.15

@dataclass(frozen=True)
class CrossCheck:
    """A second estimator's parameters (variable projection) and whether they agree with the main fit."""

    method: str
    params: Mapping[str, float]
    objective: float
    agrees: bool
    differences: Mapping[str, float]

    @property
    def a(self) -> float:
        """The cross-check's compute-optimal exponent a = beta/(alpha+beta)."""
        return float(chinchilla_allocation(self.params["A"], self.params["B"], self.params["alpha"],
                                           self.params["beta"])["a"])

    def to_json(self) -> dict:
        return {"method": self.method, "params": dict(self.params), "objective": self.objective,
                "agrees": self.agrees, "differences": dict(self.differences)}


_SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(range(3), r)]


def _nnls_all(gram: np.ndarray, rhs: np.ndarray, const: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact NNLS for many 3-variable problems at once, by trying every support.

    The NNLS solution is the least-squares solution on its own support, and every support whose
    least-squares solution is non-negative gives a feasible point, so the best feasible support wins.
    Returns coefficients (K, 3) and objectives (K,).
    """
    K = gram.shape[0]
    best_obj = np.full(K, np.inf)
    best_c = np.zeros((K, 3))
    for s in _SUBSETS:
        idx = np.array(s)
        G = gram[:, idx[:, None], idx[None, :]]
        r = rhs[:, idx]
        ridge = 1e-13 * np.trace(G, axis1=1, axis2=2)[:, None, None] * np.eye(len(idx))
        with np.errstate(all="ignore"):
            try:
                c = np.linalg.solve(G + ridge, r[..., None])[..., 0]
            except np.linalg.LinAlgError:
                continue
        obj = const - np.sum(c * r, axis=1)
        ok = np.all(c >= 0, axis=1) & np.isfinite(obj) & (obj < best_obj)
        best_obj = np.where(ok, obj, best_obj)
        full = np.zeros((K, 3))
        full[:, idx] = c
        best_c = np.where(ok[:, None], full, best_c)
    return best_c, best_obj


def _grams(log_n, log_d, loss, alphas, betas):
    """Normal equations of the relative-residual least squares for every (alpha_i, beta_j) pair.

    Features are scaled by the geometric mean sizes so that the 3x3 systems stay well conditioned.
    """
    u = 1.0 / loss**2
    xn = np.exp(-np.outer(alphas, log_n - log_n.mean()))  # (I, n)
    xd = np.exp(-np.outer(betas, log_d - log_d.mean()))  # (J, n)
    I, J = len(alphas), len(betas)  # noqa: E741 - the grid's axes, as in the normal equations
    s1, sl = u.sum(), (u * loss).sum()
    n1, nl, nn = xn @ u, xn @ (u * loss), (xn**2) @ u
    d1, dl, dd = xd @ u, xd @ (u * loss), (xd**2) @ u
    nd = (xn * u) @ xd.T
    gram = np.empty((I, J, 3, 3))
    gram[..., 0, 0] = s1
    gram[..., 0, 1] = gram[..., 1, 0] = n1[:, None]
    gram[..., 0, 2] = gram[..., 2, 0] = d1[None, :]
    gram[..., 1, 1] = nn[:, None]
    gram[..., 2, 2] = dd[None, :]
    gram[..., 1, 2] = gram[..., 2, 1] = nd
    rhs = np.empty((I, J, 3))
    rhs[..., 0] = sl
    rhs[..., 1] = nl[:, None]
    rhs[..., 2] = dl[None, :]
    return gram.reshape(I * J, 3, 3), rhs.reshape(I * J, 3), float((u * loss**2).sum())


def varpro_fit(params, tokens, loss, *, grid: int = 120, max_exponent: float = 2.5) -> dict[str, float]:
    """E, A, B, alpha, beta by variable projection (NNLS inside a search over alpha, beta).

    Args:
        params, tokens, loss: the runs' N, D and final loss (arrays of one length).
        grid: points per exponent axis of the first search; max_exponent: its upper end.
    Returns:
        {"E", "A", "B", "alpha", "beta", "objective"} (relative squared residuals, summed).
    """
    log_n, log_d = np.log(params), np.log(tokens)
    loss = np.asarray(loss, dtype=np.float64)
    axis = np.linspace(max_exponent / grid, max_exponent, grid)
    gram, rhs, const = _grams(log_n, log_d, loss, axis, axis)
    _, obj = _nnls_all(gram, rhs, const)
    i = int(np.argmin(obj))
    alpha, beta, step = axis[i // grid], axis[i % grid], axis[1] - axis[0]
    # Zoom: a 21x21 grid over +-2 steps around the best point, five times finer each round; the
    # projected objective is cheap and vectorized, so this is faster and steadier than a simplex.
    for _ in range(10):
        a_ax = np.clip(alpha + np.linspace(-2, 2, 21) * step, 1e-6, None)
        b_ax = np.clip(beta + np.linspace(-2, 2, 21) * step, 1e-6, None)
        gram, rhs, const = _grams(log_n, log_d, loss, a_ax, b_ax)
        _, obj = _nnls_all(gram, rhs, const)
        j = int(np.argmin(obj))
        alpha, beta, step = a_ax[j // 21], b_ax[j % 21], step / 5.0
    g, r, c0 = _grams(log_n, log_d, loss, np.array([alpha]), np.array([beta]))
    coef, val = _nnls_all(g, r, c0)
    e, a_scaled, b_scaled = coef[0]
    # Undo the feature scaling: A' (N/N_ref)^-alpha = A N^-alpha with N_ref the geometric mean.
    return {"E": float(e), "A": float(a_scaled * np.exp(alpha * log_n.mean())),
            "B": float(b_scaled * np.exp(beta * log_d.mean())), "alpha": float(alpha), "beta": float(beta),
            "objective": float(val[0])}


def varpro_cross_check(table: RunsTable, params: Mapping[str, float]) -> CrossCheck:
    """Compare the Huber fit's exponents with variable projection's; `agrees` False is worth a look."""
    vp = varpro_fit(table.column("params"), table.column("tokens"), table.column("loss"))
    objective = vp.pop("objective")
    a_main = float(chinchilla_allocation(params["A"], params["B"], params["alpha"], params["beta"])["a"])
    a_vp = float(chinchilla_allocation(vp["A"], vp["B"], vp["alpha"], vp["beta"])["a"])
    diffs = {
        "a": a_vp - a_main,
        "alpha_rel": (vp["alpha"] - params["alpha"]) / params["alpha"] if params["alpha"] else np.inf,
        "beta_rel": (vp["beta"] - params["beta"]) / params["beta"] if params["beta"] else np.inf,
    }
    agrees = (abs(diffs["a"]) <= MAX_A_DIFF and abs(diffs["alpha_rel"]) <= MAX_EXPONENT_REL_DIFF
              and abs(diffs["beta_rel"]) <= MAX_EXPONENT_REL_DIFF)
    return CrossCheck(method="varpro-nnls", params=vp, objective=objective, agrees=bool(agrees),
                      differences={k: float(v) for k, v in diffs.items()})
