"""The report's tables and headline as pure functions of hand-written fit results: every cell's number,
its interval and its precision (4 significant digits, 3 for budgets and the headline's figures)."""
import pandas as pd
from handmade_fits import (
    Allocation,
    BudgetPoint,
    BudgetProfile,
    Holdout,
    PowerLaw,
    envelope_fit,
    fits_of,
    isoflop_fit,
    law_fit,
)

from scaling.report.fitting import Fits
from scaling.report.gather import ExcludedRun, ReportData
from scaling.report.tables import allocation_table, exponent_table, headline, parameter_table, runs_tables

PARAMS = {"E": 1.5, "A": 400.0, "B": 1000.0, "alpha": 0.3, "beta": 0.25}
CI = {"E": (1.4, 1.6), "A": (300.0, 520.0), "B": (800.0, 125000.0), "alpha": (0.28, 0.32), "beta": (0.24, 0.26)}
POINTS = (
    BudgetPoint(flops=1e21, params=1.234567e9, tokens=1.35e11, tokens_per_param=109.4, loss=2.2345678,
                ci95={"params": (1.1e9, 1.3e9), "tokens": (1.2e11, 1.5e11), "tokens_per_param": (92.3, 136.4),
                      "loss": (2.2, 2.25)}),
    BudgetPoint(flops=2.5e24, params=4.5e10, tokens=9.26e12, tokens_per_param=205.8, loss=1.87654, ci95={}),
)
OPTIMAL = Allocation(a=0.25 / 0.55, b=0.3 / 0.55, G=2.0, ci95={"a": (0.44, 0.47), "b": (0.53, 0.56), "G": (1.5, 2.5)},
                     at=POINTS)
ISO_POINT = BudgetPoint(flops=1e21, params=2e9, tokens=8.333e10, tokens_per_param=41.67, loss=None,
                        ci95={"params": (1.5e9, 2.5e9), "tokens": (6.667e10, 1.111e11)})
ISO = isoflop_fit(
    budgets=(BudgetProfile(1e19, 5e8, 1e19 / 3e9, 2.5, True, 5, (1e8, 2e9)),
             BudgetProfile(1e20, 9e10, 1e20 / 5.4e11, 2.1, False, 5, (3e8, 6e9))),
    n_opt=PowerLaw(0.1, 0.48, (0.46, 0.51), (0.05, 0.2)), d_opt=PowerLaw(1.6667, 0.52, (0.49, 0.54), (0.8, 3.3)),
    optimal=Allocation(a=0.48, b=0.52, G=None, ci95={"a": (0.46, 0.51), "b": (0.49, 0.54)}, at=(ISO_POINT,)))
ENVELOPE = envelope_fit([1e18, 1e19], [1e8, 3e8], [3.0, 2.8], n_opt=PowerLaw(0.2, 0.47123),
                        d_opt=PowerLaw(0.8, 0.52877),
                        optimal=Allocation(a=0.47123, b=0.52877, G=None, ci95={},
                                           at=(BudgetPoint(1e21, 3e9, 5.556e10, 18.52, None),)))
PUBLISHED = {
    "printed": {"title": "Printed", "form": "chinchilla",
                "params": {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}},
    "replication": {"title": "Replication", "form": "chinchilla",
                    "params": {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658},
                    "ci95": {"alpha": [0.317, 0.373]}},
    "kaplan2020": {"title": "Kaplan et al. 2020", "form": "kaplan", "params": {"alpha_N": 0.076},
                   "n_opt_exponent": 0.73},
    "isoflop_exponents": {"chinchilla_approach1_a": 0.50, "chinchilla_approach2_a": 0.49},
}


def _fits(**extra) -> Fits:
    return fits_of(chinchilla=law_fit(PARAMS, ci95=CI, optimal=OPTIMAL), isoflop=ISO, envelope=ENVELOPE, **extra)


