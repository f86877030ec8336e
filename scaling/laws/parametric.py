"""Parametric law fits (Chinchilla Approach 3 and the other forms): many starts, Huber on log residuals.

The published method, followed exactly: predictions in log space (log-sum-exp form), Huber loss
(delta 1e-3 by default) on log residuals summed over points, L-BFGS from every start of a grid (the
4,500-point Hoffmann grid for the Chinchilla form), the best optimum kept, parameters unrounded. On a
table of more than 1,000 rows the grid is screened first and its best-scoring starts polished (polish.py).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.allocation import Allocation, optimal_allocation
from scaling.laws.bootstrap import DEFAULT_RESAMPLES, interval
from scaling.laws.chinchilla import CrossCheck, varpro_cross_check
from scaling.laws.errors import ArgumentError
from scaling.laws.fixed import Fixing, fixing
from scaling.laws.forms import FORMS, R_D_STAR, R_N_STAR, LawForm, features_for
from scaling.laws.isoflop import group_budgets
from scaling.laws.noise import NoiseFloor, noise_floor
from scaling.laws.optim import BatchResult, Tolerances, minimize_batched
from scaling.laws.polish import bootstrap_optima, distinct_optima, grid_minimize
from scaling.laws.result import Estimate, Table, estimates_frame
from scaling.laws.table import RunsTable, holdout_split, numeric_column

DEFAULT_HUBER_DELTA = 1e-3
WARM_STARTS = 4  # full-data optimum + the next best distinct optima, per bootstrap resample


@dataclass(frozen=True)
class Holdout:
    """How well the fit predicts the K largest-compute runs it did not see."""

    runs: int
    n: int
    mean_abs_rel_error: float
    max_abs_rel_error: float

    def to_json(self) -> dict:
        return {"n": self.n, "runs": self.runs, "mean_abs_rel_error": self.mean_abs_rel_error,
                "max_abs_rel_error": self.max_abs_rel_error}


@dataclass(frozen=True)
class LawFit:
    """A fitted law: parameters (unrounded), bootstrap 95% intervals, allocation, holdout, cross-check."""

    law: str
    params: Mapping[str, float]
    ci95: Mapping[str, tuple[float, float]]
    objective: float
    huber_delta: float
    n_points: int
    n_runs: int
    dropped: Mapping[str, int]
    n_starts: int
    n_converged: int
    n_resamples: int
    theta: np.ndarray = field(repr=False)
    samples: np.ndarray = field(repr=False)  # (R, P) bootstrap optima in optimizer coordinates
    optimal: Allocation | None = None
    holdout: Holdout | None = None
    cross_check: CrossCheck | None = None
    noise: NoiseFloor | None = None
    fixed: Mapping[str, float] = field(default_factory=dict)  # parameters held at given values
    data_range: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # params, tokens, flops
    n_polished: int | None = None  # starts minimized after screening a large table's grid (polish.py)

    @property
    def form(self) -> LawForm:
        return FORMS[self.law]

    @property
    def n_dropped(self) -> int:
        return int(sum(self.dropped.values()))

    def predict(self, params=None, tokens=None, flops=None, epochs=None) -> np.ndarray:
        """Predicted loss; give the sizes the law reads (two of params/tokens/flops fix the third)."""
        n, d, c = np.broadcast_arrays(*_complete(params, tokens, flops))
        unique = None if epochs is None else d / np.maximum(np.asarray(epochs, dtype=np.float64), 1.0)
        flat = [None if v is None else np.ravel(np.broadcast_to(v, n.shape)) for v in (n, d, c, unique)]
        return self.form.predict(self.theta, features_for(self.form, *flat)).reshape(n.shape)

    def allocate(self, budgets: Sequence[float]) -> Allocation:
        """Compute-optimal N, D, tokens per parameter and loss at `budgets`, with bootstrap intervals."""
        return optimal_allocation(self.form, self.theta, budgets, self.samples)

    # -- the FitResult interface (result.py)
    @property
    def title(self) -> str:
        return self.form.title

    @property
    def label(self) -> str:
        return "Approach 3 (parametric)" if self.law == "chinchilla" else self.law

    def method(self) -> str:
        return (f"objective {self.objective:.6g} (Huber, delta {self.huber_delta:g}, summed over log residuals); "
                f"best of {self.n_starts} starts ({self.n_converged} converged"
                + (f" of the {self.n_polished} best-scoring, polished" if self.n_polished else "") + "); "
                f"{self.n_resamples} bootstrap resamples (points, with their seeds)")

    def estimates(self) -> list[Estimate]:
        out = [Estimate(f"{k} (fixed)" if k in self.fixed else k, v, self.ci95.get(k)) for k, v in self.params.items()]
        if self.optimal is not None and self.optimal.a is not None:
            out += [Estimate(f"{k} (N_opt = G (C/6)^a, D_opt = (C/6)^b / G)" if k == "a" else k,
                             getattr(self.optimal, k), self.optimal.ci95.get(k)) for k in ("a", "b", "G")]
        return out

    def details(self) -> list[Table]:
        return []

    def notes(self) -> list[str]:
        out = [] if self.noise is None else [self.noise.describe()]
        if self.fixed:
            out.append("held fixed, not fitted: " + ", ".join(f"{k} = {v:g}" for k, v in self.fixed.items())
                       + " (their intervals are not shown; the others' are conditional on them)")
        if self.holdout is not None:
            h = self.holdout
            out.append(f"holdout: {h.runs} largest-compute runs ({h.n} points) predicted with mean |relative "
                       f"error| {100 * h.mean_abs_rel_error:.3g}%, max {100 * h.max_abs_rel_error:.3g}%")
        if self.cross_check is not None:
            c = self.cross_check
            verdict = "agrees" if c.agrees else "DISAGREES with the Huber fit: inspect the data and the fit"
            out.append(f"cross-check ({c.method}): alpha {c.params['alpha']:.4g}, beta {c.params['beta']:.4g}, "
                       f"a {c.a:.4g} - {verdict}")
        return out

    def exponents(self) -> tuple[Estimate, Estimate] | None:
        if self.optimal is None or self.optimal.a is None:
            return None
        return (Estimate("a", self.optimal.a, self.optimal.ci95.get("a")),
                Estimate("b", self.optimal.b, self.optimal.ci95.get("b")))

    def frontier(self, flops, which: str):
        if not self.form.allocates:
            return None, None
        alloc = self.allocate(flops)
        mid = np.array([getattr(p, which) for p in alloc.at])
        ci = [p.ci95.get(which) for p in alloc.at]
        if self.samples is None or len(self.samples) <= 2 or any(c is None for c in ci):
            return mid, None
        return mid, np.array(ci).T

    def to_json(self) -> dict:
        return clean(self._json())

    def to_frame(self):
        """Parameters (and a, b, G when the law allocates) with 95% intervals; fixed ones flagged."""
        rows = [Estimate(k, v, self.ci95.get(k)) for k, v in self.params.items()]
        if self.optimal is not None and self.optimal.a is not None:
            rows += [Estimate(k, getattr(self.optimal, k), self.optimal.ci95.get(k)) for k in ("a", "b", "G")]
        return estimates_frame(rows, tuple(self.fixed))

    def plot(self, ax, budgets=None, **style):
        """The fitted law's own picture: for a law of N and D, its isoFLOP curves L(N, C/6N) at `budgets`
        (default four across the fitted runs' FLOPs) with each minimum starred; for a law of one size
        (N, D or C), L against it over the fitted range."""
        lo, hi = self.data_range.get("flops", (1e18, 1e22))
        if self.form.allocates:
            budgets = np.geomspace(lo, hi, 4) if budgets is None else np.asarray(budgets, dtype=float)
            best = self.allocate(budgets).at
            for i, (c, opt) in enumerate(zip(budgets, best)):
                color = style.get("color", f"C{i}")
                n = np.geomspace(opt.params / 30, opt.params * 30, 120)
                ax.plot(n, self.predict(params=n, flops=np.full_like(n, c)), "-", color=color, label=f"C = {c:.2g}")
                ax.plot([opt.params], [opt.loss], "*", color=color, ms=11, mec="k")
            ax.set_xscale("log")
            ax.set_xlabel("parameters N")
        else:
            column = {"kaplan-n": "params", "kaplan-d": "tokens", "compute": "flops"}[self.law]
            a, b = self.data_range.get(column, (lo, hi))
            x = np.geomspace(a, b, 120)
            ax.plot(x, self.predict(**{column: x}), "-", color=style.get("color", "C0"), label=self.title)
            ax.set_xscale("log")
            ax.set_xlabel({"params": "parameters N", "tokens": "tokens D", "flops": "compute C (FLOPs)"}[column])
        ax.set_ylabel("loss")
        ax.legend(fontsize=7)
        return ax

    def _json(self) -> dict:
        out = {"law": self.law, "n_points": self.n_points, "objective": self.objective,
               "huber_delta": self.huber_delta, "params": dict(self.params),
               "ci95": {k: list(v) for k, v in self.ci95.items()}}
        if self.optimal is not None:
            out["optimal"] = self.optimal.to_json()
        if self.holdout is not None:
            out["holdout"] = self.holdout.to_json()
        if self.cross_check is not None:
            out["cross_check"] = self.cross_check.to_json()
        if self.noise is not None:
            out["noise"] = self.noise.to_json()
        if self.fixed:
            out["fixed"] = dict(self.fixed)
        out.update({"n_runs": self.n_runs, "n_dropped": self.n_dropped, "dropped": dict(self.dropped),
                    "n_starts": self.n_starts, "n_converged": self.n_converged, "bootstrap": self.n_resamples})
        return out


def _complete(params, tokens, flops):
    arr = lambda v: None if v is None else np.asarray(v, dtype=np.float64)  # noqa: E731
    n, d, c = arr(params), arr(tokens), arr(flops)
    if c is None and n is not None and d is not None:
        c = 6.0 * n * d
    elif d is None and n is not None and c is not None:
        d = c / (6.0 * n)
    elif n is None and d is not None and c is not None:
        n = c / (6.0 * d)
    filler = next((v for v in (n, d, c) if v is not None), None)
    if filler is None:
        raise ValueError("predict needs sizes: params, tokens or flops")
    ones = np.ones_like(filler)
    return tuple(ones if v is None else v for v in (n, d, c))


def table_features(form: LawForm, table: RunsTable) -> np.ndarray:
    unique = None
    if "log_unique_tokens" in form.features:
        if "epochs" not in table.frame.columns:
            raise UsageError(f"law {form.name} needs an 'epochs' column (passes over the unique data)")
        epochs = numeric_column(table.frame["epochs"], "epochs")
        if epochs.isna().any() or (epochs <= 0).any():
            raise UsageError("column 'epochs' must be positive on every row for law data-constrained")
        unique = table.column("tokens") / np.maximum(epochs.to_numpy(), 1.0)
    return features_for(form, table.column("params"), table.column("tokens"), table.column("flops"), unique)


def check_enough(form: LawForm, table: RunsTable, fix: Fixing | None = None) -> None:
    # A held parameter needs no data of its own, but a free one always needs a point more than there are.
    need = form.min_points if fix is None else max(len(fix.free) + 1, form.min_points - len(fix.values))
    if table.n_points < need:
        raise UsageError(f"law {form.name} needs at least {need} points; the table has {table.n_points} usable")
    col = {"log_params": "params", "log_tokens": "tokens", "log_flops": "flops"}
    for feat in form.features:
        if feat in col and table.frame[col[feat]].nunique() < 2:
            raise UsageError(f"law {form.name} needs at least 2 distinct values of {col[feat]!r}; the table has 1")


def _refine_data_constrained(result: BatchResult, fix: Fixing | None = None) -> np.ndarray:
    """Second stage for the data-constrained form: the best optima found with the published R_D*, R_N*,
    restarted over a small grid of decay constants (the first stage cannot leave R* values the data do
    not inform, and a 7-dimensional full grid would cost 9 times the Hoffmann grid)."""
    best = distinct_optima(result, 8)
    if fix is not None:
        best = fix.expand(best)
    rd = np.log([R_D_STAR / 3, R_D_STAR, R_D_STAR * 3])
    rn = np.log([R_N_STAR / 3, R_N_STAR, R_N_STAR * 3])
    rows = np.array([np.concatenate([b[:5], [x, y]]) for b in best for x in rd for y in rn])
    return rows if fix is None else fix.reduce(rows)


def fit_parametric(
    table: RunsTable,
    law: str = "chinchilla",
    *,
    huber_delta: float = DEFAULT_HUBER_DELTA,
    bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    budgets: Sequence[float] = (),
    holdout: int = 0,
    starts: np.ndarray | None = None,
    bootstrap_starts: str = "warm",
    warm_starts: int = WARM_STARTS,
    cross_check: bool = True,
    tol: Tolerances = Tolerances(),
    fixed: Mapping[str, float] | None = None,
) -> LawFit:
    """Fit `law` to the runs table (Approach 3 for "chinchilla"); see `FORMS` for the laws.

    bootstrap_starts="warm" (default) starts each resample from the full-data optimum and the next
    `warm_starts - 1` best distinct optima of the full grid; "grid" reruns the full start grid on every
    resample (the literal method, about `bootstrap` times the cost of one fit).

    Args:
        table: the runs table; law: a name of `FORMS`.
        huber_delta: the Huber threshold on log residuals; bootstrap: resamples of points (each with
            all its seed replicates: bootstrap.py); seed.
        budgets: FLOPs for the compute-optimal allocation; holdout: largest-compute runs to hold out.
        starts: a start grid (default the form's); cross_check: run variable projection (chinchilla).
        fixed: parameters held at values, by their printed names ({"E": 1.69}); the others are fitted
            with those held, and their intervals are conditional on them.
    Returns:
        LawFit: parameters with 95% intervals, allocation, holdout error and cross-check.
    Raises:
        UsageError: too few points or distinct sizes, or no start reached a finite objective.
    """
    if law not in FORMS:
        raise UsageError(f"unknown law {law!r}; choose from {', '.join(FORMS)}")
    if not huber_delta > 0:
        raise ArgumentError("huber_delta", "must be positive", repr(huber_delta), f"{huber_delta:g}")
    if bootstrap_starts not in ("warm", "grid"):
        raise ValueError("bootstrap_starts is 'warm' or 'grid'")
    form = FORMS[law]
    fix = fixing(form, fixed)
    fit_table, held = holdout_split(table, holdout)
    check_enough(form, fit_table, fix)
    X = table_features(form, fit_table)
    y = np.log(fit_table.column("loss"))
    data = (X, y, huber_delta)

    grid = form.starts() if starts is None else np.asarray(starts, dtype=np.float64)
    vg = form.value_and_grad
    if fix is not None:
        grid, vg = fix.reduce(grid), fix.value_and_grad
    result, polished = grid_minimize(vg, grid, data, tol)
    if form.name == "data-constrained":
        refined = _refine_data_constrained(result, fix)
        result = _concat(result, minimize_batched(vg, refined, data=data, tol=tol))
    best = result.best()
    if not np.isfinite(result.fun[best]):
        raise UsageError(f"law {law}: no start reached a finite objective; check the table's values")

    samples = bootstrap_optima(vg, fit_table, data, result, grid, bootstrap, seed, bootstrap_starts, warm_starts, tol)
    theta = result.x[best]
    if fix is not None:  # the result holds full coordinates, so predict and allocate need no fixing
        theta = fix.expand(theta)
        samples = fix.expand(samples) if len(samples) else np.zeros((0, len(form.theta_names)))
    natural = {k: float(v) for k, v in form.natural(theta).items()}
    if fix is not None:  # exactly the given values, not their round trip through log and exp
        natural.update(fix.fixed)
    nat_samples = form.natural(samples) if len(samples) else {}
    held_at = fix.fixed if fix is not None else {}
    ci = {k: interval(nat_samples[k]) for k in natural if k not in held_at} if len(samples) > 1 else {}

    optimal = None
    if form.allocates or (form.name == "compute" and len(budgets)):
        optimal = optimal_allocation(form, theta, budgets, samples)
    elif len(budgets):
        raise ArgumentError("budgets", f"law {law} is a law of one size alone; it has no compute-optimal "
                            "allocation at a budget")

    hold = None
    if holdout:
        pred = form.predict(theta, table_features(form, held))
        rel = np.abs(pred - held.column("loss")) / held.column("loss")
        hold = Holdout(runs=holdout, n=held.n_points, mean_abs_rel_error=float(np.mean(rel)),
                       max_abs_rel_error=float(np.max(rel)))

    check = None
    if cross_check and form.name == "chinchilla" and fix is None:  # varpro fits every parameter
        check = varpro_cross_check(fit_table, natural)

    return LawFit(law=law, params=natural, ci95=ci, objective=float(result.fun[best]), huber_delta=float(huber_delta),
                  n_points=fit_table.n_points, n_runs=fit_table.n_runs, dropped=dict(fit_table.dropped),
                  n_starts=len(result.fun) + (len(grid) - polished if polished else 0),
                  n_converged=int(result.converged.sum()), n_resamples=len(samples),
                  theta=theta, samples=samples, optimal=optimal, holdout=hold, cross_check=check,
                  noise=noise_floor(fit_table, *group_budgets(fit_table)), fixed=dict(held_at),
                  data_range={c: (float(fit_table.column(c).min()), float(fit_table.column(c).max()))
                              for c in ("params", "tokens", "flops")}, n_polished=polished)


def _concat(a: BatchResult, b: BatchResult) -> BatchResult:
    return BatchResult(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in
                         ("x", "fun", "n_iter", "n_eval", "converged")))
