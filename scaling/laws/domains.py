"""Runs measured on several evaluation domains: the table the mixture, loss-to-loss and accuracy laws read,
and the fitting steps they share (many starts, then warm-started bootstrap resamples).

Columns (docs/contracts.md "The runs table", "Domain columns"): `mix/<domain>` the share of a training
domain in the run's mixture, `eval/<domain>/loss` (and `/bpb`) the final loss on an evaluation domain,
`task/<name>/acc` and `task/<name>/nll` a task's accuracy and the correct answer's negative log-likelihood.
A table has one row per run (a `step` column: each run's last row is kept); runs that differ only in
`seed` are replicates of one point and are resampled together (bootstrap.py).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from scaling.errors import UsageError
from scaling.laws.bootstrap import interval, two_level_weights
from scaling.laws.errors import ArgumentError
from scaling.laws.noise import NoiseEstimate, noise_floor
from scaling.laws.optim import BatchResult, Tolerances, minimize_batched
from scaling.laws.parametric import distinct_optima
from scaling.laws.table import COMPLETE, POINT_KEYS, RunsTable, describe_dropped, numeric_column, read_table

MIX_PREFIX = "mix/"
WARM_STARTS = 4


def eval_column(name: str) -> str:
    """The runs-table column of `name`: `eval/<d>/loss` for a domain `d` (or `d:loss`), `eval/<d>/bpb` for
    `d:bpb`; a name that is a column already (`loss`, `task/x/nll`) stays as it is."""
    domain, _, metric = name.partition(":")
    return f"eval/{domain}/{metric or 'loss'}"


def resolve_column(frame: pd.DataFrame, name: str, parameter: str) -> str:
    """The column a user's NAME means (`eval_column`, or the literal column), or ArgumentError naming the
    domains the table has."""
    for column in (name, eval_column(name)):
        if column in frame.columns:
            return column
    have = sorted({c.split("/")[1] for c in frame.columns if c.startswith("eval/") and c.count("/") == 2})
    raise ArgumentError(parameter, f"no column {eval_column(name)!r} or {name!r} in the runs table (evaluation "
                        f"domains: {', '.join(have) or 'none'})", name)


@dataclass(frozen=True)
class DomainTable:
    """Validated rows (one per run) with string columns `run` and `point` (replicates share a point)."""

    frame: pd.DataFrame = field(repr=False)
    n_input: int
    dropped: Mapping[str, int]
    source: str = "<DataFrame>"

    @property
    def n_points(self) -> int:
        return len(self.frame)

    @property
    def n_runs(self) -> int:
        return int(self.frame["run"].nunique())

    def column(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy(dtype=np.float64)

    def run_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(run index of every row, point index of every run): the two levels of the bootstrap."""
        runs = pd.factorize(self.frame["run"], sort=False)[0].astype(np.int64)
        points = pd.factorize(self.frame["point"], sort=False)[0].astype(np.int64)
        point_of_run = np.zeros(runs.max() + 1 if len(runs) else 0, dtype=np.int64)
        point_of_run[runs] = points
        return runs, point_of_run

    def with_frame(self, frame: pd.DataFrame, **dropped: int) -> DomainTable:
        merged = dict(self.dropped)
        for k, v in dropped.items():
            if v:
                merged[k] = merged.get(k, 0) + int(v)
        return replace(self, frame=frame.reset_index(drop=True), dropped=merged)

    def noise(self, column: str) -> NoiseEstimate:
        """The pooled SD of `column` between seed replicates of one point (noise.py, on this column)."""
        frame = self.frame.assign(loss=self.frame[column], flops=0.0)
        runs = RunsTable(frame=frame, n_input=len(frame), dropped={})
        return noise_floor(runs, np.zeros(len(frame), np.int64), np.zeros(1)).pooled


def read_frame(source) -> tuple[pd.DataFrame, str]:
    """A raw table (path or DataFrame) with stripped column names and each run's last row."""
    if isinstance(source, (DomainTable, RunsTable)):
        return source.frame.drop(columns=[c for c in ("run", "point") if c in source.frame.columns]), source.source
    frame, name = read_table(source)
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    if "step" in frame.columns and "run_id" in frame.columns:
        frame = frame.sort_values("step", kind="stable").groupby("run_id", sort=False).tail(1)
    return frame, name


def load_domain_table(source, columns: Sequence[str], positive: Sequence[str] = (),
                      point_keys: Sequence[str] = ()) -> DomainTable:
    """Rows with a finite number in every one of `columns` (those in `positive` also > 0), complete runs only.

    Rows with a missing or bad value, or an unfinished status, are dropped and counted by why; a
    non-numeric value is an error. Points: equal `point_keys` and POINT_KEYS (seeds are replicates).
    Raises:
        UsageError: a column is missing, or no row is usable.
    """
    raw, name = read_frame(source)
    n_input = len(raw)
    absent = [c for c in columns if c not in raw.columns]
    if absent:
        raise UsageError(f"runs table {name} has no column {absent[0]!r} (columns: {', '.join(raw.columns)})")
    frame = raw.reset_index(drop=True)
    dropped: dict[str, int] = {}
    if "status" in frame.columns:
        status = frame["status"].astype("string").str.strip().str.lower().fillna("")
        other = ~status.isin(COMPLETE | {""})
        for why, n in status[other].value_counts(sort=False).items():
            dropped[f"status {why}"] = int(n)
        frame = frame[~other]
    frame = frame.copy()
    for col in columns:
        frame[col] = numeric_column(frame[col], col, finite=False)
    missing = frame[list(columns)].isna().any(axis=1)
    dropped["missing values"] = int(missing.sum())
    frame = frame[~missing]
    for col in columns:
        values = frame[col]
        bad = ~np.isfinite(values) | ((values <= 0) if col in positive else (values < 0))
        if bad.any():
            dropped[f"bad {col} (e.g. {values[bad].iloc[0]:g})"] = int(bad.sum())
            frame = frame[~bad]
    dropped = {k: v for k, v in dropped.items() if v}
    if not len(frame):
        raise UsageError(f"runs table {name} has no usable rows ({describe_dropped(dropped)})")
    frame = frame.reset_index(drop=True)
    frame["run"] = (frame["run_id"].astype(str) if "run_id" in frame.columns
                    else pd.Series([f"row{i}" for i in range(len(frame))]))
    # runs of different mixtures are never replicates of one point, whichever law reads them
    mixes = [c for c in frame.columns if str(c).startswith(MIX_PREFIX)]
    keys = [c for c in dict.fromkeys([*point_keys, *POINT_KEYS, *mixes]) if c in frame.columns]
    frame["point"] = frame[keys].map(str).agg("|".join, axis=1) if keys else frame["run"]
    return DomainTable(frame=frame, n_input=n_input, dropped=dropped, source=name)


