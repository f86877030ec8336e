"""What keeps a parametric fit's cost from growing as rows x starts x iterations on a large table.

Every L-BFGS evaluation is a pass over all rows for every start, so the published method (L-BFGS from
each of the 4,500 starts, then each of 1,000 bootstrap resamples from 4 warm starts) took 82 s and
0.96 GB on 10,000 rows. Two changes cut the product without moving the answers:

- Screening (tables over `SCREEN_ROWS` rows): every start of the grid is scored by one batched
  evaluation of the objective on all rows, and the `POLISHED` best-scoring ones are minimized. The
  other starts are the ones whose predictions are furthest from the data; on 2,000 synthetic rows the
  best-scoring start itself reached the grid's optimum, as did 1,813 of the 4,500. Smaller tables run
  the whole grid as published.
- Whitened bootstrap: a resample starts at (or near) a minimum of the full-data objective, where that
  surface is badly conditioned (Hessian eigenvalues from 1e-2 to 1e4 on 2,000 rows) and plain L-BFGS
  needed 76 evaluations to meet its tolerances. In coordinates z with x = x* + z M^T, M = L^-T and
  H = L L^T the full-data Hessian at the optimum x*, the same minimum (parameters within 3e-7,
  objectives within 2e-13 relative, measured) takes 8. M and x* travel as data, so one compiled program
  serves every fit.

The start scores and the optimizer's lanes are chunked so that no (starts, rows) array exceeds
`optim.LANE_ELEMENTS` elements.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from scaling.laws.bootstrap import two_level_weights
from scaling.laws.optim import BatchResult, Tolerances, _pad_points, lane_cap, minimize_batched, x64

SCREEN_ROWS = 1000  # tables with more rows have their start grid screened
POLISHED = 64  # best-scoring starts minimized on all rows after screening


@functools.partial(jax.jit, static_argnums=0)
def _values(vg, T, *args):
    return vg(T, *args)[0]  # the gradient is dead code here, and XLA drops it


def score_starts(vg, starts, data: tuple) -> np.ndarray:
    """The objective at every start (inf where it is not finite), in chunks of bounded size."""
    with x64():
        starts = np.asarray(starts, np.float64)
        n = np.shape(data[0])[-1]
        data, w = _pad_points(data, np.ones((1, n)), n)
        chunk = min(1024, lane_cap(w.shape[1]))
        padded = np.concatenate([starts, np.repeat(starts[:1], (-len(starts)) % chunk, axis=0)])
        args = tuple(jnp.asarray(a, jnp.float64) for a in data) + (jnp.asarray(w),)
        f = np.concatenate([np.asarray(_values(vg, jnp.asarray(padded[i:i + chunk]), *args))
                            for i in range(0, len(padded), chunk)])[:len(starts)]
    return np.where(np.isfinite(f), f, np.inf)


def best_scoring(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k lowest scores (ties: the earlier start), in grid order."""
    return np.sort(np.argsort(scores, kind="stable")[:k])


def grid_minimize(vg, grid: np.ndarray, data: tuple, tol: Tolerances) -> tuple[BatchResult, int | None]:
    """L-BFGS from the grid, screened on a large table: (the minimized starts' results, how many were
    polished of the grid, or None when every start was)."""
    n = np.shape(data[0])[-1]
    if n <= SCREEN_ROWS or len(grid) <= POLISHED:
        return minimize_batched(vg, grid, data=data, tol=tol), None
    keep = best_scoring(score_starts(vg, grid, data), POLISHED)
    return minimize_batched(vg, grid[keep], data=data, tol=tol), len(keep)


@functools.lru_cache(maxsize=32)
def whitened(vg):
    """`vg` in coordinates z, x = c + z M^T, with (M, c) after the form's data and before the weights
    (the data's first array stays the one whose last axis is the points)."""

    def vg_z(Z, *args):
        *data, M, c, w = args
        f, g = vg(c + Z @ M.T, *data, w)
        return f, g @ M

    return vg_z


def whitening(vg, x, data: tuple) -> np.ndarray:
    """M = L^-T for the full-data Hessian H = L L^T at x; the identity where H is not safely positive
    definite (there plain coordinates are as good as any)."""
    P = len(x)
    with x64():
        n = np.shape(data[0])[-1]
        args = tuple(jnp.asarray(a, jnp.float64) for a in data) + (jnp.ones((1, n)),)
        H = np.asarray(jax.jacfwd(lambda t: vg(t[None], *args)[1][0])(jnp.asarray(x, jnp.float64)))
    H = 0.5 * (H + H.T)
    if not np.all(np.isfinite(H)):
        return np.eye(P)
    eig = np.linalg.eigvalsh(H)
    if eig[0] <= 1e-12 * eig[-1]:
        return np.eye(P)
    return np.linalg.inv(np.linalg.cholesky(H)).T


def distinct_optima(result: BatchResult, k: int, tol: float = 1e-2) -> np.ndarray:
    """Up to k optima, best first, each differing from the ones before by more than `tol` in some coordinate."""
    order = np.argsort(np.where(np.isfinite(result.fun), result.fun, np.inf))
    chosen: list[np.ndarray] = []
    for i in order:
        if not np.isfinite(result.fun[i]):
            break
        x = result.x[i]
        if all(np.max(np.abs(x - c)) > tol for c in chosen):
            chosen.append(x)
            if len(chosen) == k:
                break
    return np.array(chosen)


def bootstrap_optima(vg, table, data, result, grid, n_resamples, seed, mode, warm_starts, tol) -> np.ndarray:
    """Bootstrap optima (R, P), resampling points and then seeds within them (`two_level_weights`).

    Warm starts are sound because a resample reweights the same points: its objective is a small
    perturbation of the full-data one, so its global minimum lies in the basin of the full-data optimum
    or of one of the other low optima the full grid found. Starting each resample there finds the same
    minimum the full grid would, at a few hundredths of the cost; "grid" mode checks that claim (and
    runs in plain coordinates, as published).
    """
    if n_resamples <= 0:
        return np.zeros((0, result.x.shape[1]))
    codes, point_of_run = table.run_points()
    weights = two_level_weights(codes, point_of_run, n_resamples, seed, dtype=np.uint8)
    if mode == "grid":
        starts, fun, args = grid, vg, data
    else:
        starts = distinct_optima(result, warm_starts)
        c = starts[0]
        M = whitening(vg, c, data)
        starts = (starts - c) @ np.linalg.inv(M.T)
        fun, args = whitened(vg), (*data, M, c)
    k = len(starts)
    rows = np.repeat(np.arange(n_resamples), k)
    res = minimize_batched(fun, np.tile(starts, (n_resamples, 1)), data=args, weights=weights, weight_rows=rows,
                           tol=tol)
    x = res.x if mode == "grid" else c + res.x @ M.T
    f = np.where(np.isfinite(res.fun), res.fun, np.inf).reshape(n_resamples, k)
    pick = np.argmin(f, axis=1)
    return x.reshape(n_resamples, k, -1)[np.arange(n_resamples), pick]
