"""Comparing recipes by effective compute: how much compute group A needs to match group B's loss.

Each group's Chinchilla fit (Approach 3, with its two-level bootstrap over points and their seeds)
gives its compute-optimal frontier in closed form: at N_opt = G (C/6)^a, D_opt = (C/6)^b / G,

    L*(C) = E + K (C/6)^-gamma,   K = A G^-alpha + B G^beta,   gamma = alpha beta / (alpha + beta).

The effective-compute multiplier of B over A at budget C is k(C) = C_A(L*_B(C)) / C, where C_A(L) inverts
A's frontier: group B reaches at C the loss A reaches at k C. k > 1 means B is the better recipe at C;
k is infinite where B's loss lies below A's floor E_A (no budget takes A there). Intervals push each
bootstrap resample of A's law and of B's through the same formula (the groups' data are independent, so
their resamples are paired by index). The crossover is the compute where the two frontiers meet,
searched from the data's smallest budget to `REACH` (1e6) times its largest.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.bootstrap import interval
from scaling.laws.noise import NoiseFloor
from scaling.laws.parametric import LawFit, fit_parametric
from scaling.laws.shared import SharedFit, fit_shared_e
from scaling.laws.table import REACH, RunsTable, holdout_split

DEFAULT_SCALES = (1.0, 10.0, 100.0)  # default budgets: the data's largest compute times these
GRID = 400  # log-spaced budgets per crossover search (then bisection between the bracketing pair)


@dataclass(frozen=True)
class Frontier:
    """L*(C) = E + K (C/6)^-gamma for the optimum (row 0) and each bootstrap resample (rows 1..R)."""

    E: np.ndarray
    log_K: np.ndarray
    gamma: np.ndarray

    @classmethod
    def of_chinchilla(cls, thetas) -> Frontier:
        """From Chinchilla parameter vectors (..., 5) in optimizer coordinates (a, b, e, alpha, beta)."""
        t = np.asarray(thetas, dtype=np.float64)
        a, b, e, alpha, beta = (t[..., i] for i in range(5))
        with np.errstate(all="ignore"):
            s = alpha + beta
            log_g = (np.log(alpha) + a - np.log(beta) - b) / s
            log_k = np.logaddexp(a - alpha * log_g, b + beta * log_g)
            return cls(E=np.exp(e), log_K=log_k, gamma=alpha * beta / s)

    def loss(self, flops) -> np.ndarray:
        """(rows, budgets) frontier loss."""
        c = np.asarray(flops, dtype=np.float64)
        with np.errstate(all="ignore"):
            return self.E[:, None] + np.exp(self.log_K[:, None] - self.gamma[:, None] * np.log(c / 6.0)[None])

    def log_flops_for(self, loss) -> np.ndarray:
        """ln of the budget at which each row's frontier reaches `loss` (rows, budgets): +inf at or below E."""
        gap = np.asarray(loss, dtype=np.float64) - self.E[:, None]
        with np.errstate(all="ignore"):
            out = np.log(6.0) + (self.log_K[:, None] - np.log(gap)) / self.gamma[:, None]
        return np.where(gap > 0, out, np.inf)

    def rows(self) -> int:
        return len(self.E)


def log_multiplier(fa: Frontier, fb: Frontier, flops) -> np.ndarray:
    """ln k(C) per row (rows, budgets): B at C reaches the loss A reaches at k C."""
    c = np.asarray(flops, dtype=np.float64)
    return fa.log_flops_for(fb.loss(c)) - np.log(c)[None]


def crossovers(fa: Frontier, fb: Frontier, lo: float, hi: float) -> np.ndarray:
    """Per row, the first budget in [lo, hi] where the frontiers cross (NaN where they do not)."""
    grid = np.geomspace(lo, hi, GRID)
    diff = fa.loss(grid) - fb.loss(grid)
    sign = np.sign(diff)
    change = (sign[:, :-1] * sign[:, 1:] < 0) & np.isfinite(diff[:, :-1]) & np.isfinite(diff[:, 1:])
    rows = np.flatnonzero(change.any(axis=1))
    out = np.full(fa.rows(), np.nan)
    if not len(rows):
        return out
    j = np.argmax(change[rows], axis=1)
    x0, x1 = np.log(grid[j]), np.log(grid[j + 1])

    def gap(x):  # A's loss minus B's at ln C = x, row by row
        with np.errstate(all="ignore"):
            return ((fa.E[rows] + np.exp(fa.log_K[rows] - fa.gamma[rows] * (x - np.log(6.0))))
                    - (fb.E[rows] + np.exp(fb.log_K[rows] - fb.gamma[rows] * (x - np.log(6.0)))))

    s0 = np.sign(gap(x0))
    for _ in range(60):  # bisection in ln C: 60 halvings of one grid step is far below float precision
        mid = 0.5 * (x0 + x1)
        same = np.sign(gap(mid)) == s0
        x0, x1 = np.where(same, mid, x0), np.where(same, x1, mid)
    out[rows] = np.exp(0.5 * (x0 + x1))
    return out


