"""`scaling compare`'s numerics: each group's compute-optimal frontier, the effective-compute multiplier
k(C) between two groups with its interval, the crossover, and the fit with one E shared by the groups.

Synthetic recipes with known answers: B's law is A's with A and B scaled by m^-gamma, so that B's
frontier at C is exactly A's at m C (k = m at every budget); two laws with different floors and slopes
cross at a budget found here by bisection on the true laws, independently of the code."""
import numpy as np
import pandas as pd
import pytest
from laws_synth import TRUE, chinchilla_loss, replicated_isoflop_table

from scaling.laws import hoffmann_grid, load_runs, split_by
from scaling.laws.compare import Crossover, Frontier, compare_groups, crossovers, log_multiplier
from scaling.laws.table import REACH

GAMMA = TRUE["alpha"] * TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
STARTS = hoffmann_grid()[::90]  # 50 starts: the coverage tests' cheap Approach 3


def better_by(m: float, p=TRUE) -> dict:
    """A law whose frontier at C equals p's at m C."""
    return dict(p, A=p["A"] * m**-GAMMA, B=p["B"] * m**-GAMMA)


def frontier_of(*laws) -> Frontier:
    theta = np.array([[np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"]] for p in laws])
    return Frontier.of_chinchilla(theta)


def two_recipes(m: float, seed: int, noise: float = 0.005, p_a=TRUE, p_b=None) -> pd.DataFrame:
    a = replicated_isoflop_table(seeds=2, noise=noise, seed=seed, p=p_a).assign(recipe="base")
    b = replicated_isoflop_table(seeds=2, noise=noise, seed=seed + 1, p=p_b or better_by(m, p_a))
    b = b.assign(recipe="new", run_id="n" + b["run_id"])
    return pd.concat([a, b], ignore_index=True)


def test_frontier_closed_form_is_the_minimum_of_the_law_over_sizes_at_each_budget():
    # L*(C) = E + K (C/6)^-gamma must equal min over N of L(N, C/6N), found here on a fine grid of N.
    for c in (1e18, 1e21, 1e24):
        n = np.geomspace(1e6, 1e13, 200001)
        brute = chinchilla_loss(n, c / (6 * n)).min()
        assert frontier_of(TRUE).loss([c])[0, 0] == pytest.approx(brute, rel=1e-9)


def test_a_law_shifted_in_compute_has_that_multiplier_at_every_budget_and_its_inverse_when_swapped():
    fa, fb = frontier_of(TRUE), frontier_of(better_by(4.0))
    budgets = [1e18, 1e21, 1e24]
    assert np.exp(log_multiplier(fa, fb, budgets))[0] == pytest.approx([4.0] * 3, rel=1e-9)
    # the other order: A over B needs a quarter of the compute; a sign slip in ln k would give 4 again
    assert np.exp(log_multiplier(fb, fa, budgets))[0] == pytest.approx([0.25] * 3, rel=1e-9)


def test_multiplier_is_infinite_where_b_lies_below_a_floor():
    low_floor = dict(TRUE, E=1.5)
    lk = log_multiplier(frontier_of(TRUE), frontier_of(low_floor), [1e30])  # B's loss there: under A's E 1.69
    assert frontier_of(low_floor).loss([1e30])[0, 0] < TRUE["E"] and lk[0, 0] == np.inf


def true_crossing(pa, pb, lo, hi) -> float:
    """Bisection in ln C on the true frontiers, each the brute minimum over N (no code under test)."""
    def gap(log_c):
        c = np.exp(log_c)
        n = np.geomspace(1e5, 1e15, 40001)
        return chinchilla_loss(n, c / (6 * n), pa).min() - chinchilla_loss(n, c / (6 * n), pb).min()
    x0, x1 = np.log(lo), np.log(hi)
    assert np.sign(gap(x0)) != np.sign(gap(x1))
    for _ in range(60):
        mid = 0.5 * (x0 + x1)
        x0, x1 = (mid, x1) if np.sign(gap(mid)) == np.sign(gap(x0)) else (x0, mid)
    return float(np.exp(0.5 * (x0 + x1)))


def test_crossover_of_two_laws_is_found_where_their_frontiers_meet():
    # B: a lower floor but a slower fall; better than A at large compute only.
    pb = dict(TRUE, E=1.60, A=TRUE["A"] * 1.6, B=TRUE["B"] * 1.6)
    found = crossovers(frontier_of(TRUE), frontier_of(pb), 1e15, 1e30)[0]
    truth = true_crossing(TRUE, pb, 1e15, 1e30)
    assert found == pytest.approx(truth, rel=1e-6)
    # parallel laws never cross
    assert np.isnan(crossovers(frontier_of(TRUE), frontier_of(better_by(2.0)), 1e15, 1e30)[0])
    none = Crossover(None, 0.0, None, (1e18, 1e27))
    assert none.describe().startswith("none within 1e6x the data (searched 1e+18..1e+27)")


def test_fitted_multiplier_interval_covers_the_truth_and_says_which_group_is_better():
    table = load_runs(two_recipes(3.0, seed=11))
    result = compare_groups(split_by(table, "recipe"), "recipe", bootstrap=100, starts=STARTS, cross_check=False)
    (pair,) = result.pairs
    assert (pair.a, pair.b) == ("base", "new")
    largest = result.data_flops[1]
    assert [m.flops for m in pair.separate] == pytest.approx([largest, 10 * largest, 100 * largest])
    at_data = pair.separate[0]
    assert at_data.ci95[0] < 3.0 < at_data.ci95[1]
    assert at_data.ci95[0] > 1.0, "B is three times as compute-efficient: k's interval lies above 1"
    assert at_data.gap > 0 and at_data.loss_b < at_data.loss_a
    assert pair.crossover.searched == pytest.approx((result.data_flops[0], largest * REACH))


def test_shared_e_fit_recovers_the_common_floor_and_scores_both_fits_on_held_out_runs():
    table = load_runs(two_recipes(2.0, seed=21))
    result = compare_groups(split_by(table, "recipe"), "recipe", bootstrap=60, starts=STARTS, cross_check=False,
                            shared_e=True, holdout=4)
    lo, hi = result.shared.E_ci95
    assert lo < TRUE["E"] < hi
    # one E for both groups: their parameters differ only in A and B (and alpha, beta, fitted freely)
    assert result.shared.params("base")["E"] == result.shared.params("new")["E"] == result.shared.E
    assert result.pairs[0].shared[0].ci95[0] < 2.0 < result.pairs[0].shared[0].ci95[1]
    # one E and k = 2 at every budget: the shared-E frontiers stay apart (the separate fits, free to put
    # each group's E elsewhere, may cross in the extrapolation)
    assert result.pairs[0].shared_crossover.flops is None
    pref = result.preference
    assert pref.held_runs == 8 and 0 < pref.shared_error < 0.05 and 0 < pref.separate_error < 0.05
    assert pref.preferred in ("shared E", "separate")
    out = result.to_json()
    assert out["shared_e"]["E"] == pytest.approx(result.shared.E) and out["holdout"]["preferred"] == pref.preferred


def test_different_floors_make_the_data_prefer_separate_fits_on_held_out_runs():
    # E 1.69 against 2.2: one shared floor cannot fit both, and the held-out error says so
    table = load_runs(two_recipes(1.0, seed=31, p_b=dict(TRUE, E=2.2)))
    result = compare_groups(split_by(table, "recipe"), "recipe", bootstrap=0, starts=STARTS, cross_check=False,
                            shared_e=True, holdout=4)
    assert result.preference.preferred == "separate"
    assert result.preference.shared_error > result.preference.separate_error


@pytest.mark.slow
def test_multiplier_interval_covers_the_truth_95_percent_of_the_time():
    # k = 3 at every budget; the interval at the data's largest compute, over independent draws.
    # Measured: 57 of 60 (0.95); the fits' geometric mean k 2.98, sd of ln k 0.07.
    draws, hits = 60, 0
    for i in range(draws):
        table = load_runs(two_recipes(3.0, seed=5000 + 2 * i))
        result = compare_groups(split_by(table, "recipe"), "recipe", bootstrap=100, seed=i, starts=STARTS,
                                cross_check=False)
        lo, hi = result.pairs[0].separate[0].ci95
        hits += lo < 3.0 < hi
    assert 0.85 <= hits / draws <= 1.0, hits / draws
