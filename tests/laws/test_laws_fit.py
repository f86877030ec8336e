"""Parameters recovered from synthetic data drawn from known laws, allocation, bootstrap, table rules."""
import numpy as np
import pandas as pd
import pytest
from laws_synth import TRUE, chinchilla_loss, chinchilla_table, isoflop_table, optimal_flops, optimal_n, true_allocation
from scipy.optimize import minimize_scalar

from scaling.errors import UsageError
from scaling.laws import fit, fit_envelope, fit_isoflop, fit_parametric, hoffmann_grid, load_runs, run_weights
from scaling.laws.forms import CHINCHILLA, allocation_exponents
from scaling.laws.table import holdout_split

# A spread tenth of the Hoffmann grid keeps these tests fast; the full grid runs in the CLI test, the
# benchmark and the slow test below.
STARTS = hoffmann_grid()[::9]


@pytest.fixture(scope="module")
def noisy_fit():
    table = load_runs(chinchilla_table(n_points=200, noise=0.005, seed=0))
    return fit_parametric(table, "chinchilla", starts=STARTS, bootstrap=60, seed=1, budgets=[1e21, 5.88e23])


def test_chinchilla_recovered_from_noisy_data(noisy_fit):
    p = noisy_fit.params
    # Stated tolerances for 200 points with 0.5% multiplicative noise over N in [1e7, 3e10], D in [1e9, 3e12].
    assert p["alpha"] == pytest.approx(TRUE["alpha"], abs=0.02)
    assert p["beta"] == pytest.approx(TRUE["beta"], abs=0.02)
    assert p["E"] == pytest.approx(TRUE["E"], rel=0.03)
    truth = true_allocation()
    assert noisy_fit.optimal.a == pytest.approx(truth["a"], abs=0.02)
    # The intervals hold the generating law, not merely the fit (measured on this draw: alpha 0.337-0.350,
    # beta 0.271-0.286, E 1.680-1.709, A 383-479, B 342-461; coverage over many draws is the slow test's).
    for name, value in TRUE.items():
        lo, hi = noisy_fit.ci95[name]
        assert lo < value < hi, (name, lo, value, hi)
    for name in ("a", "b", "G"):
        lo, hi = noisy_fit.optimal.ci95[name]
        assert lo < truth[name] < hi, (name, lo, truth[name], hi)
    assert noisy_fit.cross_check.agrees
    assert noisy_fit.n_resamples == 60 and noisy_fit.samples.shape == (60, 5)


def test_chinchilla_exact_on_noise_free_data():
    table = load_runs(chinchilla_table(n_points=200, noise=0.0, seed=0))
    result = fit_parametric(table, "chinchilla", starts=STARTS, bootstrap=0)
    for name, value in TRUE.items():
        assert result.params[name] == pytest.approx(value, rel=1e-4), name


def test_fit_json_shape(noisy_fit):
    out = noisy_fit.to_json()
    assert out["law"] == "chinchilla" and out["n_points"] == 200 and out["huber_delta"] == 1e-3
    assert set(out["params"]) == {"E", "A", "B", "alpha", "beta"} == set(out["ci95"])
    assert {"a", "b", "G", "at"} <= set(out["optimal"])
    assert set(out["optimal"]["at"][0]) >= {"flops", "params", "tokens", "loss"}
    assert out["params"]["alpha"] == noisy_fit.params["alpha"]  # unrounded


def test_allocation_matches_numeric_optimum(noisy_fit):
    """The closed-form N_opt equals a direct minimization of L(N, C/(6N))."""
    for point in noisy_fit.optimal.at:
        c = point.flops
        res = minimize_scalar(lambda log_n, c=c: float(noisy_fit.predict(params=np.exp(log_n), flops=c)),
                              bounds=(np.log(1e6), np.log(1e14)), method="bounded", options={"xatol": 1e-10})
        assert point.params == pytest.approx(np.exp(res.x), rel=1e-4)
        assert point.tokens == pytest.approx(c / (6 * point.params), rel=1e-12)
        assert point.loss == pytest.approx(res.fun, rel=1e-9)
        # The intervals hold the generating law's optimum (closed form, laws_synth), not just the fit's.
        n_true = optimal_n(c)
        d_true = c / (6 * n_true)
        for key, value in (("params", n_true), ("tokens", d_true), ("tokens_per_param", d_true / n_true),
                           ("loss", chinchilla_loss(n_true, d_true))):
            lo, hi = point.ci95[key]
            assert lo < value < hi, (c, key, lo, value, hi)