@dataclass(frozen=True)
class Optimum:
    """The best of many starts and the bootstrap resamples' optima, in optimizer coordinates."""

    theta: np.ndarray
    objective: float
    n_starts: int
    n_converged: int
    samples: np.ndarray  # (R, P)


def fit_many(vg, starts: np.ndarray, data: tuple, table: DomainTable, bootstrap: int, seed: int,
             tol: Tolerances = Tolerances(), what: str = "law") -> Optimum:
    """Minimise `vg` from every start, then refit each of `bootstrap` two-level resamples (points, each
    with all its seeds) from the few best distinct optima, as the parametric laws do."""
    result: BatchResult = minimize_batched(vg, starts, data=data, tol=tol)
    best = result.best()
    if not np.isfinite(result.fun[best]):
        raise UsageError(f"{what}: no start reached a finite objective; check the table's values")
    samples = np.zeros((0, starts.shape[1]))
    if bootstrap > 0:
        codes, point_of_run = table.run_points()
        weights = two_level_weights(codes, point_of_run, bootstrap, seed)
        warm = distinct_optima(result, WARM_STARTS)
        k = len(warm)
        res = minimize_batched(vg, np.tile(warm, (bootstrap, 1)), data=data, weights=weights,
                               weight_rows=np.repeat(np.arange(bootstrap), k), tol=tol)
        f = np.where(np.isfinite(res.fun), res.fun, np.inf).reshape(bootstrap, k)
        samples = res.x.reshape(bootstrap, k, -1)[np.arange(bootstrap), np.argmin(f, axis=1)]
    return Optimum(theta=result.x[best], objective=float(result.fun[best]), n_starts=len(result.fun),
                   n_converged=int(result.converged.sum()), samples=samples)


def intervals(samples: Mapping[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of natural parameters' bootstrap values (none from fewer than 2)."""
    return {k: interval(v) for k, v in samples.items() if len(v) > 1}


@dataclass(frozen=True)
class HeldOut:
    """How well a fit predicts runs it did not see: absolute errors in the loss's unit and relative ones,
    with the run-to-run noise of the same quantity (None without seed replicates) to read them against."""

    runs: int
    points: tuple[str, ...]  # what was held out (a mixture, a run), for the reader
    mean_abs_error: float
    max_abs_error: float
    mean_abs_rel_error: float
    noise_sd: float | None

    @staticmethod
    def of(points: Sequence[str], predicted, observed, noise_sd: float | None) -> HeldOut:
        predicted, observed = np.asarray(predicted, np.float64), np.asarray(observed, np.float64)
        err = np.abs(predicted - observed)
        return HeldOut(runs=len(observed), points=tuple(points), mean_abs_error=float(np.mean(err)),
                       max_abs_error=float(np.max(err)), mean_abs_rel_error=float(np.mean(err / np.abs(observed))),
                       noise_sd=noise_sd)

    def describe(self, what: str) -> str:
        noise = ("" if self.noise_sd is None else
                 f" (run-to-run noise SD {self.noise_sd:.3g}: {self.mean_abs_error / self.noise_sd:.2g} x; a "
                 "law exact up to that noise scores about 0.8 x)")
        return (f"holdout {what}: {self.runs} runs of {len(self.points)} unseen points predicted with mean |error| "
                f"{self.mean_abs_error:.3g}{noise}, max {self.max_abs_error:.3g}, mean |relative error| "
                f"{100 * self.mean_abs_rel_error:.3g}%")

    def to_json(self) -> dict:
        return {"runs": self.runs, "points": list(self.points), "mean_abs_error": self.mean_abs_error,
                "max_abs_error": self.max_abs_error, "mean_abs_rel_error": self.mean_abs_rel_error,
                "noise_sd": self.noise_sd}


def first_runs(table: DomainTable, points) -> list[str]:
    """A readable name of each point: its first run."""
    first = table.frame.groupby("point", sort=False)["run"].first()
    return [str(first[p]) for p in points]


def check_no_fixed(fixed, law: str) -> None:
    if fixed:
        raise ArgumentError("fixed", f"law {law} holds no parameter fixed", repr(dict(fixed)),
                            ",".join(f"{k}={v:g}" for k, v in dict(fixed).items()))


def check_holdout(holdout: int, points: int, need: int) -> None:
    """At least `need` points must remain to fit after holding `holdout` out."""
    if holdout < 0:
        raise ArgumentError("holdout", "must be 0 or more", str(holdout))
    if holdout and points - holdout < need:
        left = f"leaves {points - holdout} points to fit" if holdout < points else "leaves no points to fit"
        raise ArgumentError("holdout", f"{left}; the law needs {need} (the table has {points})", str(holdout))