def test_parameter_table_shows_our_fit_with_intervals_then_each_published_chinchilla_law():
    header, rows = parameter_table(_fits(), PUBLISHED)
    assert header == ["source", "E", "A", "B", "alpha", "beta", "a", "b"]
    assert rows[0] == ["this study (Approach 3)", "1.5 [1.4, 1.6]", "400 [300, 520]", "1000 [800, 1.250e+05]",
                       "0.3 [0.28, 0.32]", "0.25 [0.24, 0.26]", "0.4545 [0.44, 0.47]", "0.5455 [0.53, 0.56]"]
    # a = beta/(alpha+beta), b = alpha/(alpha+beta) of each published law; Kaplan's form has no such row
    assert rows[1] == ["Printed", "1.69", "406.4", "410.7", "0.34", "0.28", "0.4516", "0.5484"]
    assert rows[2] == ["Replication", "1.817", "482", "2085", "0.3478 [0.317, 0.373]", "0.3658", "0.5126", "0.4874"]
    assert len(rows) == 3


def test_parameter_table_without_a_chinchilla_fit_lists_only_the_published_laws():
    _, rows = parameter_table(fits_of(isoflop=ISO), PUBLISHED)
    assert [r[0] for r in rows] == ["Printed", "Replication"]


def test_exponent_table_shows_each_laws_a_and_b_with_intervals_and_the_published_exponents():
    header, rows = exponent_table(_fits(), PUBLISHED)
    assert header == ["approach", "N_opt ∝ C^a: a [95%]", "D_opt ∝ C^b: b [95%]"]
    assert rows == [
        ["Approach 3 (parametric)", "0.4545 [0.44, 0.47]", "0.5455 [0.53, 0.56]"],
        ["Approach 2 (isoFLOP)", "0.48 [0.46, 0.51]", "0.52 [0.49, 0.54]"],
        ["Approach 1 (envelope)", "0.4712", "0.5288"],  # no resamples: no interval
        ["Hoffmann et al. 2022, Approaches 1 / 2", "0.5 / 0.49", "–"],
        ["Kaplan et al. 2020", "0.73", "–"],
    ]


def test_exponent_table_leaves_out_a_law_without_an_allocation():
    _, rows = exponent_table(fits_of(chinchilla=law_fit(PARAMS, ci95=CI)), {})
    assert rows == []


def test_allocation_table_has_one_row_per_law_and_budget_with_every_interval():
    header, rows = allocation_table(_fits(kaplan=law_fit(PARAMS, law="kaplan-n")))  # no allocation: no row
    assert header == ["approach", "C (FLOPs)", "N_opt [95%]", "D_opt [95%]", "D/N [95%]", "loss [95%]"]
    assert rows == [
        ["Approach 3 (parametric)", "1.00e+21", "1.235e+09 [1.100e+09, 1.300e+09]",
         "1.350e+11 [1.200e+11, 1.500e+11]", "109.4 [92.3, 136.4]", "2.235 [2.2, 2.25]"],
        ["Approach 3 (parametric)", "2.50e+24", "4.500e+10", "9.260e+12", "205.8", "1.877"],
        ["Approach 2 (isoFLOP)", "1.00e+21", "2.000e+09 [1.500e+09, 2.500e+09]",
         "8.333e+10 [6.667e+10, 1.111e+11]", "41.67", "–"],  # an isoFLOP fit does not model the loss
        ["Approach 1 (envelope)", "1.00e+21", "3.000e+09", "5.556e+10", "18.52", "–"],
    ]


