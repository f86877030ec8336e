"""The report's comparison of recipes, drawn when its spec names `by: COLUMN` (parametrization, mlp,
qk_norm, corpus, ...): per pair of groups the effective-compute multiplier k(C) with its 95% interval at
the spec's budgets, the crossover compute, the fit with one E shared by the groups against the separate
fits on held-out runs, and the k(C) figure; in fit.json under `compare`, as `scaling compare --json`
writes it (docs/contracts.md "The comparison JSON").

The grouping is the report's own: with `by:` every law is fitted per value of the column (as it is per
corpus when the runs hold several), and the comparison reuses those Chinchilla fits and their bootstrap
resamples rather than fitting the groups again (`scaling.laws.compare.compare_fits`)."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, replace

import numpy as np

from scaling.display import number as fmt
from scaling.errors import UsageError
from scaling.laws import load_runs, split_by
from scaling.laws.compare import Comparison, compare_fits, compare_groups, held_out_preference
from scaling.laws.table import RunsTable, warning_notes
from scaling.report.compare_figure import plot_multipliers
from scaling.report.figures import Figure, plt
from scaling.report.fitting import _holdout_runs as holdout_runs
from scaling.report.section import Section

FIGURE = "compare_multiplier"


@dataclass
class CompareSection(Section):
    """The recipes compared: k(C) and its figure, the crossovers, shared E; `json` is fit.json's `compare`."""

    comparison: Comparison | None = None


def compare_section(data, fits, spec, out_dir: str) -> CompareSection | None:
    """The comparison of the groups of `spec.by` (None without `by:`), its figure under out_dir/figures.

    Args:
        data: the report's ReportData; fits: its Fits (with `by:`, grouped by the column); spec: its ReportSpec.
    Returns:
        CompareSection, or None when the spec names no `by:`.
    """
    if spec.by is None:
        return None
    section = CompareSection()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            section.comparison = _compare(data, fits, spec, section.errors)
        except UsageError as err:
            section.errors["compare"] = str(err)
    messages, numeric = warning_notes(caught)
    section.notes += [f"compare: {m}" for m in messages + ([numeric] if numeric else [])]
    if section.comparison is None:
        return section
    result = section.comparison
    section.json = result.to_json()
    section.figures.append(_figure(result, out_dir))
    section.tables += [_multiplier_table(result, data), _crossover_table(result)]
    section.headline += _headline(result, data)
    return section


def _compare(data, fits, spec, errors: dict) -> Comparison:
    """compare_fits on the report's per-group Chinchilla fits (fitted here only when the spec's laws
    leave Chinchilla out); the held-out preference apart, so that too few runs to hold out loses only it."""
    table = load_runs(data.runs)
    parts = split_by(table, spec.by)
    budgets = comparison_budgets(spec)
    grouped = (fits.by_group or {}).get("chinchilla")
    if grouped is not None and grouped.column == spec.by:
        for g, why in grouped.errors.items():
            errors[f"compare {spec.by} = {g}"] = f"Chinchilla not fitted: {why}"
        parts = {g: p for g, p in parts.items() if g in grouped.results}
        if len(parts) < 2:
            raise UsageError(f"fewer than two groups of {spec.by} have a Chinchilla fit to compare")
        result = compare_fits(parts, grouped.results, spec.by, budgets=budgets, bootstrap=spec.bootstrap,
                              seed=spec.seed, shared_e=True, huber_delta=spec.huber_delta)
    else:
        result = compare_groups(parts, spec.by, budgets=budgets, bootstrap=spec.bootstrap, seed=spec.seed,
                                shared_e=True, huber_delta=spec.huber_delta)
    k = held_out_runs(parts, spec.holdout)
    if k:
        try:
            result = replace(result, preference=held_out_preference(parts, k, huber_delta=spec.huber_delta))
        except UsageError as err:
            errors["compare holdout"] = str(err)
    return result


def comparison_budgets(spec) -> tuple[float, ...]:
    """The spec's budgets when it names some; else none, so that `compare_fits` takes the data's largest
    compute x1, x10, x100 (as `scaling compare` does) rather than the built-in 1e18..1e24, which for small
    runs lie far past the data."""
    return tuple(spec.budgets) if spec.gives_budgets else ()


def held_out_runs(parts: dict[str, RunsTable], setting) -> int:
    """Runs per group both fits must predict: the spec's `holdout` as the report reads it for its own
    check (a number; `largest-budget`: the runs of the largest isoFLOP budget), the fewest over the groups."""
    return min(holdout_runs(part.frame, setting) for part in parts.values())