@pytest.mark.parametrize("theta,ratio", [
    ([6.0073404, 6.0179186, 0.5267228, 0.33917084, 0.2849083], 59),  # unrounded (arXiv source)
    (np.log([406.4, 410.7, 1.69]).tolist() + [0.34, 0.28], 93),  # rounded as printed
])
def test_published_allocation_formula(theta, ratio):
    """D/N at 5.88e23 FLOPs: 59 from Chinchilla's unrounded parameters, 93 from the rounded ones
    (published-laws.md): why parameters stay unrounded."""
    ex = allocation_exponents(CHINCHILLA, np.array(theta))
    n = ex["G"] * (5.88e23 / 6) ** ex["a"]
    d = (5.88e23 / 6) ** ex["b"] / ex["G"]
    assert d / n == pytest.approx(ratio, abs=0.5)


@pytest.mark.parametrize("law,truth", [
    ("kaplan-n", {"N_c": 8.8e13, "alpha_N": 0.076}),
    ("kaplan-d", {"D_c": 5.4e13, "alpha_D": 0.095}),
    ("kaplan-joint", {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}),
    ("compute", {"E": 1.7, "C0": 1e16, "gamma": 0.15}),
])
def test_other_forms_recovered(law, truth):
    rng = np.random.default_rng(5)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e11), 150))
    d = np.exp(rng.uniform(np.log(1e9), np.log(1e13), 150))
    if law == "kaplan-n":
        loss = (truth["N_c"] / n) ** truth["alpha_N"]
    elif law == "kaplan-d":
        loss = (truth["D_c"] / d) ** truth["alpha_D"]
    elif law == "kaplan-joint":
        p = truth["alpha_N"] / truth["alpha_D"]
        loss = ((truth["N_c"] / n) ** p + truth["D_c"] / d) ** truth["alpha_D"]
    else:
        loss = truth["E"] + (truth["C0"] / (6 * n * d)) ** truth["gamma"]
    loss = loss * np.exp(rng.normal(0, 0.002, 150))
    result = fit(load_runs(pd.DataFrame({"params": n, "tokens": d, "loss": loss})), law, bootstrap=0)
    for name, value in truth.items():
        # Exponents within 3%; scale constants within 30% (they sit far outside the data, so an
        # exponent error is amplified in them).
        rel = 0.03 if name.startswith(("alpha", "gamma", "E")) else 0.3
        assert result.params[name] == pytest.approx(value, rel=rel), name


def test_data_constrained_recovers_decay():
    """Repeated epochs: effective data saturates with R_D* = 15.4 (Muennighoff et al.)."""
    rng = np.random.default_rng(2)
    m = 160
    n = np.exp(rng.uniform(np.log(1e7), np.log(3e9), m))
    unique = np.exp(rng.uniform(np.log(1e9), np.log(1e11), m))
    epochs = np.exp(rng.uniform(0, np.log(60), m))
    tokens = unique * epochs
    d_eff = unique + unique * 15.4 * (1 - np.exp(-(epochs - 1) / 15.4))
    loss = TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d_eff ** TRUE["beta"]
    loss = loss * np.exp(rng.normal(0, 0.002, m))
    # Small models only, so no run has excess parameters and R_N* stays at its seed.
    table = load_runs(pd.DataFrame({"params": n, "tokens": tokens, "epochs": epochs, "loss": loss}))
    few = hoffmann_grid()[::45]
    starts = np.hstack([few, np.tile(np.log([15.4, 5.3]), (len(few), 1))])
    result = fit_parametric(table, "data-constrained", starts=starts, bootstrap=0)
    assert result.params["R_D_star"] == pytest.approx(15.4, rel=0.15)
    assert result.params["beta"] == pytest.approx(TRUE["beta"], abs=0.03)


