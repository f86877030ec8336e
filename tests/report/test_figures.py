"""Each report figure as a pure function: hand-written fits and synthetic runs in, and what it drew
(lines, markers, scatter points, scales) read back from the matplotlib axes, checked against values
computed here."""
import math

import numpy as np
import pytest
from handmade_fits import (
    LAW,
    LRS,
    BudgetProfile,
    Holdout,
    PowerLaw,
    allocation_of,
    chinchilla_loss,
    envelope_fit,
    fits_of,
    isoflop_fit,
    isoflop_runs,
    law_fit,
    lr_sweep,
    step_rows,
)
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.image import imread

from scaling.report.figures import (
    draw_figures,
    fig_contours,
    fig_holdout,
    fig_isoflop,
    fig_lr_transfer,
    fig_optimal,
    fig_residuals,
    fig_training_curves,
    lr_transfer_panels,
)
from scaling.report.gather import ReportData
from scaling.report.spec import load_published

FITTED = {"E": 1.7, "A": 420.0, "B": 400.0, "alpha": 0.35, "beta": 0.29}  # near LAW, but not LAW
RUNS = isoflop_runs()
BUDGETS = sorted(RUNS["flops_budget"].unique())
DATA = ReportData(runs=RUNS, steps=step_rows(RUNS))


def _profile(c: float, interior: bool) -> BudgetProfile:
    """A parabola in ln N with its minimum at 1.1 N_opt(c) under LAW (inside the sampled sizes), or at 5x
    the largest sampled size."""
    rows = RUNS[RUNS.flops_budget == c]
    n_opt = 1.1 * allocation_of(LAW)["G"] * (c / 6) ** allocation_of(LAW)["a"] if interior else 5 * rows.params.max()
    loss_opt = float(chinchilla_loss(n_opt, c / (6 * n_opt)))
    return BudgetProfile(c, n_opt, c / (6 * n_opt), loss_opt, interior, len(rows),
                         (rows.params.min(), rows.params.max()), parabola=(loss_opt, 0.0, 0.04, math.log(n_opt)))


ISO = isoflop_fit(tuple(_profile(c, interior=i < 2) for i, c in enumerate(BUDGETS)),
                  n_opt=PowerLaw(0.09, 0.5), d_opt=PowerLaw(1.85, 0.5))


def _axes(n: int = 1):
    fig = Figure(figsize=(10, 4))
    return fig.subplots(1, n) if n > 1 else fig.add_subplot()


def _line(ax, label: str):
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    return line


def _scatter(ax) -> list[np.ndarray]:
    return [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]


def test_training_curves_draw_each_runs_loss_against_flops_in_step_order_and_the_envelope():
    # the minimum per evaluation goes back up at the end (a late evaluation of a worse size): the frontier
    # drawn is the running minimum, the lowest loss any run reached at or below each C
    env = envelope_fit(np.geomspace(1e17, 1e20, 7), np.geomspace(1e7, 1e9, 7), [3.5, 3.3, 3.1, 2.9, 2.7, 2.8, 2.75],
                       n_opt=PowerLaw(0.1, 0.5), d_opt=PowerLaw(1.7, 0.5))
    ax = _axes()
    fig_training_curves(DATA, fits_of(envelope=env), {}, ax)
    frontier = _line(ax, "compute frontier (lowest loss at or below C)")
    np.testing.assert_array_equal(frontier.get_xdata(), env.flops)
    np.testing.assert_array_equal(frontier.get_ydata(), [3.5, 3.3, 3.1, 2.9, 2.7, 2.7, 2.7])
    curves = [line for line in ax.get_lines() if line is not frontier]
    drawn = {tuple(line.get_xdata()): (tuple(line.get_ydata()), line.get_color()) for line in curves}
    assert len(curves) == len(drawn) == len(RUNS)
    color_of_size = {}
    for _, rows in DATA.steps.groupby("run_id"):
        rows = rows.sort_values("step")  # the rows come shuffled; a curve follows the run's steps
        ys, color = drawn[tuple(rows.flops)]
        assert ys == tuple(rows.loss)
        color_of_size.setdefault(rows.params.iloc[0], set()).add(tuple(color))
    assert all(len(c) == 1 for c in color_of_size.values())  # a colour per model size
    assert len(set().union(*color_of_size.values())) == RUNS.params.nunique()
    assert ax.get_xscale() == "log"
    assert [a.get_ylabel() for a in ax.figure.axes[1:]] == ["parameters N"]  # the colour bar


