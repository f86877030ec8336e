"""One Chinchilla law per group with the irreducible loss E shared across the groups.

Two recipes trained on one corpus with one tokenizer should approach one entropy floor: what a recipe
changes is how fast the loss falls, not the floor it falls to. Fitting E per group lets each group trade
E against A, B and the exponents (the four are strongly correlated in a Chinchilla fit), so two groups
can differ in E only because their samples of sizes differ. The joint fit holds one E and gives every
group its own A, B, alpha, beta: 1 + 4G parameters against 5G for the separate fits.

The objective is the separate fits' own (Huber on log residuals, summed), over all groups' points at
once; a one-hot row per group picks each point's parameters. Starts are the separate fits' optima with
E set to each group's E in turn (the joint optimum lies between them), and bootstrap resamples draw
points (with all their seeds) within each group, warm-started from the joint optimum.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from scaling.errors import UsageError
from scaling.laws.bootstrap import interval, two_level_weights
from scaling.laws.forms import _make_objective
from scaling.laws.optim import Tolerances, autodiff_value_and_grad, minimize_batched
from scaling.laws.parametric import DEFAULT_HUBER_DELTA
from scaling.laws.table import RunsTable

PER_GROUP = ("a", "b", "alpha", "beta")  # optimizer coordinates per group; a = ln A, b = ln B


def _shared_e_log(T, X):
    """log L for theta (B, 1 + 4G) = (e, a_1..a_G, b_1..b_G, alpha_1..G, beta_1..G) at X (2 + G, n):
    log N, log D, then one one-hot row per group."""
    groups = X.shape[0] - 2
    log_n, log_d, onehot = X[0], X[1], X[2:]
    a, b, alpha, beta = (T[:, 1 + k * groups:1 + (k + 1) * groups] @ onehot for k in range(4))
    t1, t2 = a - alpha * log_n, b - beta * log_d
    return logsumexp(jnp.stack([t1, t2, jnp.broadcast_to(T[:, 0:1], t1.shape)]), axis=0)


_shared_e_value_and_grad = autodiff_value_and_grad(_make_objective(_shared_e_log))


def joint_features(parts: Sequence[RunsTable]) -> np.ndarray:
    """X (2 + G, n) for the groups' rows in order: log N, log D and a one-hot row per group."""
    n = np.concatenate([p.column("params") for p in parts])
    d = np.concatenate([p.column("tokens") for p in parts])
    owner = np.concatenate([np.full(p.frame.shape[0], g) for g, p in enumerate(parts)])
    onehot = (owner[None, :] == np.arange(len(parts))[:, None]).astype(np.float64)
    return np.vstack([np.log(n), np.log(d), onehot])


def group_theta(theta: np.ndarray, g: int, groups: int) -> np.ndarray:
    """Group g's Chinchilla parameters (a, b, e, alpha, beta) (..., 5) from joint ones (..., 1 + 4G)."""
    t = np.asarray(theta, dtype=np.float64)
    pick = lambda k: t[..., 1 + k * groups + g]  # noqa: E731
    return np.stack([pick(0), pick(1), t[..., 0], pick(2), pick(3)], axis=-1)


def starts_from(separate: Sequence[np.ndarray]) -> np.ndarray:
    """Joint starts from each group's own Chinchilla optimum (a, b, e, alpha, beta): E at each group's
    E in turn and at their mean, the rest as fitted alone."""
    sep = np.asarray(separate, dtype=np.float64)
    rest = np.concatenate([sep[:, 0], sep[:, 1], sep[:, 3], sep[:, 4]])
    es = list(sep[:, 2]) + [float(np.mean(sep[:, 2]))]
    return np.array([np.concatenate([[e], rest]) for e in es])