def _k(value: float, ci) -> str:
    show = lambda x: "inf" if x == np.inf else fmt(x)  # noqa: E731
    return show(value) + ("" if ci is None else f" [{show(ci[0])}, {show(ci[1])}]")


def _multiplier_table(result: Comparison, data) -> tuple:
    largest = result.data_flops[1]
    header = ["B over A", "C (FLOPs)", "C / largest run's", "k [95%]", "verdict", "loss A - loss B [95%]",
              "k with E shared [95%]"]
    rows = []
    for pair in result.pairs:
        shared = pair.shared or (None,) * len(pair.separate)
        for m, s in zip(pair.separate, shared):
            gap = fmt(m.gap) + ("" if m.gap_ci95 is None else f" [{fmt(m.gap_ci95[0])}, {fmt(m.gap_ci95[1])}]")
            rows.append([f"{pair.b} over {pair.a}", fmt(m.flops), f"{fmt(m.flops / largest)}x", _k(m.k, m.ci95),
                         m.verdict or "-", gap, "-" if s is None else _k(s.k, s.ci95)])
    note = (f"Chinchilla's law fitted to each group of {result.column} alone gives its compute-optimal frontier "
            "L*(C) = E + K (C/6)^-gamma; B at C reaches the loss A reaches at k C (k > 1: B is the better recipe; "
            "inf: B's loss lies below A's floor E). 95% intervals from the groups' bootstrap resamples "
            f"(points, each with its seeds), {data.loss_unit}. Verdict: k's interval above 1, below 1, or "
            "spanning it. The last column is the same from the fit with one E shared by the groups.")
    return (f"Comparing recipes by {result.column}: the effective-compute multiplier k(C)", header, rows, note)


def _crossover_table(result: Comparison) -> tuple:
    rows = [[f"{p.b} over {p.a}", p.crossover.describe(),
             p.shared_crossover.describe() if p.shared_crossover is not None else "-"] for p in result.pairs]
    rows += [[f"E of {g}", _k(f.params["E"], f.ci95.get("E")), fmt(result.shared.E) if result.shared else "-"]
             for g, f in result.fits.items()]
    note = "Crossover: where the two frontiers meet, searched from the runs' smallest compute to 1e6 x the largest."
    if result.shared is not None and result.shared.E_ci95 is not None:
        note += f" The shared E's 95% interval: [{fmt(result.shared.E_ci95[0])}, {fmt(result.shared.E_ci95[1])}]."
    note += " " + _preference(result)
    return ("Comparing recipes: crossover, and one E shared against separate fits",
            ["pair or group", "separate fits", "E shared"], rows, note)


def _preference(result: Comparison) -> str:
    h = result.preference
    if h is None:
        return "No runs held out to choose between the shared-E and the separate fits (holdout: none, or too few runs)."
    return (f"Held out {h.held_runs} largest-compute runs ({h.held_runs // len(result.fits)} per group): mean "
            f"|relative error| separate {100 * h.separate_error:.3g}%, shared E {100 * h.shared_error:.3g}%; the "
            f"data prefer {h.preferred}.")


def _headline(result: Comparison, data) -> list[str]:
    """Per pair, k at the runs' largest compute and at the largest budget, with the crossover; then the
    held-out choice between the shared-E and the separate fits."""
    largest = result.data_flops[1]
    lines = []
    for pair in result.pairs:
        shown = [pair.separate[0]] if len(pair.separate) == 1 else [pair.separate[0], pair.separate[-1]]
        at = "; ".join(f"k {_k(m.k, m.ci95)} at C = {fmt(m.flops, 3)} ({fmt(m.flops / largest, 3)}x the largest "
                       f"run's){f', {m.verdict}' if m.verdict else ''}" for m in shown)
        lines.append(f"{result.column}: {pair.b} over {pair.a} by effective compute: {at}; crossover "
                     f"{pair.crossover.describe()}")
    if result.preference is not None:
        lines.append(f"{result.column}: " + _preference(result))
    return lines


def _figure(result: Comparison, out_dir: str) -> Figure:
    fig_dir = os.path.join(out_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2), constrained_layout=True)
    try:
        plot_multipliers(result, ax)
        ax.set_title(f"Effective-compute multiplier by {result.column}")
        png, svg = os.path.join(fig_dir, f"{FIGURE}.png"), os.path.join(fig_dir, f"{FIGURE}.svg")
        fig.savefig(png)
        fig.savefig(svg)
    finally:
        plt.close(fig)
    caption = (f"Effective-compute multiplier k(C) of each pair of {result.column} groups (B at C matches A at "
               "k C) with its 95% band; the budgets marked, k = 1 dashed, crossovers dotted, the runs' compute shaded")
    return Figure(FIGURE, caption, png, svg)
