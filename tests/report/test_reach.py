"""Reports that say how far they reach: the headline's default budgets and extrapolation factors, an
unresolved isoFLOP minimum left out of Approach 2 and listed as excluded, a one-size Approach 1 kept out
of the headline, the held-out error's trend over N, and figures whose axes stay near the data."""
import math

import numpy as np
import pandas as pd
import pytest
from handmade_fits import (
    BudgetProfile,
    Holdout,
    PowerLaw,
    envelope_fit,
    fits_of,
    isoflop_fit,
    isoflop_runs,
    law_fit,
)
from laws_synth import replicated_isoflop_table
from matplotlib.figure import Figure

from scaling.errors import UsageError
from scaling.laws import fit_isoflop, load_runs
from scaling.report.figures import AXIS_MARGIN, fig_holdout, fig_optimal
from scaling.report.gather import ReportData
from scaling.report.render import at_report_budgets
from scaling.report.spec import ReportSpec
from scaling.report.tables import Reach, default_budgets, headline, runs_tables

FITTED = {"E": 1.7, "A": 420.0, "B": 400.0, "alpha": 0.35, "beta": 0.29}
RUNS = isoflop_runs()
DATA = ReportData(runs=RUNS)


def test_default_budgets_are_ten_and_a_hundred_times_the_largest_c_and_where_n_opt_reaches_the_largest_size():
    reach = Reach(largest_flops=1e20, largest_params=3e9)
    fit = law_fit(FITTED)
    budgets = default_budgets(fit, reach)
    assert 1e21 in budgets and 1e22 in budgets and len(budgets) == 3
    (crossing,) = [c for c in budgets if c not in (1e21, 1e22)]
    assert fit.allocate([crossing]).at[0].params == pytest.approx(3e9, rel=1e-3)


def test_report_budgets_are_the_defaults_unless_given_and_every_law_states_the_same_ones():
    fits = fits_of(chinchilla=law_fit(FITTED, optimal=law_fit(FITTED).allocate([1e18, 1e21, 1e24])))
    moved = at_report_budgets(DATA, fits, ReportSpec())
    largest = float(RUNS.flops.max())
    at = [p.flops for p in moved.results["chinchilla"].optimal.at]
    assert 10 * largest in at and 100 * largest in at and 1e24 not in at
    given = ReportSpec(budgets=(1e19, 1e23))  # an explicit --at wins
    assert at_report_budgets(DATA, fits, given) is fits


def test_headline_gives_each_budget_its_intervals_and_its_extrapolation_factor():
    fit = law_fit(FITTED, optimal=law_fit(FITTED).allocate([2e21]))
    (line,) = [x for x in headline(fits_of(chinchilla=fit), Reach(1e20, 1e9)) if x.startswith("C = ")]
    assert line.startswith("C = 2.00e+21; 20x the largest C measured: N_opt ")
    assert "D_opt" in line and "loss" in line and "(Approach 3 (parametric))" in line


def test_an_exponent_of_one_shows_as_three_figures():
    fit = law_fit({**FITTED, "beta": 1.0})
    assert "/D^1.00  " in headline(fits_of(chinchilla=fit))[0]


def test_an_unresolved_minimum_is_left_out_of_approach_2_unless_kept():
    # one seed's noise (sd 0.03) against curves only ~0.01 deep: no minimum is resolved
    table = load_runs(replicated_isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21), span=0.6, noise=0.03, seed=3))
    kept = fit_isoflop(table, bootstrap=0, min_budgets=0, keep_unresolved=True)
    dropped = fit_isoflop(table, bootstrap=0, min_budgets=0)
    unresolved = [b for b in kept.budgets if b.interior and b.resolved is False]
    assert unresolved, [(b.depth, b.noise_sd) for b in kept.budgets]
    assert all(b.used for b in kept.budgets if b.interior)
    assert not any(b.used for b in dropped.budgets if b.resolved is False)
    used = sum(b.used for b in dropped.budgets)
    assert used < sum(b.used for b in kept.budgets)
    if used < 3:  # too few left: no exponent rather than one through noise
        assert math.isnan(dropped.n_opt.exponent)


def test_an_unresolved_budget_is_listed_as_excluded_with_why():
    c = 1e19
    prof = BudgetProfile(c, 1e8, c / 6e8, 3.0, True, 5, (5e7, 2e8), parabola=(3.0, 0.0, 0.01, math.log(1e8)),
                         depth=0.004, noise_sd=0.003)
    assert prof.resolved is False and not prof.used
    fits = fits_of(isoflop=isoflop_fit((prof,), n_opt=PowerLaw(0.1, 0.5), d_opt=PowerLaw(1.7, 0.5)))
    (_, _), (_, excluded) = runs_tables(DATA, fits)
    assert excluded == [["budget 1.00e+19", "unresolved",
                         "the curve's depth 0.004 is under 2 x the noise SD 0.003: its minimum could be one seed's "
                         "luck; not used for N_opt(C); add seeds or widen the sizes there "
                         "(keep_unresolved: true keeps it)"]]


