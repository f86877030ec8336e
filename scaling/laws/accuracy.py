"""Downstream accuracy as a sigmoid of loss, and accuracy at a compute budget (Llama 3's two steps).

    acc(L) = floor + (ceil - floor) / (1 + exp(s (L - L0))),   s > 0

L is a run's loss (any loss column) or the correct answer's negative log-likelihood on the task
(`task/<name>/nll`); floor is the accuracy of chance (1/choices: hold it with fixed={"floor": 0.25}, or
fit it), ceil the accuracy a perfect model reaches, L0 the loss halfway between. Least squares in
accuracy, summed; many starts; bootstrap over points (each with its seed replicates).

Step two: a loss law gives the loss at a budget C with a 95% interval (a `scaling fit --at C` JSON); each
bootstrap resample of the sigmoid is paired with a draw of that loss, so the accuracy's interval carries
both. The loss law's JSON holds its interval, not its resamples, so the draws are a two-piece normal
whose 2.5% and 97.5% points are the interval's ends (an approximation, exact for a normal loss).
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import jax.numpy as jnp
import numpy as np

import scaling.laws.domains as dom
from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.bootstrap import DEFAULT_RESAMPLES, interval
from scaling.laws.domains import check_holdout, fit_many, intervals, load_domain_table, read_frame, resolve_column
from scaling.laws.errors import ArgumentError
from scaling.laws.optim import autodiff_value_and_grad
from scaling.laws.result import Estimate, Table, estimates_frame

NAMES = ("floor", "ceil", "s", "L0")
FIXABLE = ("floor", "ceil")
MIN_POINTS = 5


def task_column(task: str, what: str) -> str:
    return f"task/{task}/{what}"


def _sigmoid(z):
    return 1.0 / (1.0 + jnp.exp(-z))


def _curve(T, x, floor_at, floor_held, ceil_at, ceil_held):
    """Accuracy (B, n) for T (B, 4) = (a, b, log s, L0): floor = sigmoid(a) (of ceil when ceil is held),
    ceil = floor + (1 - floor) sigmoid(b); a held parameter takes its value instead."""
    floor = jnp.where(floor_held, floor_at, jnp.where(ceil_held, ceil_at, 1.0) * _sigmoid(T[:, :1]))
    ceil = jnp.where(ceil_held, ceil_at, floor + (1.0 - floor) * _sigmoid(T[:, 1:2]))
    return floor + (ceil - floor) * _sigmoid(-jnp.exp(T[:, 2:3]) * (x[None, :] - T[:, 3:4]))


def _objective(T, x, acc, floor_at, floor_held, ceil_at, ceil_held, w):
    r = _curve(T, x, floor_at, floor_held, ceil_at, ceil_held) - acc
    return jnp.sum(w * 0.5 * r * r, axis=1)


_VALUE_AND_GRAD = autodiff_value_and_grad(_objective)


def accuracy(params: Mapping[str, np.ndarray], loss) -> np.ndarray:
    """The sigmoid at `loss` for natural parameters (arrays broadcast against the loss)."""
    with np.errstate(over="ignore"):
        return params["floor"] + (params["ceil"] - params["floor"]) / (
            1.0 + np.exp(params["s"] * (np.asarray(loss, np.float64) - params["L0"])))


def _natural(theta, fixed: Mapping[str, float]) -> dict[str, np.ndarray]:
    theta = np.atleast_2d(theta)
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    floor = np.full(len(theta), fixed["floor"]) if "floor" in fixed else (
        fixed.get("ceil", 1.0) * sig(theta[:, 0]))
    ceil = np.full(len(theta), fixed["ceil"]) if "ceil" in fixed else floor + (1 - floor) * sig(theta[:, 1])
    return {"floor": floor, "ceil": ceil, "s": np.exp(theta[:, 2]), "L0": theta[:, 3]}


def _starts(x: np.ndarray, acc: np.ndarray) -> np.ndarray:
    logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
    clip = lambda p: float(np.clip(p, 1e-3, 1 - 1e-3))  # noqa: E731
    spread = max(float(np.ptp(x)), 1e-6)
    rows = []
    for f, c, s, q in itertools.product((0.5, 0.9), (0.0, 0.5), (1.0, 4.0, 16.0, 64.0), (0.1, 0.3, 0.5, 0.7, 0.9)):
        floor = clip(f * acc.min())
        ceil = clip(acc.max() + c * (1 - acc.max()))
        rows.append([logit(floor), logit(clip((ceil - floor) / (1 - floor))), np.log(s / spread), np.quantile(x, q)])
    return np.array(rows)


@dataclass(frozen=True)
class LossAtBudget:
    """A loss law's prediction at a compute budget: the loss and its 95% interval (None: no interval)."""

    flops: float
    loss: float
    ci95: tuple[float, float] | None = None