@dataclass(frozen=True)
class Multiplier:
    """k(C) of one pair at one budget, with the two frontier losses and their difference (A minus B)."""

    flops: float
    k: float
    ci95: tuple[float, float] | None
    loss_a: float
    loss_b: float
    gap: float
    gap_ci95: tuple[float, float] | None

    @property
    def verdict(self) -> str:
        """Which group the 95% interval of k says is better at this budget ("" without resamples)."""
        if self.ci95 is None:
            return ""
        if self.ci95[0] > 1:
            return "B better"
        if self.ci95[1] < 1:
            return "A better"
        return "inside the noise"

    def to_json(self) -> dict:
        return {"flops": self.flops, "k": self.k, "ci95": None if self.ci95 is None else list(self.ci95),
                "loss_a": self.loss_a, "loss_b": self.loss_b, "loss_gap": self.gap,
                "loss_gap_ci95": None if self.gap_ci95 is None else list(self.gap_ci95)}


@dataclass(frozen=True)
class Crossover:
    """Where the frontiers cross within [searched]: the fit's crossover (None: no crossing), the share of
    resamples that cross there, and the 95% interval of the crossing budget among those."""

    flops: float | None
    share: float | None
    ci95: tuple[float, float] | None
    searched: tuple[float, float]

    def describe(self) -> str:
        if self.flops is None:
            where = (f"none within 1e{round(np.log10(REACH))}x the data (searched {self.searched[0]:.3g}.."
                     f"{self.searched[1]:.3g})")
        else:
            where = f"at C = {self.flops:.3g}" + ("" if self.ci95 is None else
                                                  f" [{self.ci95[0]:.3g}, {self.ci95[1]:.3g}]")
        return where + ("" if self.share is None else f"; {100 * self.share:.0f}% of resamples cross there")

    def to_json(self) -> dict:
        return {"flops": self.flops, "share": self.share, "ci95": None if self.ci95 is None else list(self.ci95),
                "searched": list(self.searched)}


@dataclass(frozen=True)
class PairComparison:
    """Group b against group a: k(C) at the budgets from the separate fits (and the shared-E fit)."""

    a: str
    b: str
    separate: tuple[Multiplier, ...]
    crossover: Crossover
    shared: tuple[Multiplier, ...] = ()
    shared_crossover: Crossover | None = None

    def to_json(self) -> dict:
        out = {"a": self.a, "b": self.b, "multipliers": [m.to_json() for m in self.separate],
               "crossover": self.crossover.to_json()}
        if self.shared:
            out["shared_e_multipliers"] = [m.to_json() for m in self.shared]
        if self.shared_crossover is not None:
            out["shared_e_crossover"] = self.shared_crossover.to_json()
        return out


@dataclass(frozen=True)
class Preference:
    """Which of the separate and the shared-E fits predicts the held-out largest-compute runs better."""

    held_runs: int
    separate_error: float
    shared_error: float

    @property
    def preferred(self) -> str:
        return "shared E" if self.shared_error <= self.separate_error else "separate"

    def to_json(self) -> dict:
        return {"held_runs": self.held_runs, "separate_mean_abs_rel_error": self.separate_error,
                "shared_mean_abs_rel_error": self.shared_error, "preferred": self.preferred}


