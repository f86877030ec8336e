"""A large table's fit (polish.py): the screened grid and the whitened bootstrap give the answers of the
published method, and the bootstrap's compact weights are the same counts."""
import numpy as np
import pytest
from laws_synth import chinchilla_table

from scaling.laws import fit_parametric, forms, load_runs, polish
from scaling.laws.bootstrap import _room_for, two_level_weights
from scaling.laws.optim import lane_cap, minimize_batched
from scaling.laws.parametric import table_features


@pytest.fixture(scope="module")
def problem():
    table = load_runs(chinchilla_table(n_points=150, noise=0.01, seed=5))
    X = table_features(forms.CHINCHILLA, table)
    return table, (X, np.log(table.column("loss")), 1e-3)


@pytest.mark.slow  # the full 4,500-start grid beside the screened one (8 s): out of the fast suite
def test_screening_polishes_the_best_scoring_starts_and_reaches_the_full_grids_optimum(problem, monkeypatch):
    table, data = problem
    vg, grid = forms.CHINCHILLA.value_and_grad, forms.hoffmann_grid()
    scores = polish.score_starts(vg, grid, data)
    # One batched evaluation scores every start as the objective itself does.
    import jax.numpy as jnp

    from scaling.laws.optim import x64

    with x64():
        some = np.asarray(forms.CHINCHILLA.objective(jnp.asarray(grid[::450]), *map(jnp.asarray, data[:2]), 1e-3,
                                                     jnp.ones((1, data[0].shape[1]))))
    np.testing.assert_allclose(scores[::450], np.where(np.isfinite(some), some, np.inf), rtol=1e-12)
    keep = polish.best_scoring(scores, polish.POLISHED)
    assert len(keep) == polish.POLISHED and int(np.argmin(scores)) in keep
    assert scores[keep].max() <= np.sort(scores)[polish.POLISHED - 1]

    full = minimize_batched(vg, grid, data=data)
    monkeypatch.setattr(polish, "SCREEN_ROWS", 100)  # this 150-row table now counts as large
    # With no step allowed, the polished points are the starts themselves: exactly the best-scoring ones.
    started, n = polish.grid_minimize(vg, grid, data, polish.Tolerances(maxiter=0))
    assert n == polish.POLISHED
    np.testing.assert_array_equal(started.x, grid[keep])
    fit = fit_parametric(table, bootstrap=0, cross_check=False)
    assert fit.n_polished == polish.POLISHED and fit.n_starts == len(grid)
    assert "of the 64 best-scoring, polished" in fit.method()
    assert fit.objective == pytest.approx(full.fun[full.best()], rel=1e-9)
    np.testing.assert_allclose(fit.theta, full.x[full.best()], atol=1e-5)


def test_whitened_bootstrap_resamples_reach_the_plain_coordinates_optima(problem):
    table, data = problem
    vg = forms.CHINCHILLA.value_and_grad
    result = minimize_batched(vg, forms.hoffmann_grid()[::15], data=data)
    R = 24
    got = polish.bootstrap_optima(vg, table, data, result, None, R, 3, "warm", 4, polish.Tolerances())

    starts = polish.distinct_optima(result, 4)
    codes, point_of_run = table.run_points()
    weights = two_level_weights(codes, point_of_run, R, 3)
    plain = minimize_batched(vg, np.tile(starts, (R, 1)), data=data, weights=weights,
                             weight_rows=np.repeat(np.arange(R), len(starts)))
    f = plain.fun.reshape(R, -1)
    want = plain.x.reshape(R, len(starts), -1)[np.arange(R), np.argmin(f, axis=1)]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.ptp(got[:, 3]) > 1e-3  # the resamples differ: each was fitted to its own weights


def test_compact_bootstrap_weights_are_the_same_counts_and_never_wrap():
    codes = np.arange(300) % 120
    point_of_run = np.arange(120) // 2
    for redraw in (False, True):
        wide = two_level_weights(codes, point_of_run, 50, 7, redraw_seeds=redraw)
        small = two_level_weights(codes, point_of_run, 50, 7, redraw_seeds=redraw, dtype=np.uint8)
        assert small.dtype == np.uint8 and np.array_equal(wide, small)
    assert _room_for(np.zeros(3, np.uint8), np.array([255])).dtype == np.uint8
    assert _room_for(np.zeros(3, np.uint8), np.array([256])).dtype == np.float64  # uint8 would store 0


def test_lanes_shrink_as_rows_grow_so_a_step_stays_bounded():
    assert lane_cap(1_000) >= 1024 and lane_cap(10_048) == 256 and lane_cap(100_032) == 64
