"""Which column a report fits one law per value of: the spec's `by:` (a recipe key such as
parametrization, mlp, qk_norm, or corpus), checked against the runs; without it, corpus when the runs
hold several. The comparison of the groups is scaling/report/compare_section.py."""
from __future__ import annotations

import dataclasses

import pandas as pd

from scaling.config import config_defaults
from scaling.errors import UsageError
from scaling.laws import several_corpora
from scaling.laws.table import RunsTable
from scaling.report.gather import ReportData
from scaling.runs import RunHome


def grouping_column(table: RunsTable, by: str | None) -> str | None:
    """The column the report fits one law per value of: the spec's `by:`, checked (one line for a column
    the runs lack, a run without a value, fewer than two groups, or runs of several corpora split by
    another column); without `by:`, corpus when the runs hold several (a law pooled over corpora fits
    none of them), else None."""
    if by is None:
        return "corpus" if several_corpora(table) else None
    frame = table.frame
    if by not in frame.columns:
        shown = ", ".join(str(c) for c in frame.columns if c not in ("run", "point"))
        raise UsageError(f"by: {by!r}: no such column in the runs (columns: {shown})")
    missing = int(frame[by].isna().sum())
    if missing:
        raise UsageError(f"by: {by}: {missing} of {len(frame)} runs have no {by}; every run needs a group")
    groups = list(dict.fromkeys(frame[by].astype(str)))
    if len(groups) < 2:
        raise UsageError(f"by: {by}: the runs have one value ({groups[0]}); comparing needs at least two groups")
    if by != "corpus" and several_corpora(table):
        corpora = ", ".join(dict.fromkeys(frame["corpus"].astype(str)))
        raise UsageError(f"by: {by}: the runs span several corpora ({corpora}), and a law pooled over corpora "
                         f"fits none of them: report on one corpus's runs, or use by: corpus")
    return by


def group_seeds(table: RunsTable, column: str, seed: int) -> dict[str, int]:
    """The bootstrap seed of each group, seed + i in order of appearance (as `scaling compare` draws them):
    the groups' resamples are paired by index in k(C), so they must be drawn independently."""
    return {g: seed + i for i, g in enumerate(dict.fromkeys(table.frame[column].astype(str)))}


def config_values(configs: dict[str, dict], key: str) -> dict[str, object] | None:
    """run id -> the run's `key`: as its config gives it, else the run config's default (a baseline run
    of a sweep that sets `mlp: gelu` on other points says nothing about its own SwiGLU). None when no
    run's config gives the key (it is not a recipe key of this sweep)."""
    if not any(config.get(key) is not None for config in configs.values()):
        return None
    default = config_defaults().get(key)
    return {run_id: default if config.get(key) is None else config.get(key) for run_id, config in configs.items()}


def with_config_column(runs: pd.DataFrame, steps: pd.DataFrame | None, by: str | None,
                       configs: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A sweep's recipe key (qk_norm, mlp, parametrization) lives in each run's config, not in the runs
    table: copy it in, into the per-step rows too (the envelope is fitted per group from them). `configs`:
    run id -> config. Unchanged when the table has the column or no run's config has the key."""
    if by is None or by in runs.columns:
        return runs, steps
    given = config_values(configs, by)
    if given is None:
        return runs, steps

    def add(frame: pd.DataFrame) -> pd.DataFrame:
        values = frame["run_id"].map(given)
        return frame.assign(**{by: values.where(values.isna(), values.astype(str))})

    return add(runs), None if steps is None or "run_id" not in steps.columns else add(steps)


def with_sweep_column(data: ReportData, by: str | None, home, sweep: str | None) -> ReportData:
    """The report's runs with the sweep's recipe key `by` copied in from each run's config (see
    `with_config_column`); unchanged for a runs table from a file (sweep None) or a column it has."""
    if by is None or sweep is None or by in data.runs.columns:
        return data
    configs = {r.run_id: r.config or {} for r in RunHome.of(home).sweep_runs(sweep)}
    runs, steps = with_config_column(data.runs, data.steps, by, configs)
    return dataclasses.replace(data, runs=runs, steps=steps)