@dataclass(frozen=True)
class AccuracyAt:
    """The accuracy predicted at a budget through its predicted loss, with the interval of both steps."""

    flops: float
    loss: float
    loss_ci95: tuple[float, float] | None
    accuracy: float
    ci95: tuple[float, float] | None

    def to_json(self) -> dict:
        return {"flops": self.flops, "loss": self.loss, "loss_ci95": None if self.loss_ci95 is None else
                list(self.loss_ci95), "accuracy": self.accuracy, "ci95": None if self.ci95 is None else list(self.ci95)}


@dataclass(frozen=True)
class AccuracyFit:
    """acc = floor + (ceil - floor) / (1 + exp(s (L - L0))), with 95% intervals; `at` the chained budgets."""

    task: str
    x: str
    params: Mapping[str, float]
    ci95: Mapping[str, tuple[float, float]]
    fixed: Mapping[str, float]
    objective: float
    n_points: int
    n_runs: int
    dropped: Mapping[str, int]
    n_starts: int
    n_converged: int
    n_resamples: int
    holdout: object = None  # domains.HeldOut
    at: tuple[AccuracyAt, ...] = ()
    data: np.ndarray = field(default=None, repr=False)  # (2, n) the fitted runs' loss and accuracy
    samples: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False)
    optimal: None = None
    law: str = "accuracy"

    title = "acc = floor + (ceil - floor) / (1 + exp(s (L - L0))): accuracy as a sigmoid of loss"
    label = "accuracy"

    def predict(self, loss) -> np.ndarray:
        return accuracy(self.params, loss)

    def method(self) -> str:
        return (f"least squares in accuracy, summed; best of {self.n_starts} starts ({self.n_converged} converged); "
                f"{self.n_resamples} bootstrap resamples (points, with their seeds)")

    def estimates(self) -> list[Estimate]:
        return [Estimate(f"{k} (fixed)" if k in self.fixed else k, v, self.ci95.get(k)) for k, v in self.params.items()]

    def details(self) -> list[Table]:
        if not self.at:
            return []
        return [Table(("budget (FLOPs)", "loss", "loss 95% lo", "loss 95% hi", "accuracy", "95% lo", "95% hi"),
                      tuple((a.flops, a.loss, *(a.loss_ci95 or (None, None)), a.accuracy, *(a.ci95 or (None, None)))
                            for a in self.at))]

    def notes(self) -> list[str]:
        out = [f"task {self.task}: accuracy against {self.x}"]
        if self.holdout is not None:
            out.append(self.holdout.describe("(the points of lowest loss)"))
        if self.at:
            out.append("accuracy at a budget: each sigmoid resample at a draw of the loss law's loss there (a "
                       "two-piece normal through its 95% interval)")
        return out

    def exponents(self):
        return None

    def frontier(self, flops, which: str):
        return None, None

    def to_frame(self):
        return estimates_frame(self.estimates(), tuple(self.fixed))

    def to_json(self) -> dict:
        out = {"law": self.law, "task": self.task, "x": self.x, "params": dict(self.params),
               "ci95": {k: list(v) for k, v in self.ci95.items()}, "fixed": dict(self.fixed),
               "objective": self.objective, "n_points": self.n_points, "n_runs": self.n_runs,
               "n_dropped": int(sum(self.dropped.values())), "dropped": dict(self.dropped), "n_starts": self.n_starts,
               "n_converged": self.n_converged, "bootstrap": self.n_resamples, "at": [a.to_json() for a in self.at]}
        if self.holdout is not None:
            out["holdout"] = self.holdout.to_json()
        return clean(out)

    def plot(self, ax, **style):
        """Accuracy against loss: the runs, the sigmoid, and the chained budgets with their intervals."""
        ax.plot(self.data[0], self.data[1], "o", ms=4, color=style.get("color", "C0"), label="runs")
        xs = [self.data[0].min(), self.data[0].max(), *(a.loss for a in self.at)]
        grid = np.linspace(min(xs), max(xs), 200)
        ax.plot(grid, self.predict(grid), "k-", lw=1.2, label="sigmoid fit")
        for a in self.at:
            err = None if a.ci95 is None else [[a.accuracy - a.ci95[0]], [a.ci95[1] - a.accuracy]]
            xerr = None if a.loss_ci95 is None else [[a.loss - a.loss_ci95[0]], [a.loss_ci95[1] - a.loss]]
            ax.errorbar([a.loss], [a.accuracy], yerr=err, xerr=xerr, fmt="*", ms=10, label=f"C = {a.flops:.2g}")
        ax.set_xlabel(self.x)
        ax.set_ylabel(f"accuracy on {self.task}")
        ax.legend(fontsize=7)
        return ax