def test_isoflop_profiles_show_each_budgets_runs_its_parabola_and_the_fits_minimum():
    ax = _axes()
    fig_isoflop(DATA, fits_of(isoflop=ISO), {}, ax)
    lines = ax.get_lines()
    for prof in ISO.budgets:
        rows = RUNS[RUNS.flops_budget == prof.flops].sort_values("params")
        (points,) = [line for line in lines if line.get_label() == f"C = {prof.flops:.2g}"]
        assert points.get_marker() == "o" and points.get_linestyle() == "None"
        np.testing.assert_array_equal(points.get_xdata(), rows.params)
        np.testing.assert_array_equal(points.get_ydata(), rows.loss)
        same_colour = [line for line in lines if line.get_color() == points.get_color() and line is not points]
        (curve,) = [line for line in same_colour if line.get_linestyle() == "-"]
        n, y = np.asarray(curve.get_xdata()), np.asarray(curve.get_ydata())
        c0, c1, c2, centre = prof.parabola
        np.testing.assert_allclose(y, c0 + c1 * (np.log(n) - centre) + c2 * (np.log(n) - centre) ** 2, rtol=1e-12)
        assert n.min() < rows.params.min() and n.max() > rows.params.max()  # spans the sampled sizes
        (minimum,) = [line for line in same_colour if line.get_linestyle() == "None"]
        assert minimum.get_marker() == ("*" if prof.interior else "x")
        assert list(minimum.get_xdata()) == [prof.n_opt] and list(minimum.get_ydata()) == [prof.loss_opt]
    assert ax.get_xscale() == "log"


def _optimum(alloc: dict, c: np.ndarray, which: str) -> np.ndarray:
    return alloc["G"] * (c / 6) ** alloc["a"] if which == "params" else (c / 6) ** alloc["b"] / alloc["G"]


def test_compute_optimal_plots_each_frontier_the_isoflop_minima_and_hoffmanns_line():
    published = load_published()
    chinchilla = law_fit(FITTED, optimal=law_fit(FITTED).allocate([1e21, 1e24]))
    axes = _axes(2)
    fig_optimal(DATA, fits_of(chinchilla=chinchilla, isoflop=ISO), published, axes)
    ref = published["chinchilla_unrounded"]
    hoffmann, ours = allocation_of(ref["params"]), allocation_of(FITTED)
    interior = [b for b in ISO.budgets if b.interior]
    for which, ax in zip(("params", "tokens"), axes):
        assert ax.get_xscale() == ax.get_yscale() == "log"
        line = _line(ax, ref["title"])
        c = np.asarray(line.get_xdata())
        assert c.min() <= RUNS.flops.min() and c.max() >= 1e24  # from the runs to the largest target budget
        np.testing.assert_allclose(line.get_ydata(), _optimum(hoffmann, c, which), rtol=1e-9)
        line = _line(ax, "Approach 3 (parametric)")
        np.testing.assert_allclose(line.get_ydata(), _optimum(ours, np.asarray(line.get_xdata()), which), rtol=1e-9)
        line = _line(ax, "Approach 2 (isoFLOP)")
        law = ISO.n_opt if which == "params" else ISO.d_opt
        np.testing.assert_allclose(line.get_ydata(), law.coefficient * np.asarray(line.get_xdata()) ** law.exponent,
                                   rtol=1e-12)
        minima = _line(ax, "isoFLOP minima")
        assert list(minima.get_xdata()) == [b.flops for b in interior]
        assert list(minima.get_ydata()) == [b.n_opt if which == "params" else b.d_opt for b in interior]


def test_loss_contours_show_the_runs_and_the_fitted_laws_efficient_frontier():
    ax = _axes()
    fig_contours(DATA, fits_of(chinchilla=law_fit(FITTED)), {}, ax)
    (runs,) = _scatter(ax)
    np.testing.assert_array_equal(runs, RUNS[["params", "tokens"]].to_numpy())
    frontier = _line(ax, "efficient frontier")
    n, d = np.asarray(frontier.get_xdata()), np.asarray(frontier.get_ydata())
    ours = allocation_of(FITTED)
    np.testing.assert_allclose(n, ours["G"] * (n * d) ** ours["a"], rtol=1e-9)  # C/6 = N D on the frontier
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlim() == pytest.approx((RUNS.params.min() / 3, RUNS.params.max() * 3))
    assert ax.get_ylim() == pytest.approx((RUNS.tokens.min() / 3, RUNS.tokens.max() * 3))
    assert [a.get_ylabel() for a in ax.figure.axes[1:]] == ["predicted loss L(N, D)"]


