"""Batched L-BFGS in JAX: many independent starts of one small problem, optimized at once.

Each start is a lane of (B, P) arrays. The line search runs per lane, asynchronously: every step makes
exactly one objective-and-gradient evaluation for all lanes, and each lane uses it either to accept a
step (then it updates its L-BFGS memory and picks a new direction) or to move its own line-search
bracket. No lane waits for another, so the cost is the sum of the lanes' evaluations, not the slowest
lane's count times the batch. Starts wait in a queue: a lane whose start finished takes the next one
between chunks of steps, and the last few slow starts move to a smaller batch, so they do not keep
the whole grid busy. Bootstrap resamples use the same queue, each problem carrying its own weights.

Everything runs in float64 (see `x64`): a Huber loss with delta = 1e-3 on log residuals sums to
objectives of order 1e-3, and the differences between starts that decide the best fit are below
float32's resolution.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def x64():
    """Scoped float64: the fitter must not flip the process-wide default that the trainer relies on."""
    return jax.enable_x64(True)


def huber(r, delta):
    """Huber's loss with threshold `delta` (0.5 r^2 inside, linear outside), as Hoffmann et al. use it."""
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


@dataclass(frozen=True)
class Tolerances:
    """Stopping rules, tighter than scipy's defaults on purpose.

    A summed Huber objective with delta = 1e-3 is small (about delta * sum |r|), so scipy's absolute
    defaults (ftol scaled by max(|f|, 1), gtol = 1e-5) can stop short of the optimum; these are relative.
    """

    maxiter: int = 1000  # accepted steps per start
    ftol: float = 1e-13  # relative decrease of f over one accepted step
    gtol: float = 1e-10  # max |gradient| relative to max(|f|, 1e-12)
    xtol: float = 1e-13  # max |step| relative to 1 + max |x|
    memory: int = 10
    max_linesearch: int = 30
    chunk: int = 16  # steps between refills of finished lanes


@dataclass(frozen=True)
class BatchResult:
    """Final points of every start (numpy arrays, leading axis = start)."""

    x: np.ndarray  # (B, P)
    fun: np.ndarray  # (B,)
    n_iter: np.ndarray  # (B,) accepted steps
    n_eval: np.ndarray  # (B,) objective evaluations
    converged: np.ndarray  # (B,) a stopping rule fired (not maxiter, not a failed line search)

    def best(self) -> int:
        """Index of the lowest finite objective."""
        f = np.where(np.isfinite(self.fun), self.fun, np.inf)
        return int(np.argmin(f))


class _State(NamedTuple):
    x: jax.Array
    f: jax.Array
    g: jax.Array
    d: jax.Array
    gd: jax.Array
    t: jax.Array
    lo: jax.Array
    hi: jax.Array
    x_lo: jax.Array
    f_lo: jax.Array
    g_lo: jax.Array
    n_try: jax.Array
    S: jax.Array
    Y: jax.Array
    rho: jax.Array
    k: jax.Array
    n_eval: jax.Array
    done: jax.Array
    conv: jax.Array
    fresh: jax.Array  # the lane holds a new start whose f and gradient are not known yet
    w: jax.Array  # (L, n) observation weights of the lane's problem


def _bdot(a, b):
    return jnp.sum(a * b, axis=-1)


def _two_loop(g, S, Y, rho):
    """-H g for every lane, from shift-register memories (oldest first; empty slots have rho = 0).

    Rolled loops rather than unrolled Python ones: the compiled program is smaller and XLA compiles
    it in about half the time, which matters more here than the loop overhead.
    """
    m = S.shape[1]

    def newest_first(j, carry):
        q, alphas = carry
        i = m - 1 - j
        a = rho[:, i] * _bdot(S[:, i], q)
        return q - a[:, None] * Y[:, i], alphas.at[:, i].set(a)

    q, alphas = jax.lax.fori_loop(0, m, newest_first, (g, jnp.zeros_like(rho)))
    sy, yy = _bdot(S[:, -1], Y[:, -1]), _bdot(Y[:, -1], Y[:, -1])
    gamma = jnp.where((rho[:, -1] > 0) & (yy > 0), sy / jnp.where(yy > 0, yy, 1.0), 1.0)

    def oldest_first(i, r):
        b = rho[:, i] * _bdot(Y[:, i], r)
        return r + (alphas[:, i] - b)[:, None] * S[:, i]

    return -jax.lax.fori_loop(0, m, oldest_first, gamma[:, None] * q)


