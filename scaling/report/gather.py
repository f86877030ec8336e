"""The runs a report is made of: a sweep's finished runs from the run home (with per-step rows and the
runs left out, with reasons), or a runs table from a file."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from scaling.errors import UsageError
from scaling.laws import load_runs
from scaling.laws.table import MAX_LOSS, MAX_SIZE, bad_values
from scaling.report.ladder import split as ladder_split
from scaling.runs import RunHome, runs_table
from scaling.runs.table import metric_column, on_metric


@dataclass(frozen=True)
class ExcludedRun:
    run_id: str
    status: str
    reason: str


@dataclass
class ReportData:
    runs: pd.DataFrame  # one row per finished run (the fit's input)
    steps: pd.DataFrame | None = None  # one row per evaluated checkpoint (training curves)
    excluded: list[ExcludedRun] = field(default_factory=list)
    source: str = ""
    metric: str = "loss"  # what the `loss` columns hold: eval loss in nats/token, or bits per byte ("bpb")
    ladder: pd.DataFrame | None = None  # ladder runs (config `validates`): in no fit, checked (report/ladder.py)

    @property
    def loss_unit(self) -> str:
        return "bits/byte" if self.metric.rpartition(":")[2] == "bpb" else "nats/token"


def with_metric(data: ReportData, metric: str) -> ReportData:
    """The report on another metric: for "bpb", `loss` becomes each run's eval_bpb (bits per byte,
    comparable across tokenizers; nats/token kept as `loss_nats`), and runs without one are left out
    with the reason."""
    if metric == "loss":
        return data
    column = metric_column(metric)  # an evaluation set's NAME:loss or NAME:bpb too
    if column not in data.runs.columns and metric == "bpb":
        raise UsageError("metric bpb: the runs have no eval_bpb column (runs made before bits per byte were "
                         "recorded, or a table without it)")
    on_metric(data.runs, metric)  # an evaluation set the runs lack: one line naming the sets they have
    kept, dropped = [], []
    for frame in (data.runs, data.steps):
        if frame is None:
            kept.append(None)
            continue
        has = pd.to_numeric(frame[column], errors="coerce").notna() if column in frame.columns else frame.index < 0
        dropped.append(frame[~has])
        kept.append(on_metric(frame[has], metric).reset_index(drop=True))
    why = ("no bits per byte (its corpus records no text bytes: a bare token file or a synthetic corpus)"
           if metric == "bpb" else f"no {column} (not evaluated on that set, or no bytes to count for bpb)")
    excluded = data.excluded + [ExcludedRun(str(r), "complete", why) for r in dropped[0].get("run_id", [])]
    if not len(kept[0]):
        raise UsageError(f"metric {metric}: none of the runs has {'bits per byte' if metric == 'bpb' else column} "
                         f"({why})")
    ladder = data.ladder  # checked on the same metric; a ladder run without it is not checked
    if ladder is not None:
        has = pd.to_numeric(ladder[column], errors="coerce").notna() if column in ladder.columns else ladder.index < 0
        ladder = on_metric(ladder[has], metric).reset_index(drop=True) if has.any() else None
    return ReportData(runs=kept[0], steps=kept[1], excluded=excluded, source=data.source, metric=metric,
                      ladder=ladder)


def gather(home: RunHome | str | None, sweep: str | None = None, csv: str | None = None) -> ReportData:
    """The runs a report is made of.

    Args:
        home: the run home (used with `sweep`).
        sweep: a sweep id: its completed runs, per-step rows, and the runs left out with reasons.
        csv: a runs table file (CSV or Parquet) instead of a sweep.
    Returns:
        ReportData with `runs` (one row per run) and `steps` (per-checkpoint rows, when known).
    """
    if csv:
        # The fitter's own checks and messages, and its derived columns: a table with params and tokens
        # has its flops (C = 6ND) here too, as the figures need them.
        table = load_runs(csv)
        frame = table.frame.drop(columns=["run"])
        excluded = [ExcludedRun(f"{n} row(s)", "dropped", why) for why, n in table.dropped.items()]
        steps = frame if "step" in frame.columns else None
        if steps is not None:  # the final evaluation of each run is the fit's point
            frame = steps.sort_values("step").groupby(steps.get("run_id", steps.index), sort=False).tail(1)
        frame, steps, ladder = ladder_split(frame.reset_index(drop=True), steps)
        return ReportData(runs=frame, steps=steps, excluded=excluded, source=csv, ladder=ladder)
    home = RunHome.of(home)
    if sweep is None:
        raise UsageError("give --sweep SWEEP or a RUNS.csv")
    try:
        runs = home.sweep_runs(sweep)
    except Exception:  # noqa: BLE001 - a missing DB or table is a user's wrong sweep/home
        runs = []
    if not runs:
        raise UsageError(f"sweep {sweep!r} not found in {home.root} (see `scaling sweep status`)")
    table = runs_table(home, sweep)
    table, corrupt = _without_bad_values(table)
    used = set(table["run_id"])
    excluded = [ExcludedRun(r.run_id, r.status, corrupt.get(r.run_id) or _why(r)) for r in runs
                if r.run_id not in used]
    steps = runs_table(home, sweep, steps=True)
    steps = steps[steps["run_id"].isin(used)].reset_index(drop=True)
    if "flops_budget" not in table.columns:  # the isoFLOP grid's intended budget, from each run's config
        budget = {r.run_id: r.config.get("flops_budget") for r in runs}
        for frame in (table, steps):
            frame["flops_budget"] = frame["run_id"].map(budget).astype(float)
    kind = {r.run_id: r.config.get("parametrization") or "standard" for r in runs}
    if set(kind.values()) != {"standard"}:  # muP runs: the LR-transfer figure draws each parametrization apart
        table["parametrization"] = table["run_id"].map(kind)
    table, steps, ladder = ladder_split(table, steps, home, sweep)
    return ReportData(runs=table, steps=steps, excluded=excluded, source=f"sweep {sweep} in {home.root}",
                      ladder=ladder)


def _without_bad_values(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The runs whose summary holds a number that is no measurement (params 1e308, a loss of 0), left
    out of every table and figure, not only the fit (a figure's log axis cannot draw them): (the rest,
    run id -> why)."""
    why: dict[str, str] = {}
    keep = pd.Series(True, index=table.index)
    for col in ("loss", "params", "tokens", "flops"):
        if col not in table.columns:
            continue
        values = pd.to_numeric(table[col], errors="coerce")
        bad = values.notna() & bad_values(values, col) & keep
        limit = MAX_LOSS if col == "loss" else MAX_SIZE
        for run_id, v in zip(table.loc[bad, "run_id"], values[bad]):
            why[str(run_id)] = f"{col} {v:g} is no measurement (allowed: positive, at most {limit:g})"
        keep &= ~bad
    return table[keep].reset_index(drop=True), why


def _why(run) -> str:
    """Why a sweep's run is not in the fit, with the step where it diverged when it did."""
    if run.status == "complete":
        return "complete, but without a finite final eval loss"
    return run.reason or (run.summary or {}).get("reason") or run.status
