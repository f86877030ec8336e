"""Fitting every law a report asks for, and the holdout check (Chinchilla fitted without the largest
budget, then asked to predict it)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import pandas as pd

from scaling.errors import UsageError
from scaling.laws import fit, fit_by, holdout_split, load_runs
from scaling.laws.table import ExtrapolationWarning, warning_notes
from scaling.report import ladder
from scaling.report.gather import ReportData
from scaling.report.grouping import group_seeds, grouping_column
from scaling.report.spec import ReportSpec


@dataclass
class Fits:
    results: dict  # law -> fit result
    errors: dict  # law -> why it could not be fitted
    holdout: object | None = None  # chinchilla fitted without the largest budget
    holdout_rows: pd.DataFrame | None = None
    by_group: dict | None = None  # law -> GroupedFit: one fit per group of the spec's `by:`, or per corpus
    notes: list[str] = field(default_factory=list)  # the fits' warnings, for the report, not the terminal
    ladder: object | None = None  # LadderCheck of the ladder runs (report/ladder.py), None without any


def fit_all(data: ReportData, spec: ReportSpec, progress=print) -> Fits:
    """Every law the spec asks for; the warnings the fits raise (a budget past the data's reach, numeric
    overflow at far-off optimizer starts) become the report's notes instead of lines on the terminal."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fits = _fit_all(data, spec, progress)
        if spec.laws:  # a report of no loss law (a mixture study's) predicts no loss to check
            fits.ladder = ladder.check(data.runs, data.ladder, spec.laws, fits.results, bootstrap=spec.bootstrap,
                                       seed=spec.seed, huber_delta=spec.huber_delta, progress=progress)
    if not spec.gives_budgets:
        # the fits were asked for the built-in budgets only to be restated at the report's own
        # (render.at_report_budgets): a warning about how far those lie would name budgets nobody asked for
        caught = [w for w in caught if not issubclass(w.category, ExtrapolationWarning)]
    messages, numeric = warning_notes(caught)
    fits.notes = messages + ([numeric] if numeric else [])
    return fits


def _fit_all(data: ReportData, spec: ReportSpec, progress=print) -> Fits:
    table = load_runs(data.runs)
    # Runs on different corpora follow different laws: then every law once per corpus, nothing pooled;
    # likewise once per recipe with the spec's `by:`.
    column = grouping_column(table, spec.by)
    seeds = group_seeds(table, column, spec.seed) if column else {}
    results, errors = {}, {}
    for law in spec.laws:
        source = table
        if law == "envelope":
            if data.steps is None or "step" not in data.steps.columns:
                errors[law] = "needs per-step evaluation rows"
                continue
            source = load_runs(data.steps)
        progress(f"fitting {law}{f' per {column}' if column else ''} ({spec.bootstrap} bootstrap resamples)")

        def one(part, law=law):
            extra = {"keep_unresolved": spec.keep_unresolved} if law == "isoflop" else {}
            seed = seeds.get(str(part.frame[column].iloc[0]), spec.seed) if column else spec.seed
            return fit(part, law, huber_delta=spec.huber_delta, bootstrap=spec.bootstrap, seed=seed,
                       budgets=spec.budgets, **extra)

        try:
            results[law] = fit_by(source, column, one) if column else one(source)
        except UsageError as err:
            errors[law] = str(err)
    if column:
        return Fits({}, errors, by_group=results)
    fits = Fits(results, errors)
    k = _holdout_runs(data.runs, spec.holdout)
    if "chinchilla" in results and k:
        try:
            fits.holdout = fit(table, "chinchilla", huber_delta=spec.huber_delta, bootstrap=0, seed=spec.seed,
                               holdout=k)
            _, held = holdout_split(table, k)
            rows = held.frame.copy()
            rows["predicted"] = fits.holdout.predict(params=rows["params"].to_numpy(), tokens=rows["tokens"].to_numpy())
            fits.holdout_rows = rows
        except UsageError as err:
            errors["holdout"] = str(err)
    return fits


def _holdout_runs(runs: pd.DataFrame, setting) -> int:
    """'largest-budget': every run of the largest isoFLOP budget; an integer: that many runs."""
    if setting in (None, 0, "none", False):
        return 0
    if setting == "largest-budget":
        if "flops_budget" in runs.columns and runs["flops_budget"].notna().all():
            budgets = runs["flops_budget"]
            if budgets.nunique() < 2:
                return 0
            return int((budgets == budgets.max()).sum())
        return max(1, len(runs) // 5)
    return int(setting)