@dataclass(frozen=True)
class Comparison:
    """Every pair of groups of `column`, compared by effective compute."""

    column: str
    fits: Mapping[str, LawFit]
    pairs: tuple[PairComparison, ...]
    budgets: tuple[float, ...]
    data_flops: tuple[float, float]
    shared: SharedFit | None = None
    preference: Preference | None = None
    frontiers: Mapping[str, Frontier] = field(default_factory=dict, repr=False)

    def noise(self) -> dict[str, NoiseFloor | None]:
        return {g: f.noise for g, f in self.fits.items()}

    def curve(self, a: str, b: str, flops) -> tuple[np.ndarray, np.ndarray | None]:
        """k(C) on `flops` for the pair and its 95% band (2, len(flops)), None without resamples."""
        lk = log_multiplier(self.frontiers[a], self.frontiers[b], flops)
        band = np.exp(np.array([_log_interval(lk[1:, j]) for j in range(lk.shape[1])]).T) if lk.shape[0] > 2 else None
        return np.exp(lk[0]), band

    def to_json(self) -> dict:
        out = {"by": self.column, "budgets": list(self.budgets), "data_flops": list(self.data_flops),
               "groups": {g: {"params": dict(f.params), "ci95": {k: list(v) for k, v in f.ci95.items()},
                              "n_points": f.n_points, "noise": None if f.noise is None else f.noise.to_json()}
                          for g, f in self.fits.items()},
               "pairs": [p.to_json() for p in self.pairs]}
        if self.shared is not None:
            out["shared_e"] = self.shared.to_json()
        if self.preference is not None:
            out["holdout"] = self.preference.to_json()
        return clean(out)


def _log_interval(values) -> tuple[float, float]:
    """95% percentile interval of ln k over resamples, where +inf (B below A's floor) is a value, not a
    failed resample: it sorts above every finite one. NaN (a degenerate resample) is left out."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return (np.nan, np.nan)
    lo, hi = np.quantile(v, [0.025, 0.975], method="inverted_cdf")  # no interpolation across +-inf
    return float(lo), float(hi)


def multipliers(fa: Frontier, fb: Frontier, budgets: Sequence[float]) -> tuple[Multiplier, ...]:
    lk = log_multiplier(fa, fb, budgets)
    la, lb = fa.loss(budgets), fb.loss(budgets)
    resampled = fa.rows() > 2 and fb.rows() > 2
    out = []
    for j, c in enumerate(budgets):
        ci = tuple(float(x) for x in np.exp(_log_interval(lk[1:, j]))) if resampled else None
        gap_ci = interval(la[1:, j] - lb[1:, j]) if resampled else None
        out.append(Multiplier(float(c), float(np.exp(lk[0, j])), ci, float(la[0, j]), float(lb[0, j]),
                              float(la[0, j] - lb[0, j]), gap_ci))
    return tuple(out)


def _paired(f: Frontier, rows: int) -> Frontier:
    """The first `rows` rows (the optimum and as many resamples as the other group has)."""
    return Frontier(f.E[:rows], f.log_K[:rows], f.gamma[:rows])


def crossover(fa: Frontier, fb: Frontier, search: tuple[float, float]) -> Crossover:
    """The fit's crossing (row 0) and how often, and where, the resamples cross (rows paired by index)."""
    rows = min(fa.rows(), fb.rows())
    cross = crossovers(_paired(fa, rows), _paired(fb, rows), *search)
    share = float(np.mean(np.isfinite(cross[1:]))) if rows > 2 else None
    ci = interval(cross[1:]) if rows > 2 and np.isfinite(cross[1:]).sum() > 1 else None
    return Crossover(None if np.isnan(cross[0]) else float(cross[0]), share, ci, search)


def compare_pair(a: str, b: str, fa: Frontier, fb: Frontier, budgets: Sequence[float],
                 search: tuple[float, float], shared: tuple[Frontier, Frontier] | None = None) -> PairComparison:
    rows = min(fa.rows(), fb.rows())
    fa, fb = _paired(fa, rows), _paired(fb, rows)
    if shared is None:
        return PairComparison(a, b, multipliers(fa, fb, budgets), crossover(fa, fb, search))
    return PairComparison(a, b, multipliers(fa, fb, budgets), crossover(fa, fb, search),
                          multipliers(*shared, budgets), crossover(*shared, search))


