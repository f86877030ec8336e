"""The runs table a fit reads: loading, validation, derived columns, best-of grouping, holdout split.

Contract (docs/contracts.md, "The runs table"): one row per finished run or per evaluated checkpoint;
`loss` and any two of `params`, `tokens`, `flops` are required, the third follows from C = 6 N D. Every
user mistake raises `UsageError` with one line that names the column, the row and what is allowed.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import UsageError
from scaling.laws.errors import ArgumentError

SIZE_COLUMNS = ("params", "tokens", "flops")
# Statuses of a run that finished and whose loss a fit may use (this workbench writes "complete"; the others
# are other trackers' words). Any other status (diverged, interrupted, skipped, failed, ...) is dropped and
# counted under its name: a diverged run's last loss is not a point on the law. A blank status is kept.
COMPLETE = frozenset({"complete", "completed", "finished", "done", "success", "succeeded", "ok"})
# Past these a value is not a measurement but a corrupt row: 1e40 FLOPs is ~1e14 times the largest training
# run to date and keeps C = 6ND finite (1e308 does not); a loss of 1e3 nats is a uniform guess over e^1000
# tokens. Such rows are dropped and counted like missing values, rather than overflowing the fit.
MAX_SIZE = 1e40
MAX_LOSS = 1e3
# Columns that tell runs apart when there is no run_id (per-checkpoint rows of one run share them).
RUN_KEYS = ("sweep_id", "params", "params_nonembed", "lr", "batch_size", "seed", "epochs", "flops_budget")
# Columns that make runs the same experiment: replicates of a point differ in `seed` (and run_id) only.
# Measurements (loss, wall time, throughput) are left out; so is `step`, which tells rows of one run apart.
POINT_KEYS = ("sweep_id", "params", "tokens", "params_nonembed", "flops_budget", "lr", "batch_size", "seq_len",
              "epochs", "d_model", "n_layers", "n_heads", "steps", "corpus", "corpus_fingerprint", "branch_of")


@dataclass(frozen=True)
class RunsTable:
    """A validated runs table.

    `frame` has float columns `params` (the chosen parameter count), `tokens`, `flops`, `loss`, a
    string column `run` (whole-run identity, for bootstrap and holdout), a string column `point`
    (runs that are seed replicates of one configuration share it), and every other input column.
    """

    frame: pd.DataFrame = field(repr=False)
    n_input: int
    dropped: Mapping[str, int]
    params_column: str = "params"
    source: str = "<DataFrame>"
    metric: str = "loss"  # what `loss` holds: the eval loss in nats/token, or bits per byte ("bpb")

    @property
    def n_points(self) -> int:
        return len(self.frame)

    @property
    def n_dropped(self) -> int:
        return int(sum(self.dropped.values()))

    @property
    def n_runs(self) -> int:
        return int(self.frame["run"].nunique())

    def column(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy(dtype=np.float64)

    def run_codes(self) -> tuple[np.ndarray, int]:
        """Integer run index of every row and the number of runs."""
        codes, uniques = pd.factorize(self.frame["run"], sort=False)
        return codes.astype(np.int64), len(uniques)

    @property
    def n_replicated(self) -> int:
        """Points with more than one run (seed replicates)."""
        runs = self.frame.drop_duplicates("run")
        return int((runs.groupby("point", sort=False).size() > 1).sum())

    def point_codes(self) -> tuple[np.ndarray, int]:
        """Integer point index of every row and the number of points."""
        codes, uniques = pd.factorize(self.frame["point"], sort=False)
        return codes.astype(np.int64), len(uniques)

    def run_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(run index of every row, point index of every run): the two levels of the bootstrap."""
        runs, _ = self.run_codes()
        points, _ = self.point_codes()
        point_of_run = np.zeros(runs.max() + 1 if len(runs) else 0, dtype=np.int64)
        point_of_run[runs] = points
        return runs, point_of_run

    def with_frame(self, frame: pd.DataFrame, **dropped: int) -> RunsTable:
        merged = dict(self.dropped)
        for k, v in dropped.items():
            if v:
                merged[k] = merged.get(k, 0) + int(v)
        return replace(self, frame=frame.reset_index(drop=True), dropped=merged)