def test_residuals_compare_each_runs_loss_with_the_fitted_laws_prediction():
    axes = _axes(2)
    fig_residuals(DATA, fits_of(chinchilla=law_fit(FITTED)), {}, axes)
    observed = RUNS.loss.to_numpy()
    predicted = chinchilla_loss(RUNS.params, RUNS.tokens, FITTED)
    (points,) = _scatter(axes[0])
    np.testing.assert_allclose(points, np.column_stack([observed, predicted]), rtol=1e-9)
    (residuals,) = _scatter(axes[1])
    np.testing.assert_allclose(residuals, np.column_stack([RUNS.flops, 100 * (predicted - observed) / observed]),
                               rtol=1e-9)
    assert axes[1].get_xscale() == "log"


def test_holdout_figure_sets_each_held_out_run_beside_its_prediction():
    held = RUNS[RUNS.flops_budget == BUDGETS[-1]].copy()
    held["predicted"] = held["loss"] * 1.01
    fits = fits_of(chinchilla=law_fit(FITTED))
    fits.holdout = law_fit(FITTED, holdout=Holdout(runs=5, n=5, mean_abs_rel_error=0.01, max_abs_rel_error=0.012))
    fits.holdout_rows = held
    ax = _axes()
    fig_holdout(DATA, fits, {}, ax)
    observed, predicted = _scatter(ax)
    np.testing.assert_array_equal(observed, held[["params", "loss"]].to_numpy())
    np.testing.assert_array_equal(predicted, held[["params", "predicted"]].to_numpy())
    assert "1.00% over 5 runs" in ax.get_title() and ax.get_xscale() == "log"


def test_lr_transfer_draws_a_line_per_width_of_mean_loss_against_lr_in_a_panel_per_parametrization():
    runs = lr_sweep()
    axes = _axes(2)
    fig_lr_transfer(ReportData(runs=runs), fits_of(), {}, axes)
    for ax, kind in zip(axes, ("standard", "mup")):  # standard first, as muP papers set them
        assert ax.get_title() == {"standard": "Standard parametrization", "mup": "muP"}[kind]
        assert ax.get_xscale() == "log"
        lines = ax.get_lines()
        assert len(lines) == 3
        for line, width in zip(lines, (64, 128, 256)):
            rows = runs[(runs.parametrization == kind) & (runs.d_model == width)]
            mean = rows.groupby("lr")["loss"].mean()
            np.testing.assert_array_equal(line.get_xdata(), LRS)
            np.testing.assert_allclose(line.get_ydata(), mean.loc[list(LRS)], rtol=1e-12)
            assert line.get_label() == f"d_model {width} (best lr {mean.idxmin():.2g})"
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == [
        f"d_model {w} (best lr 0.01)" for w in (64, 128, 256)]  # muP: the optimum stays put


def test_lr_transfer_needs_three_widths_each_swept_over_two_rates():
    assert len(lr_transfer_panels(lr_sweep())) == 2
    assert lr_transfer_panels(lr_sweep(widths=(64, 128))) == []
    assert lr_transfer_panels(lr_sweep(lrs=(1e-2,))) == []
    assert lr_transfer_panels(RUNS) == []  # an isoFLOP sweep without lr or d_model
    no_kind = lr_sweep(kinds=("standard",)).drop(columns=["parametrization", "flops_budget"])
    (panel,) = lr_transfer_panels(no_kind)
    assert panel.title == "Learning rate by width" and sorted(panel.curves) == [64, 128, 256]
    # several budgets: the largest one's runs, named in the title
    (panel,) = lr_transfer_panels(lr_sweep(kinds=("mup",), budgets=(1e12, 3e12)))
    assert panel.title == "muP, C = 3e+12"
    runs = lr_sweep(kinds=("mup",), budgets=(1e12, 3e12))
    mean = runs[(runs.flops_budget == 3e12) & (runs.d_model == 128)].groupby("lr")["loss"].mean()
    np.testing.assert_allclose(panel.curves[128][1], mean.to_numpy(), rtol=1e-12)


def test_report_draws_the_lr_transfer_figure_with_a_panel_per_parametrization(tmp_path):
    (figure,) = [f for f in draw_figures(ReportData(runs=lr_sweep()), fits_of(), {}, str(tmp_path))
                 if f.name == "lr_transfer"]
    assert imread(figure.png).shape[:2] == (round(4.2 * 110), round(2 * 5.5 * 110))  # two panels side by side
    assert [f.name for f in draw_figures(ReportData(runs=RUNS), fits_of(), {}, str(tmp_path))] == []