def _direction(g, S, Y, rho):
    d = _two_loop(g, S, Y, rho)
    descent = _bdot(g, d) < 0
    d = jnp.where(descent[:, None], d, -g)
    # With no memory the scale of -g is arbitrary: start with a unit-length step in parameter space.
    fresh = (rho[:, -1] == 0) | ~descent
    t0 = jnp.where(fresh, jnp.minimum(1.0, 1.0 / jnp.maximum(jnp.linalg.norm(d, axis=-1), 1e-300)), 1.0)
    return d, _bdot(g, d), t0


def _step(vg, data, tol: Tolerances, s: _State) -> _State:
    c1, c2 = 1e-4, 0.9
    live = ~s.done
    xt = s.x + s.t[:, None] * s.d
    ft, gt = vg(xt, *data, s.w)
    finite = jnp.isfinite(ft) & jnp.all(jnp.isfinite(gt), axis=-1)
    started = live & s.fresh & finite  # a new start's first evaluation (t = 0, so xt = x)
    broken = live & s.fresh & ~finite
    search = live & ~s.fresh
    armijo = finite & (ft <= s.f + c1 * s.t * s.gd)
    curv = _bdot(gt, s.d) >= c2 * s.gd
    ok = search & armijo & curv

    # Weak Wolfe by bisection/expansion (Lewis & Overton): it guarantees s.y > 0 for the memory and
    # tolerates the kinks of the Huber loss, where interpolating line searches misjudge the step.
    hi = jnp.where(armijo, s.hi, s.t)
    lo = jnp.where(armijo & ~curv, s.t, s.lo)
    t_next = jnp.where(jnp.isfinite(hi), 0.5 * (lo + hi), 2.0 * lo)
    better = search & armijo & (ft < s.f_lo)
    x_lo = jnp.where(better[:, None], xt, s.x_lo)
    f_lo = jnp.where(better, ft, s.f_lo)
    g_lo = jnp.where(better[:, None], gt, s.g_lo)
    n_try = s.n_try + 1
    exhausted = search & ~ok & (n_try >= tol.max_linesearch)
    # A step that met only Armijo still lowers f: take it rather than give up (the memory skips it
    # unless its curvature is positive).
    fallback = exhausted & (f_lo < s.f)
    failed = exhausted & ~fallback
    accept = ok | fallback
    xa = jnp.where(ok[:, None], xt, x_lo)
    fa = jnp.where(ok, ft, f_lo)
    ga = jnp.where(ok[:, None], gt, g_lo)

    sv, yv = xa - s.x, ga - s.g
    sy = _bdot(sv, yv)
    upd = accept & (sy > 1e-300)
    S = jnp.where(upd[:, None, None], jnp.concatenate([s.S[:, 1:], sv[:, None]], axis=1), s.S)
    Y = jnp.where(upd[:, None, None], jnp.concatenate([s.Y[:, 1:], yv[:, None]], axis=1), s.Y)
    rho_new = jnp.concatenate([s.rho[:, 1:], (1.0 / jnp.where(upd, sy, 1.0))[:, None]], axis=1)
    rho = jnp.where(upd[:, None], rho_new, s.rho)

    moved = accept | started
    x = jnp.where(accept[:, None], xa, s.x)
    f = jnp.where(accept, fa, jnp.where(started, ft, s.f))
    g = jnp.where(accept[:, None], ga, jnp.where(started[:, None], gt, s.g))
    fscale = jnp.maximum(jnp.maximum(jnp.abs(s.f), jnp.abs(f)), 1e-300)
    small_f = accept & ((s.f - f) <= tol.ftol * fscale)
    small_x = accept & (jnp.max(jnp.abs(x - s.x), axis=-1) <= tol.xtol * (1.0 + jnp.max(jnp.abs(s.x), axis=-1)))
    small_g = moved & (jnp.max(jnp.abs(g), axis=-1) <= tol.gtol * jnp.maximum(jnp.abs(f), 1e-12))
    conv = small_f | small_x | small_g
    k = s.k + accept.astype(jnp.int32)

    d_new, gd_new, t0 = _direction(g, S, Y, rho)
    return _State(
        x=x, f=f, g=g,
        d=jnp.where(moved[:, None], d_new, s.d), gd=jnp.where(moved, gd_new, s.gd),
        t=jnp.where(moved, t0, t_next),
        lo=jnp.where(moved, 0.0, lo), hi=jnp.where(moved, jnp.inf, hi),
        x_lo=x_lo, f_lo=jnp.where(moved, jnp.inf, f_lo), g_lo=g_lo,
        n_try=jnp.where(moved, 0, n_try), S=S, Y=Y, rho=rho, k=k,
        n_eval=s.n_eval + live.astype(jnp.int32),
        done=s.done | conv | failed | broken | (k >= tol.maxiter), conv=s.conv | conv,
        fresh=s.fresh & ~live, w=s.w)