def read_table(source) -> tuple[pd.DataFrame, str]:
    """A DataFrame from a DataFrame, a CSV path or a Parquet path."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), "<DataFrame>"
    path = Path(source)
    if not path.exists():
        raise UsageError(f"cannot read runs table {path}: no such file")
    if path.is_dir():
        raise UsageError(f"cannot read runs table {path}: it is a directory (pass a CSV or Parquet file)")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except Exception as err:  # pandas raises many types; the user only needs the first line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"cannot read runs table {path}: {first}") from None
    return frame, str(path)


METRICS = {"loss": "loss", "bpb": "eval_bpb"}  # --metric -> the runs-table column fitted as `loss`


def load_runs(source, *, params_column: str = "params", best_of: Iterable[str] = (), metric: str = "loss") -> RunsTable:
    """Read and validate a runs table (path, or DataFrame) into a `RunsTable`.

    Dropped and counted by why (`RunsTable.dropped`): rows with a missing value in a needed column,
    rows whose status is other than complete (by status), rows with an infinite, non-positive or absurd
    value (beyond MAX_SIZE / MAX_LOSS), and exact duplicates of an earlier row (one copy kept: without a
    run id a copy would pass for a seed replicate with the same loss, and fake a zero noise floor).
    Non-numeric values are errors, and so is a table with no usable row left.
    `params_column` picks which count is N (e.g. `params_nonembed`).
    `best_of` keeps, for each (N, D), the row with the lowest loss across those hyperparameter columns.

    Args:
        source: a CSV or Parquet path, or a DataFrame.
        params_column: the column used as N.
        best_of: hyperparameter columns to take the best loss over.
        metric: "loss" (nats/token) or "bpb" (the `eval_bpb` column: bits per byte, comparable across
            tokenizers), fitted as the loss.
    Returns:
        RunsTable: validated rows with params, tokens, flops, loss and a whole-run id.
    Raises:
        UsageError: a missing column or a bad value, named in one line.
    """
    raw, name = read_table(source)
    raw.columns = [str(c).strip() for c in raw.columns]
    n_input = len(raw)
    if n_input == 0:
        raise UsageError(f"runs table {name} has no rows")
    frame = raw.copy()
    if metric not in METRICS:
        raise ArgumentError("metric", f"expected one of {', '.join(METRICS)}", repr(metric))
    if metric != "loss":
        if METRICS[metric] not in frame.columns:
            raise ArgumentError("metric", f"the runs table {name} has no {METRICS[metric]!r} column "
                                f"(columns: {', '.join(map(str, raw.columns))})", repr(metric), metric)
        frame = frame.rename(columns={"loss": "loss_nats"}).rename(columns={METRICS[metric]: "loss"})
    if params_column != "params":
        if params_column not in frame.columns:
            raise ArgumentError("params_column", "not a column of the runs table "
                                f"(columns: {', '.join(map(str, raw.columns))})", repr(params_column))
        if "params" in frame.columns:
            frame = frame.rename(columns={"params": "params_total"})
        frame = frame.rename(columns={params_column: "params"})
    sizes = [c for c in SIZE_COLUMNS if c in frame.columns]
    if "loss" not in frame.columns or len(sizes) < 2:
        missing = ["loss"] if "loss" not in frame.columns else []
        if len(sizes) < 2:
            missing.append("two of params, tokens, flops")
        raise UsageError(f"runs table {name} is missing {' and '.join(missing)} "
                         f"(columns: {', '.join(map(str, raw.columns)) or 'none'})")
    needed = ["loss", *sizes]
    for col in needed:
        frame[col] = numeric_column(frame[col], col, finite=False)

    dropped: dict[str, int] = {}
    try:
        duplicate = frame.duplicated(keep="first")
    except TypeError:  # a column of lists (Parquet) cannot be hashed; its text can
        duplicate = frame.astype(str).duplicated(keep="first")
    dropped["exact duplicate rows (one copy kept)"] = int(duplicate.sum())
    frame = frame[~duplicate]
    if "status" in frame.columns:
        status = frame["status"].astype("string").str.strip().str.lower().fillna("")
        other = ~status.isin(COMPLETE | {""})
        for name, n in status[other].value_counts(sort=False).items():
            dropped[f"status {name}"] = int(n)
        frame = frame[~other]
    missing_rows = frame[needed].isna().any(axis=1)
    dropped["missing values"] = int(missing_rows.sum())
    frame = frame[~missing_rows]
    frame = _derive(frame)
    for col in (*needed, *(c for c in SIZE_COLUMNS if c not in needed)):
        bad = bad_values(frame[col], col)
        if bad.any():
            first = frame.loc[bad, col].iloc[0]
            dropped[f"bad {col} (e.g. {first:g})"] = int(bad.sum())
            frame = frame[~bad]
    dropped = {k: v for k, v in dropped.items() if v}
    if not len(frame):
        raise UsageError(f"runs table {name} has no usable rows ({sum(dropped.values())} dropped: "
                         f"{describe_dropped(dropped)})")
    frame["run"] = _run_ids(frame)
    best_of = [c.strip() for c in best_of if c.strip()]
    frame["point"] = _point_ids(frame, best_of)
    table = RunsTable(frame=frame.reset_index(drop=True), n_input=n_input, dropped=dropped,
                      params_column=params_column, source=name, metric=metric)
    return keep_best_of(table, best_of) if best_of else table


def bad_values(values: pd.Series, col: str) -> pd.Series:
    """Which values of a size or loss column are no measurement: infinite, not positive, or past MAX_SIZE
    (MAX_LOSS for the loss)."""
    limit = MAX_LOSS if col == "loss" else MAX_SIZE
    return ~((values > 0) & (values <= limit))


def numeric_column(values: pd.Series, col: str, finite: bool = True) -> pd.Series:
    """Floats from a column; one-line UsageError naming the first non-numeric (or, with `finite`,
    infinite) value."""
    num = pd.to_numeric(values, errors="coerce")
    text = values.astype("string").str.strip()
    bad = num.isna() & values.notna() & ~text.str.lower().isin(["", "nan", "none", "null", "na", "<na>"])
    if bad.any():
        row = bad.idxmax()
        raise UsageError(f"column {col!r} has a non-numeric value {str(values[row])!r} (row {row + 1})")
    num = num.astype(np.float64)
    inf = np.isinf(num)
    if finite and inf.any():
        row = inf.idxmax()
        raise UsageError(f"column {col!r} has a non-finite value {num[row]} (row {row + 1})")
    return num


def _derive(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    if "flops" not in frame.columns:
        frame["flops"] = 6.0 * frame["params"] * frame["tokens"]
    elif "tokens" not in frame.columns:
        frame["tokens"] = frame["flops"] / (6.0 * frame["params"])
    elif "params" not in frame.columns:
        frame["params"] = frame["flops"] / (6.0 * frame["tokens"])
    return frame


def _run_ids(frame: pd.DataFrame) -> pd.Series:
    """Whole-run identity: run_id, else the configuration columns when rows are checkpoints, else the row."""
    rows = pd.Series([f"row{i}" for i in frame.index], index=frame.index)
    if "run_id" in frame.columns:
        ids = frame["run_id"].astype("string")
        return ids.where(frame["run_id"].notna(), rows).astype(str)
    if "step" in frame.columns:
        keys = [c for c in RUN_KEYS if c in frame.columns]
        return frame[keys].map(str).agg("|".join, axis=1)
    return rows


def _point_ids(frame: pd.DataFrame, extra: Iterable[str] = ()) -> pd.Series:
    """Which runs are replicates of one point: a given `point` column, else equal configuration columns
    (read from each run's last row, so that the checkpoints of one run, whose tokens grow, stay one point)."""
    if "point" in frame.columns and frame["point"].notna().all():
        return frame["point"].astype(str)
    keys = [c for c in dict.fromkeys([*POINT_KEYS, *extra]) if c in frame.columns]
    order = frame["step"] if "step" in frame.columns else frame["flops"]
    last = frame.assign(_order=order.to_numpy()).sort_values("_order", kind="stable").groupby("run", sort=False).tail(1)
    # Float columns print with repr precision: replicates planned by the same code agree to the last digit.
    # map(str), not astype(str): pandas 3 keeps a missing value as NaN under astype(str), and join fails.
    per_run = last.set_index("run")[keys].map(str).agg("|".join, axis=1)
    return frame["run"].map(per_run).astype(str)


def keep_best_of(table: RunsTable, columns: list[str]) -> RunsTable:
    """For each (N, D), keep the lowest-loss point across the swept hyperparameters `columns` (by the
    mean over its seed replicates).

    Returns:
        A RunsTable with one point per (N, D) (with its replicates); the others counted as dropped.
    """
    absent = [c for c in columns if c not in table.frame.columns]
    if absent:
        raise ArgumentError("best_of", f"no column {absent[0]!r} in the runs table "
                            f"(columns: {', '.join(c for c in table.frame.columns if c != 'run')})")
    frame = table.frame
    # The best point by its replicates' mean, kept with all its replicates: the minimum over seeds would
    # pick the luckiest seed and erase the noise the fit should see.
    means = frame.groupby("point", sort=False).agg(params=("params", "first"), tokens=("tokens", "first"),
                                                   loss=("loss", "mean"))
    best_points = means.loc[means.groupby(["params", "tokens"], sort=False)["loss"].idxmin()].index
    best = frame[frame["point"].isin(best_points)]
    return table.with_frame(best, **{f"not best of {','.join(columns)}": len(frame) - len(best)})


def holdout_split(table: RunsTable, k: int) -> tuple[RunsTable, RunsTable]:
    """Split off the K runs with the largest compute (their largest FLOP count).

    Returns:
        (fit, held out) RunsTables.
    """
    if k <= 0:
        return table, table.with_frame(table.frame.iloc[0:0])
    per_run = table.frame.groupby("run", sort=False)["flops"].max().sort_values(ascending=False, kind="stable")
    if k >= len(per_run):
        raise ArgumentError("holdout", f"leaves no runs to fit (the table has {len(per_run)} runs)", str(k))
    held = table.frame["run"].isin(per_run.index[:k])
    fit = table.with_frame(table.frame[~held], **{"held out": int(held.sum())})
    return fit, table.with_frame(table.frame[held])


# How far past the compute a table measured a law may be asked about before the answer is mostly the
# form's assumption: a factor 1e6 either way (Hoffmann et al. 2022 went about 1e3 past their largest run).
REACH = 1e6


class ExtrapolationWarning(UserWarning):
    """A budget asked of a law lies outside [smallest C measured / REACH, largest C measured x REACH]."""


def reach_warnings(table: RunsTable, budgets: Sequence[float]) -> list[str]:
    """One line per budget outside the table's reach, with its extrapolation factor (C over the largest
    C measured, or under the smallest)."""
    flops = table.column("flops")
    lo, hi = float(flops.min()), float(flops.max())
    out = []
    for c in budgets:
        if c > hi * REACH:
            out.append(f"at={c:g} FLOPs is {c / hi:.3g} times the largest compute measured ({hi:.3g}): an "
                       f"extrapolation past the law's reach (x{REACH:g}), read its interval with care")
        elif c < lo / REACH:
            out.append(f"at={c:g} FLOPs is {c / lo:.3g} times the smallest compute measured ({lo:.3g}): an "
                       f"extrapolation past the law's reach (/{REACH:g}), read its interval with care")
    return out


def warn_reach(table: RunsTable, budgets: Sequence[float]) -> None:
    """Warn (ExtrapolationWarning) for each budget outside the table's reach (`reach_warnings`)."""
    for line in reach_warnings(table, budgets):
        warnings.warn(line, ExtrapolationWarning, stacklevel=3)


def describe_dropped(dropped: Mapping[str, int]) -> str:
    """'3 missing values, 1 unfinished' (or 'none')."""
    return ", ".join(f"{v} {k}" for k, v in dropped.items()) or "none"


def warning_notes(caught: Iterable[warnings.WarningMessage]) -> tuple[list[str], str | None]:
    """The warnings a fit raised, for a person: each distinct message once (a budget past the reach, ...),
    and the numeric ones (an exp overflowing at a far-off optimizer start) counted in one line, or None."""
    caught = list(caught)
    numeric = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    messages = list(dict.fromkeys(str(w.message) for w in caught if not issubclass(w.category, RuntimeWarning)))
    count = f"{len(numeric)} numeric warning(s) while fitting (first: {numeric[0].message})" if numeric else None
    return messages, count
