"""Laws you can shape: parameters held at values, results as frames and on matplotlib axes, and
Approach 1's frontier interpolated between sizes."""
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
from laws_synth import TRUE, chinchilla_loss, chinchilla_table, isoflop_table, optimal_flops, optimal_n, true_allocation

from scaling.cli import main
from scaling.errors import UsageError
from scaling.laws import fit, fit_envelope, fit_isoflop, hoffmann_grid, load_runs

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STARTS = hoffmann_grid()[::9]


@pytest.fixture(scope="module")
def table():
    return load_runs(chinchilla_table(n_points=80, noise=0.005, seed=3))


@pytest.fixture(scope="module")
def free_fit(table):
    return fit(table, "chinchilla", starts=STARTS, bootstrap=12, seed=1, budgets=[1e21])


def test_holding_a_parameter_at_the_free_fits_value_gives_back_the_free_fit(table, free_fit):
    held = fit(table, "chinchilla", starts=STARTS, bootstrap=0, fixed={"E": free_fit.params["E"]})
    for name in ("A", "B", "alpha", "beta"):
        assert held.params[name] == pytest.approx(free_fit.params[name], rel=1e-4), name
    assert held.objective == pytest.approx(free_fit.objective, rel=1e-6)


def test_a_held_parameter_keeps_its_value_and_the_rest_are_refitted_around_it(table, free_fit):
    held = fit(table, "chinchilla", starts=STARTS, bootstrap=12, seed=1, budgets=[1e21], fixed={"E": 1.5})
    assert held.params["E"] == 1.5 and held.fixed == {"E": 1.5}
    assert held.objective > free_fit.objective  # E = 1.5 is not the best E, so the fit is worse...
    assert held.params["alpha"] != pytest.approx(free_fit.params["alpha"], rel=1e-3)  # ...and moved
    assert "E" not in held.ci95 and set(held.ci95) == {"A", "B", "alpha", "beta"}
    assert held.cross_check is None  # variable projection would fit E freely: no comparison
    assert np.all(held.samples[:, 2] == np.log(1.5))  # every resample holds it too
    assert held.to_json()["fixed"] == {"E": 1.5}
    loss = held.predict(params=1e9, tokens=2e10)
    p = held.params
    assert loss == pytest.approx(1.5 + p["A"] / 1e9 ** p["alpha"] + p["B"] / 2e10 ** p["beta"], rel=1e-10)


def test_holding_both_exponents_at_the_truth_recovers_the_coefficients(table):
    held = fit(table, "chinchilla", starts=STARTS, bootstrap=0, fixed={"alpha": TRUE["alpha"], "beta": TRUE["beta"]})
    assert (held.params["alpha"], held.params["beta"]) == (TRUE["alpha"], TRUE["beta"])
    for name in ("E", "A", "B"):
        assert held.params[name] == pytest.approx(TRUE[name], rel=0.03), name


@pytest.mark.parametrize("law,truth,hold", [
    ("kaplan-n", {"N_c": 8.8e13, "alpha_N": 0.076}, "N_c"),
    ("compute", {"E": 1.7, "C0": 1e16, "gamma": 0.15}, "C0"),
])
def test_a_held_scale_of_a_power_law_is_tied_to_its_fitted_exponent(law, truth, hold):
    """N_c and C0 are not optimizer coordinates (c = alpha log N_c): holding one constrains two."""
    rng = np.random.default_rng(5)
    n = np.exp(rng.uniform(np.log(1e7), np.log(1e11), 150))
    d = np.exp(rng.uniform(np.log(1e9), np.log(1e13), 150))
    if law == "kaplan-n":
        loss = (truth["N_c"] / n) ** truth["alpha_N"]
    else:
        loss = truth["E"] + (truth["C0"] / (6 * n * d)) ** truth["gamma"]
    loss = loss * np.exp(rng.normal(0, 0.002, 150))
    held = fit(load_runs(pd.DataFrame({"params": n, "tokens": d, "loss": loss})), law, bootstrap=0,
               fixed={hold: truth[hold]})
    assert held.params[hold] == truth[hold]
    for name, value in truth.items():
        assert held.params[name] == pytest.approx(value, rel=0.01), name
    far = fit(load_runs(pd.DataFrame({"params": n, "tokens": d, "loss": loss})), law, bootstrap=0,
              fixed={hold: truth[hold] * 1e3})
    assert far.params[hold] == pytest.approx(truth[hold] * 1e3, rel=1e-12)
    assert far.objective > held.objective


