"""Loss-to-loss prediction (Brandfonbrener et al. 2024's shifted power law) across a sweep's runs:

    L_y = E_y + K (L_x - E_x)^kappa

where L_x and L_y are one run's losses on two evaluation domains and E_x, E_y their irreducible parts.
Fitted like the other laws: Huber on log residuals of L_y, summed, from many starts; bootstrap over points
(each with its seed replicates). E_x is kept below the lowest L_x fitted (E_x = min L_x sigmoid(a)) and
E_y below the lowest L_y, so that the power is defined on every fitted run.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

import scaling.laws.domains as dom
from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.bootstrap import DEFAULT_RESAMPLES
from scaling.laws.domains import HeldOut
from scaling.laws.errors import ArgumentError
from scaling.laws.optim import autodiff_value_and_grad, huber
from scaling.laws.result import Estimate, Table, estimates_frame

MIN_POINTS = 5  # four parameters and one more


def _sigmoid(z):
    return 1.0 / (1.0 + jnp.exp(-z))


def _log_predict(T, x, x_low, y_low, held):
    """log L_y for T (B, 4) = (a, b, log K, log kappa) at L_x values x (n,); `held` (E_x value, whether held,
    E_y value, whether held) puts a held E in place of its coordinate."""
    ex_at, ex_held, ey_at, ey_held = held
    e_x = jnp.where(ex_held, ex_at, x_low * _sigmoid(T[:, :1]))
    e_y = jnp.where(ey_held, ey_at, y_low * _sigmoid(T[:, 1:2]))
    gap = jnp.maximum(x[None, :] - e_x, 1e-300)
    return jnp.logaddexp(jnp.log(jnp.maximum(e_y, 1e-300)), T[:, 2:3] + jnp.exp(T[:, 3:4]) * jnp.log(gap))


AT_BOUND = 1e-6  # relative distance from the lowest loss within which a fitted E sits at its bound


def _objective(T, x, log_y, x_low, y_low, ex_at, ex_held, ey_at, ey_held, delta, w):
    r = _log_predict(T, x, x_low, y_low, (ex_at, ex_held, ey_at, ey_held)) - log_y
    return jnp.sum(w * huber(r, delta), axis=1)


_VALUE_AND_GRAD = autodiff_value_and_grad(_objective)


def _natural(theta, x_low: float, y_low: float, fixed: Mapping[str, float]) -> dict[str, np.ndarray]:
    theta = np.atleast_2d(theta)
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    e_x = np.full(len(theta), fixed["E_x"]) if "E_x" in fixed else x_low * sig(theta[:, 0])
    e_y = np.full(len(theta), fixed["E_y"]) if "E_y" in fixed else y_low * sig(theta[:, 1])
    return {"E_x": e_x, "E_y": e_y, "K": np.exp(theta[:, 2]), "kappa": np.exp(theta[:, 3])}


def _starts(x: np.ndarray, y: np.ndarray, fixed: Mapping[str, float]) -> np.ndarray:
    """For E_x, E_y at fractions of the lowest losses (or held), log(L_y - E_y) is linear in log(L_x - E_x)."""
    rows = []
    fxs = (fixed["E_x"] / x.min(),) if "E_x" in fixed else (0.0, 0.5, 0.8, 0.9, 0.97)
    fys = (fixed["E_y"] / y.min(),) if "E_y" in fixed else (0.0, 0.5, 0.8, 0.9, 0.97)
    for fx, fy in itertools.product(fxs, fys):
        lx, ly = np.log(x - fx * x.min()), np.log(y - fy * y.min())
        if np.ptp(lx) <= 0:
            continue
        kappa, log_k = np.polyfit(lx, ly, 1)
        logit = lambda f: np.log(min(max(f, 1e-3), 0.999) / (1 - min(max(f, 1e-3), 0.999)))  # noqa: E731
        rows.append([logit(fx), logit(fy), log_k, np.log(max(kappa, 1e-2))])
    return np.array(rows)


@dataclass(frozen=True)
class LossToLossFit:
    """L_y = E_y + K (L_x - E_x)^kappa between two domains' losses, with 95% intervals and the holdout."""

    x: str
    y: str
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
    holdout: HeldOut | None = None
    data: np.ndarray = field(default=None, repr=False)  # (2, n): the fitted runs' L_x and L_y
    held_data: np.ndarray = field(default=None, repr=False)  # (2, k): the held-out runs'
    samples: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    fixed: Mapping[str, float] = field(default_factory=dict)  # E_x, E_y held at given values
    at_bound: Mapping[str, float] = field(default_factory=dict)  # E_x/E_y fitted at their bound: that bound
    optimal: None = None
    law: str = "loss-to-loss"

    title = "L_y = E_y + K (L_x - E_x)^kappa across runs (Brandfonbrener et al. 2024)"
    label = "loss-to-loss"

    def predict(self, loss_x) -> np.ndarray:
        """L_y at L_x (NaN where L_x is not above E_x)."""
        p = self.params
        gap = np.asarray(loss_x, np.float64) - p["E_x"]
        with np.errstate(invalid="ignore"):
            return np.where(gap > 0, p["E_y"] + p["K"] * np.abs(gap) ** p["kappa"], np.nan)

    def method(self) -> str:
        return (f"Huber (delta {self.huber_delta:g}) on log residuals of L_y, summed; best of {self.n_starts} "
                f"starts ({self.n_converged} converged); {self.n_resamples} bootstrap resamples (points, with "
                "their seeds)")

    def estimates(self) -> list[Estimate]:
        return [Estimate(f"{k} (fixed)" if k in self.fixed else k, v, self.ci95.get(k)) for k, v in self.params.items()]

    def details(self) -> list[Table]:
        return []

    def notes(self) -> list[str]:
        out = [f"x = {self.x}, y = {self.y}"]
        if not self.fixed:
            out.append("E_x and E_y are fitted from this pair alone (often loosely); Brandfonbrener et al. hold "
                       "them at each domain's irreducible loss from its own scaling law: --fix E_x=...,E_y=...")
        for name, low in self.at_bound.items():
            out.append(f"{name} ran to its bound, the lowest {self.x if name == 'E_x' else self.y} fitted ({low:.4g}): "
                       f"these runs do not pin it (the relation does not bend toward a floor below them), so "
                       f"no interval is given; hold it with --fix {name}=...")
        if self.holdout is not None:
            out.append(self.holdout.describe(f"(the points of lowest {self.x})"))
        return out

    def exponents(self):
        return None

    def frontier(self, flops, which: str):
        return None, None

    def to_frame(self):
        return estimates_frame(self.estimates(), tuple(self.fixed))

    def to_json(self) -> dict:
        out = {"law": self.law, "x": self.x, "y": self.y, "params": dict(self.params), "fixed": dict(self.fixed),
               "ci95": {k: list(v) for k, v in self.ci95.items()}, "objective": self.objective,
               "huber_delta": self.huber_delta, "n_points": self.n_points, "n_runs": self.n_runs,
               "n_dropped": int(sum(self.dropped.values())), "dropped": dict(self.dropped),
               "n_starts": self.n_starts, "n_converged": self.n_converged, "bootstrap": self.n_resamples,
               "at_bound": sorted(self.at_bound)}
        if self.holdout is not None:
            out["holdout"] = self.holdout.to_json()
        return clean(out)

    def plot(self, ax, **style):
        """The runs (held-out ones hollow) and the fitted curve, L_y against L_x."""
        color = style.get("color", "C0")
        ax.plot(self.data[0], self.data[1], "o", ms=4, color=color, label="runs")
        if self.held_data is not None and self.held_data.shape[1]:
            ax.plot(self.held_data[0], self.held_data[1], "o", ms=5, mfc="none", color=color, label="held out")
        xs = np.concatenate([self.data[0], self.held_data[0] if self.held_data is not None else []])
        grid = np.linspace(xs.min(), xs.max(), 100)
        ax.plot(grid, self.predict(grid), "-", color="k", lw=1.2,
                label=f"kappa {self.params['kappa']:.3g}")
        ax.set_xlabel(f"loss on {self.x}")
        ax.set_ylabel(f"loss on {self.y}")
        ax.legend(fontsize=7)
        return ax


