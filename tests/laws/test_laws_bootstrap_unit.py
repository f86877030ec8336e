"""The bootstrap resamples points, each with all its seed replicates (bootstrap.py), in the fits
themselves (issue #23: a fit that resampled runs independently survived every test).

Replicates share their point's error (a learning rate a little off for one size), so drawing them as
independent runs makes the intervals about sqrt(seeds) too narrow. With points resampled whole, a table
of 8 seeds per point gives about the interval of one seed per point, as the seed noise here is small
against the point error."""
import numpy as np
from laws_synth import replicated_chinchilla_table, replicated_isoflop_table

from scaling.laws import fit_isoflop, fit_parametric, hoffmann_grid, load_runs

SEEDS = 8


def _width(ci) -> float:
    return float(ci[1] - ci[0])


def test_isoflop_intervals_do_not_narrow_when_each_point_is_run_with_more_seeds():
    table = replicated_isoflop_table(seeds=SEEDS, noise=0.0005, point_noise=0.006, seed=5)
    one_seed = table[table["seed"] == 0]
    many = fit_isoflop(load_runs(table), bootstrap=400, seed=1)
    single = fit_isoflop(load_runs(one_seed), bootstrap=400, seed=1)
    ratio = _width(many.n_opt.ci95) / _width(single.n_opt.ci95)
    # runs drawn independently: about 1/sqrt(8) = 0.35
    assert 0.65 < ratio < 1.5, ratio


def test_parametric_intervals_do_not_narrow_when_each_point_is_run_with_more_seeds():
    table = replicated_chinchilla_table(points=20, seeds=6, noise=0.0005, point_noise=0.01, seed=6)
    one_seed = table[table["seed"] == 0]
    starts = hoffmann_grid()[::90]
    many = fit_parametric(load_runs(table), starts=starts, bootstrap=60, seed=2, cross_check=False)
    single = fit_parametric(load_runs(one_seed), starts=starts, bootstrap=60, seed=2, cross_check=False)
    ratio = _width(many.ci95["alpha"]) / _width(single.ci95["alpha"])
    assert 0.65 < ratio < 1.5, ratio


def test_every_row_of_a_point_gets_the_same_weight_in_every_resample():
    table = load_runs(replicated_isoflop_table(budgets=(1e18,), sizes=4, seeds=3, seed=7))
    runs, point_of_run = table.run_points()
    points, _ = table.point_codes()
    assert len(np.unique(points)) == 4 and len(np.unique(runs)) == 12
    assert np.array_equal(point_of_run[runs], points)  # the runs of a point are its seeds, not other points