@pytest.mark.parametrize("fixed,message", [
    ({"Q": 1.0}, r"fixed=\{'Q': 1.0\}: law chinchilla has no parameter 'Q'"),
    ({"E": -1.0}, "expected a positive finite number"),
    ({"alpha": float("nan")}, "expected a finite number"),
    ({k: 1.0 for k in TRUE}, "every parameter of law chinchilla is fixed"),
])
def test_fix_refuses_what_cannot_be_held(table, fixed, message):
    with pytest.raises(UsageError, match=message):
        fit(table, "chinchilla", starts=STARTS, bootstrap=0, fixed=fixed)


def test_fix_refuses_laws_without_parameters(table):
    with pytest.raises(UsageError, match="fixed: needs a parametric law"):
        fit(load_runs(isoflop_table(seed=1)), "isoflop", bootstrap=0, fixed={"E": 1.69})


def test_fit_command_holds_each_fix_and_writes_it_in_the_json(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    chinchilla_table(n_points=40, noise=0.005, seed=4).to_csv(path, index=False)
    out = tmp_path / "fit.json"
    assert main(["fit", str(path), "--fix", "E=1.69", "--fix", "beta=0.28", "--bootstrap", "0",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "E (fixed)" in text and "beta (fixed)" in text and "held fixed, not fitted: E = 1.69, beta = 0.28" in text
    result = json.loads(out.read_text())
    assert result["fixed"] == {"E": 1.69, "beta": 0.28}
    assert result["params"]["E"] == 1.69 and result["params"]["beta"] == 0.28


@pytest.mark.parametrize("argv,message", [
    (["--fix", "E"], "expected NAME=VALUE"),
    (["--fix", "E=abc"], "'abc' is not a number"),
    (["--fix", "E=1", "--fix", "E=2"], "--fix E: given twice"),
    (["--fix", "zeta=1"], "--fix zeta: law chinchilla has no parameter 'zeta'"),
    (["--law", "isoflop", "--fix", "E=1.69"], "--fix: needs a parametric law"),
])
def test_fit_command_refuses_bad_fixes_in_one_line(tmp_path, capsys, argv, message):
    path = tmp_path / "runs.csv"
    isoflop_table(seed=1).assign(tokens=lambda f: f.flops / (6 * f.params)).to_csv(path, index=False)
    assert main(["fit", str(path), "--bootstrap", "0", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


def test_to_frame_holds_every_estimate_with_its_interval(free_fit):
    frame = free_fit.to_frame()
    assert list(frame.columns) == ["quantity", "value", "ci95_lo", "ci95_hi", "fixed"]
    rows = frame.set_index("quantity")
    for name, value in free_fit.params.items():
        assert rows.at[name, "value"] == value
        assert (rows.at[name, "ci95_lo"], rows.at[name, "ci95_hi"]) == free_fit.ci95[name]
    assert rows.at["a", "value"] == free_fit.optimal.a and not rows["fixed"].any()
    iso = fit_isoflop(load_runs(isoflop_table(seed=1)), bootstrap=20)
    iso_rows = iso.to_frame().set_index("quantity")
    assert iso_rows.at["N_opt = k C^a: a", "value"] == iso.n_opt.exponent
    assert tuple(iso_rows.loc["N_opt = k C^a: a", ["ci95_lo", "ci95_hi"]]) == iso.n_opt.ci95
    assert len(iso.budgets_frame()) == len(iso.budgets)


def test_a_law_draws_its_isoflop_curves_with_each_minimum_where_it_allocates(free_fit):
    fig, ax = plt.subplots()
    free_fit.plot(ax, budgets=[1e19, 1e21])
    stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
    for star, point in zip(stars, free_fit.allocate([1e19, 1e21]).at):
        assert star.get_xdata()[0] == pytest.approx(point.params) and star.get_ydata()[0] == pytest.approx(point.loss)
    curves = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    for curve, point in zip(curves, free_fit.allocate([1e19, 1e21]).at):
        assert np.min(curve.get_ydata()) >= point.loss * (1 - 1e-9)  # the star is the curve's lowest point
    plt.close(fig)


def test_isoflop_fit_draws_a_papers_table_without_a_budget_column():
    """Runs binned by their FLOPs: each budget's points are the runs within 1% of it."""
    runs = isoflop_table(seed=1)
    assert "flops_budget" not in runs.columns
    iso = fit_isoflop(load_runs(runs), bootstrap=0)
    fig, ax = plt.subplots()
    iso.plot(ax, runs)
    for prof in iso.budgets:
        (points,) = [line for line in ax.get_lines() if line.get_label() == f"C = {prof.flops:.2g}"]
        near = runs[np.abs(np.log(runs.flops / prof.flops)) < 0.02].sort_values("params")
        np.testing.assert_allclose(points.get_xdata(), near.params)
        np.testing.assert_allclose(points.get_ydata(), near.loss)
    plt.close(fig)


def test_report_draws_the_isoflop_figure_for_a_table_without_a_budget_column(tmp_path):
    from scaling.report.figures import draw_figures
    from scaling.report.fitting import Fits
    from scaling.report.gather import ReportData

    runs = isoflop_table(seed=1).assign(tokens=lambda f: f.flops / (6 * f.params))
    made = draw_figures(ReportData(runs=runs), Fits({"isoflop": fit_isoflop(load_runs(runs), bootstrap=0)}, {}), {},
                        str(tmp_path))
    assert "isoflop_profiles" in [f.name for f in made]


def _curves_table(p, sizes):
    d_start = optimal_flops(sizes[0], p) / (6 * sizes[0])
    c_end = optimal_flops(sizes[-1], p)
    rows = [{"run_id": f"r{i}", "step": step, "params": n, "tokens": d, "loss": chinchilla_loss(n, d, p)}
            for i, n in enumerate(sizes) for step, d in enumerate(np.geomspace(d_start, c_end / (6 * n), 40))]
    return load_runs(pd.DataFrame(rows))


@pytest.mark.parametrize("alpha,beta", [(0.34, 0.28), (0.28, 0.52)], ids=["a=0.45", "a=0.65"])
def test_envelope_interpolates_n_opt_between_five_sizes(alpha, beta):
    """Five sizes a factor of 5.6 apart: read off as the best run's size, N_opt(C) is a staircase of five
    values whose fitted exponent was off by 0.015 and 0.043 here; interpolated, by 0.0001 and 0.002."""
    p = {**TRUE, "alpha": alpha, "beta": beta}
    sizes = np.geomspace(1e7, 1e10, 5)
    result = fit_envelope(_curves_table(p, sizes), bootstrap=0)
    assert result.n_opt.exponent == pytest.approx(true_allocation(p)["a"], abs=0.005)
    assert len(np.unique(result.params)) > 100  # between the sizes, not on them
    inside = (result.params > sizes[0]) & (result.params < sizes[-1])
    error = np.abs(np.log(result.params[inside] / optimal_n(result.flops[inside], p)))
    assert np.median(error) < 0.15  # measured for the step frontier: 0.43 and 0.41 (in ln N)
