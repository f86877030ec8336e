"""Law forms: log-space predictions, parameter names, start grids and compute-optimal allocation.

Every form predicts log L from log features, so that all of them share one objective (Huber on log
residuals, summed) and one optimizer. Optimizer coordinates are chosen so that the surface is smooth and
unconstrained (log-coefficients, exponents); `natural` maps them to the figures papers print.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from scaling.laws.optim import autodiff_value_and_grad, huber, x64

# Muennighoff et al. 2023's fitted decay constants, used to seed the data-constrained fit.
R_D_STAR = 15.4
R_N_STAR = 5.3


@dataclass(frozen=True)
class LawForm:
    """One functional form. `features` name the rows of X (log params, log tokens, ...)."""

    name: str
    title: str
    theta_names: tuple[str, ...]
    param_names: tuple[str, ...]
    features: tuple[str, ...]
    log_predict: Callable  # (T (B, P), X (F, n)) -> log L (B, n), jax-traceable
    natural: Callable  # theta array (..., P) -> dict name -> array (numpy)
    starts: Callable  # () -> (S, P) start grid in optimizer coordinates
    min_points: int
    allocates: bool  # has a compute-optimal N_opt(C), D_opt(C)
    objective: Callable = None  # (T, X, log_loss, delta, w (B, n)) -> (B,), set by _finish
    value_and_grad: Callable = None  # same arguments -> ((B,), (B, P)), set by _finish

    def predict(self, theta, X) -> np.ndarray:
        """Loss (not log loss) at features X for one parameter vector, numpy in and out."""
        with x64():
            T = jnp.asarray(np.atleast_2d(theta), jnp.float64)
            return np.exp(np.asarray(self.log_predict(T, jnp.asarray(X, jnp.float64))))[0]


def _make_objective(log_predict):
    def objective(T, X, log_loss, delta, w):
        # Summed, not averaged: averaging shrinks gradients by 1/n and makes L-BFGS stop early.
        return jnp.sum(w * huber(log_predict(T, X) - log_loss, delta), axis=1)

    return objective


def _finish(form: LawForm, value_and_grad: Callable | None = None) -> LawForm:
    objective = _make_objective(form.log_predict)
    object.__setattr__(form, "objective", objective)
    object.__setattr__(form, "value_and_grad", value_and_grad or autodiff_value_and_grad(objective))
    return form


def _col(T, i):
    return T[:, i:i + 1]


# --- Chinchilla: L = E + A/N^alpha + B/D^beta ------------------------------------------------------

def _chinchilla_log(T, X):
    a, b, e, alpha, beta = (_col(T, i) for i in range(5))
    log_n, log_d = X  # unpacked, not indexed: JAX clamps an out-of-range index instead of failing
    t1, t2 = a - alpha * log_n, b - beta * log_d
    return logsumexp(jnp.stack([t1, t2, jnp.broadcast_to(e, t1.shape)]), axis=0)


def _chinchilla_value_and_grad(T, X, log_loss, delta, w):
    """Closed-form gradient of the summed Huber objective: the hot path of the 4,500-start grid.

    Autodiff through logsumexp makes XLA recompute the exponentials inside every reduction; writing the
    softmax weights once and reducing them is several times faster on CPU.
    """
    a, b, e, alpha, beta = (_col(T, i) for i in range(5))
    log_n, log_d = X
    # exp(700) is finite in float64; the clamp only matters for wild line-search trials.
    e1 = jnp.exp(jnp.minimum(a - alpha * log_n, 700.0))
    e2 = jnp.exp(jnp.minimum(b - beta * log_d, 700.0))
    e3 = jnp.exp(jnp.minimum(e, 700.0))
    total = e1 + e2 + e3
    r = jnp.log(total) - log_loss
    f = jnp.sum(w * huber(r, delta), axis=1)
    dr = w * jnp.clip(r, -delta, delta) / total
    g1, g2 = dr * e1, dr * e2
    grad = jnp.stack([g1.sum(1), g2.sum(1), dr.sum(1) * e3[:, 0], -(g1 @ log_n), -(g2 @ log_d)], axis=1)
    return f, grad


def _chinchilla_natural(theta):
    t = np.asarray(theta, dtype=np.float64)
    return {"E": np.exp(t[..., 2]), "A": np.exp(t[..., 0]), "B": np.exp(t[..., 1]),
            "alpha": t[..., 3], "beta": t[..., 4]}


def hoffmann_grid() -> np.ndarray:
    """The 4,500 starts of Hoffmann et al. 2022 in (a, b, e, alpha, beta) order."""
    ab = np.arange(0.0, 25.0 + 1e-9, 5.0)
    e = np.arange(-1.0, 1.0 + 1e-9, 0.5)
    ex = np.arange(0.0, 2.0 + 1e-9, 0.5)
    return np.array(list(itertools.product(ab, ab, e, ex, ex)), dtype=np.float64)


CHINCHILLA = _finish(LawForm(
    name="chinchilla", title="L(N, D) = E + A/N^alpha + B/D^beta",
    theta_names=("a", "b", "e", "alpha", "beta"), param_names=("E", "A", "B", "alpha", "beta"),
    features=("log_params", "log_tokens"), log_predict=_chinchilla_log, natural=_chinchilla_natural,
    starts=hoffmann_grid, min_points=6, allocates=True), _chinchilla_value_and_grad)


# --- Kaplan et al. 2020 ---------------------------------------------------------------------------
# L(N) = (N_c/N)^alpha_N is linear in log space: log L = c - alpha_N log N with c = alpha_N log N_c.
# Fitting (c, alpha_N) keeps the problem convex; N_c = exp(c / alpha_N) is reported.

def _kaplan_1d_log(T, X):
    (log_x,) = X
    return _col(T, 0) - _col(T, 1) * log_x


def _kaplan_1d_natural(scale_name, alpha_name):
    def natural(theta):
        t = np.asarray(theta, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return {scale_name: np.exp(t[..., 0] / t[..., 1]), alpha_name: t[..., 1]}
    return natural


def _kaplan_1d_starts():
    return np.array(list(itertools.product([0.0, 1.0, 2.0, 5.0], [0.01, 0.05, 0.1, 0.3])))


KAPLAN_N = _finish(LawForm(
    name="kaplan-n", title="L(N) = (N_c/N)^alpha_N",
    theta_names=("c", "alpha_N"), param_names=("N_c", "alpha_N"), features=("log_params",),
    log_predict=_kaplan_1d_log, natural=_kaplan_1d_natural("N_c", "alpha_N"),
    starts=_kaplan_1d_starts, min_points=3, allocates=False))

KAPLAN_D = _finish(LawForm(
    name="kaplan-d", title="L(D) = (D_c/D)^alpha_D",
    theta_names=("c", "alpha_D"), param_names=("D_c", "alpha_D"), features=("log_tokens",),
    log_predict=_kaplan_1d_log, natural=_kaplan_1d_natural("D_c", "alpha_D"),
    starts=_kaplan_1d_starts, min_points=3, allocates=False))


def _kaplan_joint_log(T, X):
    log_nc, log_dc, alpha_n, alpha_d = (_col(T, i) for i in range(4))
    p = alpha_n / alpha_d
    log_n, log_d = X
    terms = jnp.stack([p * (log_nc - log_n), log_dc - log_d])
    return alpha_d * logsumexp(terms, axis=0)


def _kaplan_joint_natural(theta):
    t = np.asarray(theta, dtype=np.float64)
    return {"N_c": np.exp(t[..., 0]), "D_c": np.exp(t[..., 1]), "alpha_N": t[..., 2], "alpha_D": t[..., 3]}


def _kaplan_joint_starts():
    logs = np.log([1e10, 1e13, 1e16])
    alphas = [0.05, 0.1, 0.2, 0.4]
    return np.array(list(itertools.product(logs, logs, alphas, alphas)))


KAPLAN_JOINT = _finish(LawForm(
    name="kaplan-joint", title="L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D",
    theta_names=("log_N_c", "log_D_c", "alpha_N", "alpha_D"), param_names=("N_c", "D_c", "alpha_N", "alpha_D"),
    features=("log_params", "log_tokens"), log_predict=_kaplan_joint_log, natural=_kaplan_joint_natural,
    starts=_kaplan_joint_starts, min_points=5, allocates=True))


# --- Compute frontier: L(C) = E + (C0/C)^gamma, fitted as LSE(e, c - gamma log C), C0 = exp(c/gamma) --

def _compute_log(T, X):
    e, c, gamma = (_col(T, i) for i in range(3))
    (log_c,) = X
    t = c - gamma * log_c
    return logsumexp(jnp.stack([jnp.broadcast_to(e, t.shape), t]), axis=0)


def _compute_natural(theta):
    t = np.asarray(theta, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return {"E": np.exp(t[..., 0]), "C0": np.exp(t[..., 1] / t[..., 2]), "gamma": t[..., 2]}


def _compute_starts():
    e = np.arange(-1.0, 1.0 + 1e-9, 0.5)
    c = np.arange(0.0, 25.0 + 1e-9, 5.0)
    g = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]
    return np.array(list(itertools.product(e, c, g)))


COMPUTE = _finish(LawForm(
    name="compute", title="L(C) = E + (C0/C)^gamma",
    theta_names=("e", "c", "gamma"), param_names=("E", "C0", "gamma"), features=("log_flops",),
    log_predict=_compute_log, natural=_compute_natural, starts=_compute_starts, min_points=4,
    allocates=False))


# --- Data-constrained (Muennighoff et al. 2023) -----------------------------------------------------
# L = E + A/N'^alpha + B/D'^beta with effective data D' = U_D + U_D R_D* (1 - exp(-R_D/R_D*)),
# R_D = D/U_D - 1 repeated epochs, and effective parameters N' = U_N + U_N R_N* (1 - exp(-R_N/R_N*)),
# U_N = min(N, N_opt(U_D)), R_N = N/U_N - 1, N_opt(U_D) the compute-optimal size for U_D tokens.

def _effective(u, log_r_star, excess):
    r_star = jnp.exp(log_r_star)
    return u + u * r_star * (1.0 - jnp.exp(-excess / r_star))


def _data_constrained_log(T, X):
    a, b, e, alpha, beta, log_rd, log_rn = (_col(T, i) for i in range(7))
    log_n, log_d, log_u = X
    u_d = jnp.exp(log_u)
    d_eff = _effective(u_d, log_rd, jnp.maximum(jnp.exp(log_d - log_u) - 1.0, 0.0))
    # log N_opt for D = U_D under the law's own allocation; guarded where alpha, beta are not positive.
    ok = (alpha > 0) & (beta > 0)
    sa, sb = jnp.where(ok, alpha, 1.0), jnp.where(ok, beta, 1.0)
    log_g = (jnp.log(sa) + a - jnp.log(sb) - b) / (sa + sb)
    log_n_opt = jnp.where(ok, log_g + (sb / sa) * (log_u + log_g), jnp.inf)
    log_u_n = jnp.minimum(log_n, log_n_opt)
    n_eff = _effective(jnp.exp(log_u_n), log_rn, jnp.exp(log_n - log_u_n) - 1.0)
    t1, t2 = a - alpha * jnp.log(n_eff), b - beta * jnp.log(d_eff)
    return logsumexp(jnp.stack([t1, t2, jnp.broadcast_to(e, t1.shape)]), axis=0)


def _data_constrained_natural(theta):
    t = np.asarray(theta, dtype=np.float64)
    out = _chinchilla_natural(t[..., :5])
    out["R_D_star"] = np.exp(t[..., 5])
    out["R_N_star"] = np.exp(t[..., 6])
    return out


def _data_constrained_starts():
    g = hoffmann_grid()
    seeds = np.tile([np.log(R_D_STAR), np.log(R_N_STAR)], (len(g), 1))
    return np.hstack([g, seeds])


DATA_CONSTRAINED = _finish(LawForm(
    name="data-constrained", title="L = E + A/N'^alpha + B/D'^beta (repeated data, Muennighoff et al.)",
    theta_names=("a", "b", "e", "alpha", "beta", "log_R_D_star", "log_R_N_star"),
    param_names=("E", "A", "B", "alpha", "beta", "R_D_star", "R_N_star"),
    features=("log_params", "log_tokens", "log_unique_tokens"), log_predict=_data_constrained_log,
    natural=_data_constrained_natural, starts=_data_constrained_starts, min_points=8, allocates=True))


FORMS: dict[str, LawForm] = {f.name: f for f in (CHINCHILLA, KAPLAN_N, KAPLAN_D, KAPLAN_JOINT, COMPUTE,
                                                 DATA_CONSTRAINED)}


# --- Compute-optimal allocation under C = 6 N D ------------------------------------------------------

def allocation_exponents(form: LawForm, theta) -> dict[str, np.ndarray]:
    """G, a, b with N_opt = G (C/6)^a and D_opt = (C/6)^b / G, vectorized over leading axes of theta.

    Chinchilla (and the data-constrained form with fresh data): G = (alpha A/(beta B))^(1/(alpha+beta)),
    a = beta/(alpha+beta). Kaplan's joint form: minimizing (N_c/N)^p + D_c N/(C/6) with p = alpha_N/alpha_D
    gives G = (p N_c^p / D_c)^(1/(p+1)), a = 1/(p+1).
    """
    t = np.asarray(theta, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if form.name in ("chinchilla", "data-constrained"):
            return _chinchilla_allocation(t[..., 0], t[..., 1], t[..., 3], t[..., 4])
        if form.name == "kaplan-joint":
            log_nc, log_dc, alpha_n, alpha_d = t[..., 0], t[..., 1], t[..., 2], t[..., 3]
            p = alpha_n / alpha_d
            log_g = (np.log(p) + p * log_nc - log_dc) / (p + 1.0)
            return {"G": np.exp(log_g), "a": 1.0 / (p + 1.0), "b": p / (p + 1.0)}
    raise ValueError(f"{form.name} has no compute-optimal allocation")


def chinchilla_allocation(A, B, alpha, beta) -> dict[str, np.ndarray]:
    """G, a, b of L = E + A/N^alpha + B/D^beta under C = 6ND: N_opt = G (C/6)^a, D_opt = (C/6)^b / G,
    a = beta/(alpha+beta), b = alpha/(alpha+beta), G = (alpha A/(beta B))^(1/(alpha+beta)).

    Args:
        A, B, alpha, beta: the law's parameters (scalars or arrays of one shape).
    Returns:
        {"G", "a", "b"}, arrays of the inputs' shape.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _chinchilla_allocation(np.log(np.asarray(A, dtype=np.float64)), np.log(np.asarray(B, dtype=np.float64)),
                                      np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64))


def _chinchilla_allocation(log_a, log_b, alpha, beta) -> dict[str, np.ndarray]:
    # In logs: A and B of bootstrap resamples can be large enough to overflow their ratio.
    s = alpha + beta
    log_g = (np.log(alpha) + log_a - np.log(beta) - log_b) / s
    return {"G": np.exp(log_g), "a": beta / s, "b": alpha / s}


def features_for(form: LawForm, params, tokens, flops, unique_tokens=None) -> np.ndarray:
    """Stack the log features a form reads, in its order."""
    cols = {"log_params": params, "log_tokens": tokens, "log_flops": flops,
            "log_unique_tokens": unique_tokens if unique_tokens is not None else tokens}
    return np.log(np.vstack([np.asarray(cols[f], dtype=np.float64) for f in form.features]))