def check_fixed(fixed: Mapping[str, float] | None) -> dict[str, float]:
    fixed = dict(fixed or {})
    for name, value in fixed.items():
        if name not in FIXABLE:
            raise ArgumentError("fixed", f"law accuracy holds only {' or '.join(FIXABLE)} fixed, not {name!r}",
                                repr(fixed), name)
        if not 0.0 <= value <= 1.0:
            raise ArgumentError("fixed", f"{name} is an accuracy, between 0 and 1", repr(fixed), f"{name}={value:g}")
    if fixed.get("floor", 0.0) >= fixed.get("ceil", 1.0) or fixed.get("floor", 0.0) >= 1.0:
        raise ArgumentError("fixed", "floor must be below ceil (and below 1)", repr(fixed))
    return fixed


def fit_accuracy(source, task: str, x: str = "loss", *, fixed: Mapping[str, float] | None = None,
                 bootstrap: int = DEFAULT_RESAMPLES, seed: int = 0, holdout: int = 0,
                 budgets: Sequence[LossAtBudget] = ()) -> AccuracyFit:
    """Fit a task's accuracy as a sigmoid of loss, and predict it at budgets from a loss law's losses.

    Args:
        source: a runs table (path or DataFrame) with a `task/<task>/acc` column.
        task: the task's name; x: the predictor: `nll` (the task's `task/<task>/nll`), a domain
            (`eval/<x>/loss`) or a column (default `loss`, the training corpus's validation loss).
        fixed: floor and/or ceil held at values ({"floor": 0.25} for four choices).
        bootstrap: resamples of points, each with its seed replicates; seed: theirs and the loss draws'.
        holdout: the points of lowest loss held out and predicted.
        budgets: a loss law's predictions (`loss_at_budgets`) to carry through the sigmoid.
    Raises:
        UsageError: missing columns, too few points; ArgumentError for a bad argument, by its name.
    """
    fixed = check_fixed(fixed)
    raw, _ = read_frame(source)
    acc_col = task_column(task, "acc")
    if acc_col not in raw.columns:
        have = sorted({c.split("/")[1] for c in raw.columns if c.startswith("task/")})
        raise ArgumentError("task", f"no column {acc_col!r} in the runs table (tasks: {', '.join(have) or 'none'})",
                            task)
    cx = task_column(task, "nll") if x == "nll" else resolve_column(raw, x, "x")
    table = load_domain_table(source, [cx, acc_col], positive=[cx])
    bad = (table.frame[acc_col] > 1).sum()
    table = table.with_frame(table.frame[table.frame[acc_col] <= 1], **{f"bad {acc_col} (above 1)": int(bad)})
    lowest = table.frame.groupby("point", sort=False)[cx].mean().sort_values(kind="stable")
    if len(lowest) < MIN_POINTS:
        raise UsageError(f"law accuracy needs at least {MIN_POINTS} points; the table has {len(lowest)} usable")
    check_holdout(holdout, len(lowest), MIN_POINTS)
    held = table.frame["point"].isin(lowest.index[:holdout]).to_numpy()
    fit_table = table.with_frame(table.frame[~held], **{"held out": int(held.sum())})
    lx, acc = fit_table.column(cx), fit_table.column(acc_col)
    data = (lx, acc, fixed.get("floor", 0.0), "floor" in fixed, fixed.get("ceil", 1.0), "ceil" in fixed)
    best = fit_many(_VALUE_AND_GRAD, _starts(lx, acc), data, fit_table, bootstrap, seed, what="law accuracy")
    params = {k: float(v[0]) for k, v in _natural(best.theta, fixed).items()}
    samples = _natural(best.samples, fixed) if len(best.samples) else {}
    result = AccuracyFit(
        task=task, x=cx, params=params, ci95={k: v for k, v in intervals(samples).items() if k not in fixed},
        fixed=fixed, objective=best.objective, n_points=fit_table.n_points, n_runs=fit_table.n_runs,
        dropped=dict(fit_table.dropped), n_starts=best.n_starts, n_converged=best.n_converged,
        n_resamples=len(best.samples), data=np.array([lx, acc]), samples=samples)
    if holdout:
        hold = dom.HeldOut.of(dom.first_runs(table, lowest.index[:holdout]), result.predict(table.column(cx)[held]),
                          table.column(acc_col)[held], table.noise(acc_col).sd)
        result = replace(result, holdout=hold)
    return replace(result, at=accuracy_at(result, budgets, seed)) if budgets else result