def test_runs_tables_list_runs_by_compute_mark_held_out_ones_and_explain_exclusions():
    runs = pd.DataFrame({"run_id": ["big", "small", "mid", "mid2"], "params": [2e8, 1e6, 5e7, 1.5e7],
                         "tokens": [1e9, 2e7, 3e8, 1e9], "flops": [1.2e18, 1.2e14, 9e16, 9e16],
                         "loss": [2.71828, 3.5, 2.9, 2.95], "flops_budget": [1e18, 1e14, 1e17, 1e17]})
    data = ReportData(runs=runs, excluded=[ExcludedRun("dead", "failed", "lease lost 3 times")])
    fits = Fits(results={"isoflop": ISO}, errors={}, holdout_rows=runs[runs.run_id == "big"])
    (used_header, used), (excluded_header, excluded) = runs_tables(data, fits)
    assert used_header == ["run", "N", "D", "C", "loss", "budget"]
    assert used == [  # by compute, then size
        ["small", "1.000e+06", "2.000e+07", "1.200e+14", "3.5", "1.00e+14"],
        ["mid2", "1.500e+07", "1.000e+09", "9.000e+16", "2.95", "1.00e+17"],
        ["mid", "5.000e+07", "3.000e+08", "9.000e+16", "2.9", "1.00e+17"],
        ["big (held out in the holdout check)", "2.000e+08", "1.000e+09", "1.200e+18", "2.718", "1.00e+18"],
    ]
    assert excluded_header == ["run", "status", "reason"]
    assert excluded == [["dead", "failed", "lease lost 3 times"],
                        ["budget 1.00e+20", "off-profile",
                         "the parabola's minimum lies outside the sampled sizes: not used for N_opt(C)"]]


def test_runs_table_without_budgets_shows_a_dash():
    runs = pd.DataFrame({"run_id": ["a"], "params": [1e6], "tokens": [2e7], "flops": [1.2e14], "loss": [3.0]})
    (_, used), (_, excluded) = runs_tables(ReportData(runs=runs), fits_of())
    assert used == [["a", "1.000e+06", "2.000e+07", "1.200e+14", "3", "–"]] and excluded == []


def test_headline_states_the_law_the_exponents_the_allocation_and_the_holdout_error():
    held = law_fit(PARAMS, holdout=Holdout(runs=5, n=5, mean_abs_rel_error=0.0123, max_abs_rel_error=0.0456))
    fits = _fits()
    fits.holdout = held
    assert headline(fits) == [
        # exponents to 3 figures with their trailing zeros (no `D^1`), intervals at the same precision
        "L(N, D) = 1.5 + 400/N^0.300 + 1000/D^0.250  (alpha [0.280, 0.320], beta [0.240, 0.260])",
        "N_opt ∝ C^0.455 [0.440, 0.470], D_opt ∝ C^0.545 [0.530, 0.560]  (Approach 3 (parametric))",
        "N_opt ∝ C^0.480 [0.460, 0.510], D_opt ∝ C^0.520 [0.490, 0.540]  (Approach 2 (isoFLOP))",
        # Approach 1 is too coarse with few sizes to headline; the allocation is Approach 3's, every
        # number with its interval
        "C = 1.00e+21: N_opt 1.23e+09 [1.10e+09, 1.30e+09], D_opt 1.35e+11 [1.20e+11, 1.50e+11], D/N 109, "
        "loss 2.235 [2.2, 2.25] (Approach 3 (parametric))",
        "C = 2.50e+24: N_opt 4.50e+10 –, D_opt 9.26e+12 –, D/N 206, loss 1.877 – (Approach 3 (parametric))",
        "held-out largest budget: mean |relative error| 1.23% (max 4.56%) over 5 runs",
    ]


def test_headline_without_a_parametric_fit_takes_the_allocation_from_the_isoflop_fit():
    assert headline(fits_of(isoflop=ISO, envelope=ENVELOPE)) == [
        "N_opt ∝ C^0.480 [0.460, 0.510], D_opt ∝ C^0.520 [0.490, 0.540]  (Approach 2 (isoFLOP))",
        "C = 1.00e+21: N_opt 2.00e+09 [1.50e+09, 2.50e+09], D_opt 8.33e+10 [6.67e+10, 1.11e+11], D/N 41.7 "
        "(Approach 2 (isoFLOP))",
    ]


def test_runs_table_shows_a_dash_for_a_run_without_a_budget():
    runs = pd.DataFrame({"run_id": ["a", "b"], "params": [1e6, 2e6], "tokens": [2e7, 2e7], "flops": [1.2e14, 2.4e14],
                         "loss": [3.0, 2.9], "flops_budget": [float("nan"), 2.4e14]})
    (_, used), _ = runs_tables(ReportData(runs=runs), fits_of())
    assert [row[-1] for row in used] == ["–", "2.40e+14"]