def test_isoflop_exponents_recovered_with_intervals_around_the_truth():
    # Data seed 1: seed 0's noise happens to put the exponent 2.4 standard deviations low (0.441; over 200
    # draws the fits average 0.4515 against the true 0.4516, sd 0.0043), a draw that a correct 95% interval
    # misses, as it should one time in twenty. How often the interval misses is the slow coverage test's.
    result = fit_isoflop(load_runs(isoflop_table(seed=1)), bootstrap=100, seed=0, budgets=[1e22])
    truth = true_allocation()
    assert len(result.budgets) == 4 and all(b.interior for b in result.budgets)
    assert result.n_opt.exponent == pytest.approx(truth["a"], abs=0.01)
    assert result.d_opt.exponent == pytest.approx(truth["b"], abs=0.01)
    lo, hi = result.n_opt.ci95
    assert lo < truth["a"] < hi
    lo, hi = result.d_opt.ci95
    assert lo < truth["b"] < hi
    for b in result.budgets:
        # A parabola through the asymmetric profile puts the vertex 1.7% high even on noise-free data
        # (the same at every budget, so the exponent is unbiased); noise adds about 2%.
        assert b.n_opt == pytest.approx(optimal_n(b.flops), rel=0.06)
        assert b.d_opt == pytest.approx(b.flops / (6 * b.n_opt), rel=1e-12)
    point = result.optimal.at[0]
    assert point.params == pytest.approx(result.n_opt(1e22))
    lo, hi = point.ci95["params"]
    assert lo < optimal_n(1e22) < hi


def test_isoflop_minima_are_exact_on_parabolic_profiles():
    """Loss exactly quadratic in log N around a known vertex at each budget: the vertices and the power
    law through them are recovered to rounding, whatever the exponent (here 0.62, far from 0.5)."""
    budgets = np.array([1e18, 1e19, 1e20, 1e21])
    n_star = 3.0e-3 * budgets ** 0.62
    rows = []
    for i, (c, n0) in enumerate(zip(budgets, n_star)):
        for j, x in enumerate(np.linspace(-1.2, 1.2, 7)):
            loss = 2.0 + 0.1 * i + 0.3 * x**2
            rows.append({"run_id": f"b{i}s{j}", "params": n0 * np.exp(x), "flops": c, "loss": loss})
    result = fit_isoflop(load_runs(pd.DataFrame(rows)), bootstrap=0)
    np.testing.assert_allclose([b.n_opt for b in result.budgets], n_star, rtol=1e-9)
    np.testing.assert_allclose([b.loss_opt for b in result.budgets], 2.0 + 0.1 * np.arange(4), rtol=1e-9)
    assert result.n_opt.exponent == pytest.approx(0.62, abs=1e-9)
    assert result.n_opt.coefficient == pytest.approx(3.0e-3, rel=1e-6)
    assert result.d_opt.exponent == pytest.approx(0.38, abs=1e-9)


def test_isoflop_off_range_minimum_is_flagged_and_not_used():
    df = isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21, 1e22), shift=(4, 3.0))  # sizes all above N_opt
    result = fit_isoflop(load_runs(df), bootstrap=0)
    flags = [b.interior for b in result.budgets]
    assert flags == [True, True, True, True, False]
    good = fit_isoflop(load_runs(df[~df.run_id.str.startswith("b4")]), bootstrap=0)
    assert result.n_opt.exponent == pytest.approx(good.n_opt.exponent, rel=1e-12)
    assert result.to_json()["budgets"][4]["interior"] is False


@pytest.mark.parametrize("alpha,beta", [(0.34, 0.28), (0.52, 0.28), (0.28, 0.52)],
                         ids=["a=0.45", "a=0.35", "a=0.65"])