def accuracy_at(fit: AccuracyFit, budgets: Sequence[LossAtBudget], seed: int = 0) -> tuple[AccuracyAt, ...]:
    """Step two: the accuracy at each budget's loss, its interval from every sigmoid resample paired with
    a draw of the loss (without resamples, the sigmoid at the loss interval's ends)."""
    rng = np.random.default_rng(seed)
    out = []
    for b in budgets:
        value = float(fit.predict(b.loss))
        ci = None
        if fit.samples:
            z = rng.standard_normal(len(fit.samples["s"]))
            loss = np.full(len(z), b.loss)
            if b.ci95 is not None:  # the 2.5% and 97.5% points of N(0, 1) are -+1.96
                loss = b.loss + np.where(z > 0, (b.ci95[1] - b.loss), (b.loss - b.ci95[0])) * z / 1.959964
            ci = interval(accuracy(fit.samples, loss))
        elif b.ci95 is not None:  # the sigmoid falls with loss: the high loss gives the low accuracy
            ci = (float(fit.predict(b.ci95[1])), float(fit.predict(b.ci95[0])))
        out.append(AccuracyAt(flops=b.flops, loss=b.loss, loss_ci95=b.ci95, accuracy=value, ci95=ci))
    return tuple(out)


def loss_at_budgets(fit_json: Mapping, budgets: Sequence[float] = ()) -> list[LossAtBudget]:
    """The losses a `scaling fit --at C1,C2 --json` file predicts (`optimal.at`), at `budgets` (default all).

    Raises:
        ArgumentError (`loss_fit`): the JSON has no loss at a budget, or not at one of `budgets`.
    """
    at = ((fit_json.get("optimal") or {}).get("at") or []) if isinstance(fit_json, Mapping) else []
    points = [LossAtBudget(float(p["flops"]), float(p["loss"]),
                           tuple(p["ci95"]["loss"]) if (p.get("ci95") or {}).get("loss") else None)
              for p in at if isinstance(p, Mapping) and p.get("loss") is not None and p.get("flops") is not None]
    if not points:
        raise ArgumentError("loss_fit", "has no loss at a budget (its optimal.at is empty): fit the loss law "
                            "with --at C1,C2 --json FIT.json first")
    if not budgets:
        return points
    chosen = []
    for c in budgets:
        match = [p for p in points if np.isclose(p.flops, c, rtol=1e-6)]
        if not match:
            raise ArgumentError("budgets", f"the loss fit has no loss at {c:g} FLOPs (it has "
                                f"{', '.join(f'{p.flops:g}' for p in points)}): refit it with --at", f"{c:g}")
        chosen.append(match[0])
    return chosen