def fit_loss_to_loss(source, x: str, y: str, *, bootstrap: int = DEFAULT_RESAMPLES, seed: int = 0,
                     holdout: int = 0, huber_delta: float = 1e-3,
                     fixed: Mapping[str, float] | None = None) -> LossToLossFit:
    """Fit L_y = E_y + K (L_x - E_x)^kappa across runs.

    Args:
        source: a runs table (path or DataFrame).
        x, y: domains (`eval/<name>/loss`; `name:bpb` for bits per byte) or column names (`loss`).
        bootstrap: resamples of points, each with its seed replicates; seed: theirs.
        holdout: the points (each with its seeds) with the lowest mean L_x (the best models: the
            extrapolation one wants) held out and predicted.
        fixed: E_x and/or E_y held at values (e.g. each domain's E from its own Chinchilla fit).
    Returns:
        LossToLossFit: E_x, E_y, K, kappa with 95% intervals and the holdout error.
    Raises:
        UsageError: missing columns or too few runs; ArgumentError for a bad argument, by its name.
    """
    fixed = dict(fixed or {})
    for name in fixed:
        if name not in ("E_x", "E_y"):
            raise ArgumentError("fixed", f"law loss-to-loss holds only E_x or E_y fixed, not {name!r}", repr(fixed),
                                name)
    if not huber_delta > 0:
        raise ArgumentError("huber_delta", "must be positive", repr(huber_delta), f"{huber_delta:g}")
    raw, _ = dom.read_frame(source)
    cx, cy = dom.resolve_column(raw, x, "x"), dom.resolve_column(raw, y, "y")
    if cx == cy:
        raise ArgumentError("y", f"is the same column as x ({cx}): a law of a loss on itself", y)
    table = dom.load_domain_table(source, [cx, cy], positive=[cx, cy])
    # Whole points (a configuration with its seeds): a replicate left in the fit would have seen the rest.
    lowest = table.frame.groupby("point", sort=False)[cx].mean().sort_values(kind="stable")
    if len(lowest) < MIN_POINTS:
        raise UsageError(f"law loss-to-loss needs at least {MIN_POINTS} points; the table has {len(lowest)} usable")
    dom.check_holdout(holdout, len(lowest), MIN_POINTS)
    held = table.frame["point"].isin(lowest.index[:holdout]).to_numpy()
    fit_table = table.with_frame(table.frame[~held], **{"held out": int(held.sum())})
    lx, ly = fit_table.column(cx), fit_table.column(cy)
    x_low, y_low = float(lx.min()), float(ly.min())
    for name, low in (("E_x", x_low), ("E_y", y_low)):
        if name in fixed and not 0.0 <= fixed[name] < low:
            raise ArgumentError("fixed", f"{name} must be 0 or more and below the lowest loss fitted ({low:.6g})",
                                repr(fixed), f"{name}={fixed[name]:g}")
    held_at = (fixed.get("E_x", 0.0), "E_x" in fixed, fixed.get("E_y", 0.0), "E_y" in fixed)
    data = (lx, np.log(ly), x_low, y_low, *held_at, float(huber_delta))
    best = dom.fit_many(_VALUE_AND_GRAD, _starts(lx, ly, fixed), data, fit_table, bootstrap, seed,
                        what="law loss-to-loss")
    params = {k: float(v[0]) for k, v in _natural(best.theta, x_low, y_low, fixed).items()}
    samples = _natural(best.samples, x_low, y_low, fixed) if len(best.samples) else {}
    # An irreducible loss fitted at the lowest loss itself (its sigmoid saturated) is the edge of the search,
    # not an estimate: its bootstrap "interval" would be that one number in every resample.
    at_bound = {k: low for k, low in (("E_x", x_low), ("E_y", y_low))
                if k not in fixed and params[k] >= low * (1.0 - AT_BOUND)}
    result = LossToLossFit(
        x=cx, y=cy, params=params, at_bound=at_bound,
        ci95={k: v for k, v in dom.intervals(samples).items() if k not in fixed and k not in at_bound},
        fixed=fixed, objective=best.objective,
        huber_delta=float(huber_delta), n_points=fit_table.n_points, n_runs=fit_table.n_runs,
        dropped=dict(fit_table.dropped), n_starts=best.n_starts, n_converged=best.n_converged,
        n_resamples=len(best.samples), data=np.array([lx, ly]),
        held_data=np.array([table.column(cx)[held], table.column(cy)[held]]), samples=samples)
    if holdout:
        hold = HeldOut.of(dom.first_runs(table, lowest.index[:holdout]), result.predict(table.column(cx)[held]),
                          table.column(cy)[held], table.noise(cy).sd)
        result = _with(result, holdout=hold)
    return result


def _with(result: LossToLossFit, **changes) -> LossToLossFit:
    from dataclasses import replace

    return replace(result, **changes)


def fit_pairs(source, domains: Sequence[str], **options) -> dict[tuple[str, str], LossToLossFit]:
    """The law for every ordered pair (x before y in `domains`), e.g. for the figure of all pairs; a pair
    the law cannot fit is left out."""
    out = {}
    for x, y in itertools.combinations(domains, 2):
        try:
            out[(x, y)] = fit_loss_to_loss(source, x, y, **options)
        except UsageError:
            continue
    return out