@dataclass(frozen=True)
class SharedFit:
    """The joint fit: one E, each group's A, B, alpha, beta, in optimizer coordinates and natural units."""

    groups: tuple[str, ...]
    theta: np.ndarray = field(repr=False)  # (1 + 4G,)
    samples: np.ndarray = field(repr=False)  # (R, 1 + 4G) bootstrap optima
    objective: float
    E: float
    E_ci95: tuple[float, float] | None

    def of(self, group: str) -> np.ndarray:
        """(1 + R, 5): the group's Chinchilla parameters at the optimum, then per resample."""
        g, k = self.groups.index(group), len(self.groups)
        return group_theta(np.vstack([self.theta[None], self.samples]), g, k)

    def params(self, group: str) -> dict[str, float]:
        a, b, e, alpha, beta = self.of(group)[0]
        return {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)), "alpha": float(alpha),
                "beta": float(beta)}

    def predict(self, group: str, params, tokens) -> np.ndarray:
        a, b, e, alpha, beta = self.of(group)[0]
        n, d = np.asarray(params, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
        return np.exp(e) + np.exp(a) * n**-alpha + np.exp(b) * d**-beta

    def to_json(self) -> dict:
        return {"E": self.E, "E_ci95": None if self.E_ci95 is None else list(self.E_ci95),
                "objective": self.objective, "n_resamples": len(self.samples),
                "groups": {g: self.params(g) for g in self.groups}}


def fit_shared_e(parts: Mapping[str, RunsTable], separate: Mapping[str, np.ndarray], *, bootstrap: int = 0,
                 seed: int = 0, huber_delta: float = DEFAULT_HUBER_DELTA,
                 tol: Tolerances = Tolerances()) -> SharedFit:
    """Fit every group at once with one E.

    Args:
        parts: group -> its runs table; separate: group -> its own Chinchilla optimum (a, b, e, alpha, beta).
        bootstrap: resamples of points within each group (with all their seeds); seed: theirs.
    Returns:
        SharedFit with E's 95% interval from the resamples (None without).
    Raises:
        UsageError: no start reached a finite objective.
    """
    names = tuple(parts)
    tables = [parts[g] for g in names]
    X = joint_features(tables)
    y = np.log(np.concatenate([t.column("loss") for t in tables]))
    data = (X, y, huber_delta)
    result = minimize_batched(_shared_e_value_and_grad, starts_from([separate[g] for g in names]), data=data, tol=tol)
    best = int(np.argmin(np.where(np.isfinite(result.fun), result.fun, np.inf)))
    if not np.isfinite(result.fun[best]):
        raise UsageError("the shared-E fit reached no finite objective; check the groups' values")
    theta = result.x[best]
    samples = np.zeros((0, len(theta)))
    if bootstrap > 0:
        weights = _stratified_weights(tables, bootstrap, seed)
        res = minimize_batched(_shared_e_value_and_grad, np.tile(theta, (bootstrap, 1)), data=data, weights=weights,
                               weight_rows=np.arange(bootstrap), tol=tol)
        samples = np.where(np.isfinite(res.fun)[:, None], res.x, np.nan)
    ci = interval(np.exp(samples[:, 0])) if len(samples) > 1 else None
    return SharedFit(groups=names, theta=theta, samples=samples, objective=float(result.fun[best]),
                     E=float(np.exp(theta[0])), E_ci95=ci)


def _stratified_weights(tables: Sequence[RunsTable], n_resamples: int, seed: int) -> np.ndarray:
    """Two-level bootstrap weights over the groups' rows, points drawn within their own group (each
    group keeps its number of points, as its separate fit's resamples do)."""
    codes, point_of_run, strata = [], [], []
    runs_before = points_before = 0
    for g, t in enumerate(tables):
        c, p = t.run_points()
        codes.append(c + runs_before)
        point_of_run.append(p + points_before)
        n_points = int(p.max()) + 1 if len(p) else 0
        strata.append(np.full(n_points, g))
        runs_before += len(p)
        points_before += n_points
    return two_level_weights(np.concatenate(codes), np.concatenate(point_of_run), n_resamples, seed,
                             strata=np.concatenate(strata))