def test_envelope_from_training_curves_recovers_the_exponent(alpha, beta):
    """Exponents on both sides of 0.5, so neither a constant nor N and D swapped can pass."""
    p = {**TRUE, "alpha": alpha, "beta": beta}
    truth = true_allocation(p)
    sizes = np.geomspace(1e7, 1e10, 10)
    # Every run starts at the smallest model's optimal tokens and trains to the largest one's optimal
    # budget: at each FLOP count on the grid the compute-optimal size is among the runs that reach it, so
    # the frontier is the law's and not an artefact of where curves begin and end.
    d_start = optimal_flops(sizes[0], p) / (6 * sizes[0])
    c_end = optimal_flops(sizes[-1], p)
    rows = []
    for i, n in enumerate(sizes):
        for step, d in enumerate(np.geomspace(d_start, c_end / (6 * n), 40)):
            rows.append({"run_id": f"r{i}", "step": step, "params": n, "tokens": d, "loss": chinchilla_loss(n, d, p)})
    result = fit_envelope(load_runs(pd.DataFrame(rows)), bootstrap=30)
    # Ten sizes a factor of 2.15 apart make the frontier a staircase: measured errors 0.003, 0.002, 0.010.
    assert result.n_opt.exponent == pytest.approx(truth["a"], abs=0.03)
    assert result.d_opt.exponent == pytest.approx(truth["b"], abs=0.03)
    lo, hi = result.n_opt.ci95
    assert lo < truth["a"] < hi
    assert len(result.frontier_sizes) >= 8
    # Along the frontier: the size is within one size step of the law's optimum, and no run beats the
    # optimum's loss while the envelope stays within 2% of it (measured: 0.5%, 0.1%, 1.4%).
    n_opt = optimal_n(result.flops, p)
    assert np.all(np.abs(np.log(result.params / n_opt)) < np.log(sizes[1] / sizes[0]))
    best = chinchilla_loss(n_opt, result.flops / (6 * n_opt), p)
    assert np.all(result.loss >= best * (1 - 1e-12)) and np.all(result.loss <= best * 1.02)


def test_bootstrap_resamples_whole_runs():
    codes = np.repeat(np.arange(7), [1, 3, 2, 5, 1, 4, 2])
    w = run_weights(codes, 7, 500, seed=0)
    for r in range(7):
        rows = w[:, codes == r]
        assert np.all(rows == rows[:, :1])  # a run's rows come in and out together
    per_run = np.stack([w[:, codes == r][:, 0] for r in range(7)], axis=1)
    assert np.all(per_run.sum(axis=1) == 7)  # 7 runs drawn with replacement each time
    assert np.array_equal(w, run_weights(codes, 7, 500, seed=0))  # seeded


def test_bootstrap_groups_checkpoints_of_a_run():
    df = chinchilla_table(n_points=30, seed=1)
    df = pd.concat([df.assign(step=1, tokens=df.tokens / 2), df.assign(step=2)], ignore_index=True)
    table = load_runs(df.drop(columns="run_id").assign(lr=1e-3))
    assert table.n_runs == 30 and table.n_points == 60
    codes, n_runs = table.run_codes()
    assert n_runs == 30 and all(len(set(table.frame.loc[codes == c, "step"])) == 2 for c in range(30))


def test_table_derives_drops_and_selects():
    df = pd.DataFrame({"params": [1e6, 2e6, 4e6, 4e6, np.nan], "flops": [6e15, 2.4e16, 9.6e16, 9.6e16, 1e16],
                       "loss": [3.0, 2.5, 2.2, 2.0, 1.0], "lr": [1e-3, 1e-3, 1e-3, 3e-3, 1e-3]})
    table = load_runs(df)
    assert table.dropped == {"missing values": 1} and table.n_points == 4
    np.testing.assert_allclose(table.column("tokens"), [1e9, 2e9, 4e9, 4e9])
    best = load_runs(df, best_of=["lr"])
    assert best.n_points == 3 and best.column("loss").min() == 2.0


def test_holdout_takes_largest_compute_runs():
    table = load_runs(chinchilla_table(n_points=40, seed=2))
    fit_part, held = holdout_split(table, 5)
    assert held.n_points == 5 and fit_part.n_points == 35
    assert held.column("flops").min() > fit_part.column("flops").max()
    with pytest.raises(UsageError, match="holdout=40: leaves no runs"):
        holdout_split(table, 40)


@pytest.mark.slow
def test_full_grid_bootstrap_matches_warm_starts():
    """The warm-start bootstrap finds the same resample optima as the full 4,500-start grid."""
    table = load_runs(chinchilla_table(n_points=120, noise=0.01, seed=4))
    warm = fit_parametric(table, "chinchilla", bootstrap=8, seed=3, cross_check=False)
    grid = fit_parametric(table, "chinchilla", bootstrap=8, seed=3, cross_check=False, bootstrap_starts="grid")
    np.testing.assert_allclose(warm.samples[:, 3:], grid.samples[:, 3:], atol=1e-4)