@functools.partial(jax.jit, static_argnames=("L", "P", "n", "memory"))
def _empty_state(L: int, P: int, n: int, memory: int) -> _State:
    zf = jnp.zeros((L,), jnp.float64)
    zi = jnp.zeros((L,), jnp.int32)
    zp = jnp.zeros((L, P), jnp.float64)
    zm = jnp.zeros((L, memory, P), jnp.float64)
    return _State(x=zp, f=zf + jnp.inf, g=zp, d=zp, gd=zf, t=zf, lo=zf, hi=zf + jnp.inf, x_lo=zp,
                  f_lo=zf + jnp.inf, g_lo=zp, n_try=zi, S=zm, Y=zm, rho=jnp.zeros((L, memory), jnp.float64),
                  k=zi, n_eval=zi, done=jnp.ones((L,), bool), conv=jnp.zeros((L,), bool),
                  fresh=jnp.zeros((L,), bool), w=jnp.ones((L, n), jnp.float64))


@jax.jit
def _load(s: _State, mask, x0, rows, table) -> _State:
    """Put new starts into the lanes under `mask`; their first step evaluates them (t = 0).

    Each lane carries its own weight row (gathered here from the table), so the compiled step does not
    depend on how many resamples the table holds.
    """
    m1, m2, m3 = mask[:, None], mask[:, None, None], mask
    z = jnp.zeros_like
    return s._replace(
        x=jnp.where(m1, x0, s.x), f=jnp.where(m3, jnp.inf, s.f), d=jnp.where(m1, 0.0, s.d),
        gd=jnp.where(m3, 0.0, s.gd), t=jnp.where(m3, 0.0, s.t), lo=jnp.where(m3, 0.0, s.lo),
        hi=jnp.where(m3, jnp.inf, s.hi), f_lo=jnp.where(m3, jnp.inf, s.f_lo), n_try=jnp.where(m3, 0, s.n_try),
        S=jnp.where(m2, z(s.S), s.S), Y=jnp.where(m2, z(s.Y), s.Y), rho=jnp.where(m1, 0.0, s.rho),
        k=jnp.where(m3, 0, s.k), n_eval=jnp.where(m3, 0, s.n_eval), done=jnp.where(m3, False, s.done),
        conv=jnp.where(m3, False, s.conv), fresh=jnp.where(m3, True, s.fresh),
        w=jnp.where(m1, table[rows].astype(s.w.dtype), s.w))


@jax.jit
def _take(state: _State, pick) -> _State:
    return jax.tree.map(lambda a: a[pick], state)


@functools.partial(jax.jit, static_argnames=("vg", "tol"))
def _advance(vg, tol, state, *data):
    return jax.lax.fori_loop(0, tol.chunk, lambda _, s: _step(vg, data, tol, s), state)


def lane_count(n_problems: int, cap: int = 1024) -> int:
    """Lanes for a queue of problems: a power of two (few compiled shapes), at most `cap`."""
    return min(cap, max(64, 1 << max(0, (n_problems - 1).bit_length())))


LANE_ELEMENTS = 1 << 22  # lanes x points of one (L, n) array of a step: 32 MB in float64