def compare_groups(parts: Mapping[str, RunsTable], column: str, *, budgets: Sequence[float] = (),
                   bootstrap: int = 1000, seed: int = 0, shared_e: bool = False, holdout: int = 0,
                   starts: np.ndarray | None = None, **options) -> Comparison:
    """Fit Chinchilla's law to each group and compare every pair by effective compute.

    Args:
        parts: group -> its runs (see `split_by`), in the order pairs are formed (a before b).
        column: the grouping column's name (for the record).
        budgets: FLOPs for k(C) (default the data's largest compute x1, x10, x100).
        bootstrap: resamples per group (points with their seeds); seed: group i uses seed + i.
        shared_e: also fit the groups jointly with one E; holdout: with shared_e, per group the K
            largest-compute runs are held out of both fits to say which predicts them better.
        starts, options: passed to each group's `fit_parametric` (e.g. a smaller start grid).
    Returns:
        Comparison.
    Raises:
        UsageError: fewer than two groups, or a group the law cannot fit.
    """
    if len(parts) < 2:
        raise UsageError(f"compare needs at least two values of {column!r}; the table has {len(parts)}")
    fits = {}
    for i, (g, part) in enumerate(parts.items()):
        try:
            fits[g] = fit_parametric(part, "chinchilla", bootstrap=bootstrap, seed=seed + i, starts=starts,
                                     **options)
        except UsageError as err:
            raise UsageError(f"{column} = {g}: {err}") from None
    return compare_fits(parts, fits, column, budgets=budgets, bootstrap=bootstrap, seed=seed, shared_e=shared_e,
                        holdout=holdout, starts=starts, **options)


def compare_fits(parts: Mapping[str, RunsTable], fits: Mapping[str, LawFit], column: str, *,
                 budgets: Sequence[float] = (), bootstrap: int = 1000, seed: int = 0, shared_e: bool = False,
                 holdout: int = 0, starts: np.ndarray | None = None, **options) -> Comparison:
    """`compare_groups` on Chinchilla fits already made (a report's per-group fits): `fits` holds each
    group of `parts` fitted to that part alone, its bootstrap resamples drawn independently of the other
    groups' (a seed of its own); the other arguments are `compare_groups`'."""
    if len(parts) < 2:
        raise UsageError(f"compare needs at least two values of {column!r}; the table has {len(parts)}")
    flops = np.concatenate([p.column("flops") for p in parts.values()])
    data = (float(flops.min()), float(flops.max()))
    budgets = tuple(float(c) for c in budgets) or tuple(data[1] * s for s in DEFAULT_SCALES)
    fits = {g: fits[g] for g in parts}
    frontiers = {g: Frontier.of_chinchilla(np.vstack([f.theta[None], f.samples])) for g, f in fits.items()}
    shared = preference = None
    shared_frontiers = {}
    if shared_e:
        huber = {"huber_delta": options["huber_delta"]} if "huber_delta" in options else {}
        shared = fit_shared_e(parts, {g: f.theta for g, f in fits.items()}, bootstrap=bootstrap, seed=seed, **huber)
        shared_frontiers = {g: Frontier.of_chinchilla(shared.of(g)) for g in parts}
        if holdout:
            preference = held_out_preference(parts, holdout, starts, **options)
    search = (data[0], data[1] * REACH)
    pairs = tuple(compare_pair(a, b, frontiers[a], frontiers[b], budgets, search,
                               (shared_frontiers[a], shared_frontiers[b]) if shared_frontiers else None)
                  for a, b in itertools.combinations(parts, 2))
    return Comparison(column=column, fits=fits, pairs=pairs, budgets=budgets, data_flops=data, shared=shared,
                      preference=preference, frontiers=frontiers)


def held_out_preference(parts: Mapping[str, RunsTable], k: int, starts=None, **options) -> Preference:
    """Hold out each group's K largest-compute runs, fit both ways on the rest, and score the predictions
    of the held-out losses (mean |relative error| over all held-out rows)."""
    train, held = {}, {}
    for g, part in parts.items():
        train[g], held[g] = holdout_split(part, k)
    alone = {g: fit_parametric(t, "chinchilla", bootstrap=0, starts=starts, cross_check=False,
                               **{k_: v for k_, v in options.items() if k_ != "cross_check"})
             for g, t in train.items()}
    joint = fit_shared_e(train, {g: f.theta for g, f in alone.items()})
    sep_err, joint_err = [], []
    for g, h in held.items():
        n, d, loss = h.column("params"), h.column("tokens"), h.column("loss")
        sep_err.append(np.abs(alone[g].predict(params=n, tokens=d) - loss) / loss)
        joint_err.append(np.abs(joint.predict(g, n, d) - loss) / loss)
    return Preference(held_runs=k * len(parts), separate_error=float(np.mean(np.concatenate(sep_err))),
                      shared_error=float(np.mean(np.concatenate(joint_err))))