def test_approach_1_whose_frontier_is_one_size_is_flagged_and_kept_out_of_the_headline():
    env = envelope_fit([1e18, 1e19], [1e8, 1e8], [3.0, 2.8], n_opt=PowerLaw(0.2, 0.001), d_opt=PowerLaw(0.8, 0.999))
    env = type(env)(**{**env.__dict__, "frontier_sizes": (1e8,)})
    lines = headline(fits_of(envelope=env))
    assert lines == ["Approach 1 (envelope) left out: its frontier is one size (1.00e+08), so its exponents say "
                     "nothing; train sizes that win at different C"]


def _held(errors: dict) -> pd.DataFrame:
    rows = RUNS[RUNS.flops_budget == RUNS.flops_budget.max()].sort_values("params").copy()
    rows["predicted"] = [r.loss * (1 + errors[i] / 100) for i, r in enumerate(rows.itertuples())]
    return rows


def test_headline_gives_the_held_out_errors_trend_across_n():
    fits = fits_of(chinchilla=law_fit(FITTED))
    fits.holdout = law_fit(FITTED, holdout=Holdout(runs=5, n=5, mean_abs_rel_error=0.0196, max_abs_rel_error=0.042))
    fits.holdout_rows = _held({0: -0.4, 1: 0.5, 2: 1.6, 3: 3.0, 4: 4.2})
    (line,) = [x for x in headline(fits) if x.startswith("held-out")]
    assert "-0.4%" in line and "+4.2%" in line and "growing with N" in line


def test_holdout_figure_names_its_budget():
    fits = fits_of(chinchilla=law_fit(FITTED))
    fits.holdout = law_fit(FITTED, holdout=Holdout(runs=5, n=5, mean_abs_rel_error=0.01, max_abs_rel_error=0.02))
    fits.holdout_rows = _held({i: 1.0 for i in range(5)})
    ax = Figure().add_subplot()
    fig_holdout(DATA, fits, {}, ax)
    assert f"C = {RUNS.flops_budget.max():.3g}" in ax.get_title()


def test_compute_optimal_axes_stay_within_the_stated_margin_of_the_data_and_lines():
    # an exponent with a wild interval: its band would stretch the axis over tens of decades
    samples = np.array([[math.log(0.09), a] for a in np.linspace(0.01, 1.5, 40)])
    wild = isoflop_fit((), n_opt=PowerLaw(0.09, 0.5, (0.01, 1.5), samples=samples),
                       d_opt=PowerLaw(1.85, 0.5, (0.01, 1.5), samples=samples))
    axes = Figure(figsize=(10, 4)).subplots(1, 2)
    fig_optimal(DATA, fits_of(isoflop=wild), {}, axes)
    for which, ax in zip(("params", "tokens"), axes):
        line = [x for x in ax.get_lines() if x.get_label() == "Approach 2 (isoFLOP)"][0]
        values = np.concatenate([RUNS[which].to_numpy(float), np.asarray(line.get_ydata(), float)])
        assert ax.get_ylim() == pytest.approx((values.min() / AXIS_MARGIN, values.max() * AXIS_MARGIN))


def test_keep_unresolved_reaches_the_isoflop_fit_from_the_fit_command_and_the_report_spec(tmp_path, capsys):
    # The flag and the spec key must reach fit_isoflop: without them an unresolved budget stays left out.
    import json

    from scaling.cli import main

    frame = replicated_isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21), span=0.6, noise=0.03, seed=3)
    csv = tmp_path / "runs.csv"
    frame.to_csv(csv, index=False)
    out, args = tmp_path / "fit.json", ["fit", str(csv), "--law", "isoflop", "--bootstrap", "0"]
    assert main(args) == 2  # no minimum resolved: too few budgets left for an exponent
    assert "not resolved" in capsys.readouterr().err
    assert main([*args, "--json", str(out), "--keep-unresolved"]) == 0
    budgets = json.loads(out.read_text())["budgets"]
    assert sum(b["used"] for b in budgets) >= 3 and not all(b["resolved"] for b in budgets)
    assert ReportSpec.load(None, keep_unresolved=True).keep_unresolved is True
    spec = tmp_path / "r.yaml"
    spec.write_text("keep_unresolved: 3\n")
    with pytest.raises(UsageError, match="keep_unresolved=3"):
        ReportSpec.load(str(spec))


def test_a_report_budget_past_the_reach_is_a_note_in_the_report_not_a_warning_on_the_terminal(tmp_path):
    import warnings

    from scaling.cli import main

    csv, spec = tmp_path / "runs.csv", tmp_path / "spec.yaml"
    replicated_isoflop_table(seeds=1, noise=0.001).to_csv(csv, index=False)
    spec.write_text("laws: [isoflop]\nbudgets: [1.0e+30]\nbootstrap: 0\nholdout: none\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["report", str(spec), str(csv), "--out", str(tmp_path / "r"), "--wandb", "off"]) == 0
    assert not [w for w in caught if "reach" in str(w.message)]
    assert "Notes: at=1e+30 FLOPs is" in (tmp_path / "r" / "report.md").read_text()