def lane_cap(n_points: int) -> int:
    """The most lanes whose (lanes, points) arrays stay within `LANE_ELEMENTS` (a power of two, at least 64).

    A step holds several such arrays (the lanes' weights, exponentials, residuals): at 100,000 points
    1,024 lanes made each 800 MB, so a large table runs fewer lanes at a time instead.
    """
    return max(64, 1 << ((LANE_ELEMENTS // max(n_points, 1)).bit_length() - 1))


def minimize_batched(
    vg: Callable,
    x0,
    data: tuple = (),
    weights=None,
    weight_rows=None,
    tol: Tolerances = Tolerances(),
    lanes: int = 1024,
) -> BatchResult:
    """Minimize every problem in a queue of starts, `lanes` of them at a time.

    `vg(X, *data, W) -> (f, grad)` evaluates a (L, P) batch of points; `W` (L, n) holds each lane's
    observation weights. It must be a hashable module-level function (it keys the compiled program).
    Problem i starts at `x0[i]` and uses row `weight_rows[i]` of the `weights` table (default: one row
    of ones), which is how bootstrap resamples share the data without copying it. The table keeps its
    dtype (bootstrap counts fit in uint8: 100 MB for 1,000 resamples of 100,000 points, not 800); a
    lane's row is made float64 when the lane takes it.

    Lanes whose problem finished take the next one from the queue between chunks of steps; when the
    queue is empty and few lanes are left, they move once to a batch an eighth the size, so that the
    slowest starts do not keep a thousand lanes busy (once: every new batch size is a new compile).
    """
    with x64():
        x0 = np.asarray(x0, np.float64)
        Q, P = x0.shape
        n = np.shape(data[0])[-1] if data else 1
        weights = np.ones((1, n)) if weights is None else np.asarray(weights)
        if weights.dtype not in (np.uint8, np.float32, np.float64):
            weights = weights.astype(np.float64)
        data, weights = _pad_points(data, weights, n)
        n = weights.shape[1]
        data = tuple(jnp.asarray(a, jnp.float64) for a in data)
        weights = jnp.asarray(weights)
        rows = np.zeros(Q, np.int32) if weight_rows is None else np.asarray(weight_rows, np.int32)
        out_x, out_f = x0.copy(), np.full(Q, np.inf)
        out_k, out_e, out_c = np.zeros(Q, np.int64), np.zeros(Q, np.int64), np.zeros(Q, bool)

        L = lane_count(Q, min(lanes, lane_cap(n)))
        small = max(32, L // 8)
        state = _empty_state(L=L, P=P, n=n, memory=tol.memory)
        problem = np.full(L, -1)  # which problem each lane holds
        queued = 0
        while True:
            done = np.asarray(state.done)
            finished = done & (problem >= 0)
            if finished.any():
                _harvest(state, finished, problem, out_x, out_f, out_k, out_e, out_c)
                problem[finished] = -1
            free = np.flatnonzero(problem < 0)
            take = min(len(free), Q - queued)
            if take:
                lanes_new = free[:take]
                mask = np.zeros(L, bool)
                mask[lanes_new] = True
                x_new = np.zeros((L, P))
                x_new[lanes_new] = x0[queued:queued + take]
                w_new = np.zeros(L, np.int32)
                w_new[lanes_new] = rows[queued:queued + take]
                problem[lanes_new] = np.arange(queued, queued + take)
                queued += take
                state = _load(state, jnp.asarray(mask), jnp.asarray(x_new), jnp.asarray(w_new), weights)
            busy = np.flatnonzero(problem >= 0)
            if len(busy) == 0:
                break
            if queued == Q and L > small and len(busy) <= small:
                pick = np.concatenate([busy, np.flatnonzero(problem < 0)[: small - len(busy)]])
                state = _take(state, jnp.asarray(pick))
                problem = problem[pick]
                L = small
            state = _advance(vg, tol, state, *data)
        return BatchResult(out_x, out_f, out_k, out_e, out_c)


def _pad_points(data: tuple, weights: np.ndarray, n: int, multiple: int = 64):
    """Pad the point axis to a multiple of 64 with zero-weight copies of the first point.

    Zero weights leave objective and gradient unchanged, and tables of similar size then share one
    compiled program (each compile of the step costs about 1.5 s on CPU).
    """
    size = -(-n // multiple) * multiple
    if size == n:
        return data, weights
    padded = []
    for a in data:
        a = np.asarray(a, np.float64)
        if a.ndim and a.shape[-1] == n:
            a = np.concatenate([a, np.repeat(a[..., :1], size - n, axis=-1)], axis=-1)
        padded.append(a)
    return tuple(padded), np.concatenate([weights, np.zeros((len(weights), size - n), weights.dtype)], axis=1)


def _harvest(state, mask, problem, out_x, out_f, out_k, out_e, out_c):
    idx = problem[mask]
    out_x[idx] = np.asarray(state.x)[mask]
    out_f[idx] = np.asarray(state.f)[mask]
    out_k[idx] = np.asarray(state.k)[mask]
    out_e[idx] = np.asarray(state.n_eval)[mask]
    out_c[idx] = np.asarray(state.conv)[mask]


def autodiff_value_and_grad(batched_objective: Callable) -> Callable:
    """(f, grad) for a batched objective `F(X, *args) -> (B,)` by one reverse pass over the batch."""

    def vg(X, *args):
        f, pullback = jax.vjp(lambda Z: batched_objective(Z, *args), X)
        return f, pullback(jnp.ones_like(f))[0]

    return vg
