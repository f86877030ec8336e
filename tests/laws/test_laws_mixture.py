"""The data mixing law: known parameters come back, the sign of t means what the law says, the best mixture
is the true law's, held-out mixtures are truly unseen, and two scales give two optima."""
import numpy as np
import pytest
from domains_synth import COMPONENTS, MIXTURE, mixture_loss, mixture_table

from scaling.errors import UsageError
from scaling.laws import ArgumentError, fit_mixture
from scaling.laws.mixture_optimum import simplex_grid


@pytest.fixture(scope="module")
def clean_fit():
    return fit_mixture(mixture_table(k=20, seeds=2, noise=0.002, seed=1), bootstrap=0)


def test_mixture_law_recovers_the_generating_parameters(clean_fit):
    (scale,) = clean_fit.scales
    assert clean_fit.components == COMPONENTS
    for law in scale.laws:
        truth = MIXTURE[law.domain]
        assert law.c == pytest.approx(truth["c"], rel=0.03), law.domain
        assert law.k == pytest.approx(truth["k"], rel=0.05), law.domain
        for j in COMPONENTS:
            assert law.t[j] == pytest.approx(truth["t"][j], abs=0.06), (law.domain, j)
        assert sum(law.t.values()) == pytest.approx(0.0, abs=1e-9)  # reported centred


def test_the_sign_of_t_reads_as_the_law_says(clean_fit):
    # t_ii < 0: more of a domain's own data lowers its loss; the fitted law, evaluated by the numpy path
    # the optimum uses, falls as the share of code rises for the code domain. A sign flipped anywhere
    # (the fit's exp(-t r), the optimum's predict_loss) gives t_ii > 0 or a rising curve.
    law = next(law for law in clean_fit.scales[0].laws if law.domain == "code")
    assert law.t["code"] < -1.0 and law.t["prose"] > 1.0
    shares = np.linspace(0, 1, 11)
    r = np.column_stack([shares, 1 - shares, np.zeros_like(shares)])
    assert np.all(np.diff(law.predict(r)) < 0)
    np.testing.assert_allclose(law.predict(r), mixture_loss("code", r), rtol=0.01)


def test_the_best_mixture_is_the_true_laws_best():
    # For code alone the best mixture is pure code (its t is lowest); for equal weights, the grid minimum
    # of the true law.
    table = mixture_table(k=20, seeds=2, noise=0.002, seed=1)
    only_code = fit_mixture(table, bootstrap=0, target={"code": 1.0}).scales[0].optimum
    assert only_code.proportions["code"] == pytest.approx(1.0)
    equal = fit_mixture(table, bootstrap=20).scales[0].optimum
    grid = simplex_grid(3)
    true_target = np.mean([mixture_loss(d, grid) for d in MIXTURE], axis=0)
    truth = grid[np.argmin(true_target)]
    assert [equal.proportions[c] for c in COMPONENTS] == pytest.approx(list(truth), abs=0.05)
    assert equal.loss == pytest.approx(true_target.min(), rel=0.005)
    lo, hi = equal.ci95
    assert lo <= equal.loss <= hi
    assert equal.losses["code"] == pytest.approx(float(mixture_loss("code", truth)[0]), rel=0.01)


def test_held_out_mixtures_are_unseen_by_the_fit():
    table = mixture_table(k=20, seeds=2, noise=0.002, seed=2)
    held = fit_mixture(table, bootstrap=0, holdout=3, seed=5).scales[0].held
    assert held.sum() == 6  # three mixtures, each with its two seeds
    spoiled = table.copy()
    spoiled.loc[held, "eval/code/loss"] *= 1.3
    scale = fit_mixture(spoiled, bootstrap=0, holdout=3, seed=5).scales[0]
    alone = fit_mixture(table[~held], bootstrap=0).scales[0]
    # The fit is the one without those runs (a fit that saw them would bend towards 1.3 times the law) ...
    for law, other in zip(scale.laws, alone.laws):
        assert law.c == pytest.approx(other.c, rel=1e-6) and law.k == pytest.approx(other.k, rel=1e-6)
        assert law.t == pytest.approx(other.t, abs=1e-6)
    # ... and its error on them is the spoiling, not the 0.2% noise.
    assert scale.holdout["code"].mean_abs_rel_error == pytest.approx(0.3 / 1.3, rel=0.05)
    assert scale.holdout["prose"].mean_abs_rel_error < 0.01
    assert scale.holdout["code"].runs == 6 and len(scale.holdout["code"].points) == 3
    assert scale.n_mixtures == 17


def test_two_scales_give_two_optima_and_say_whether_the_optimum_moved():
    # At the larger scale prose's own data helps prose more: with the target on prose and code, the best
    # share of prose grows, beyond the intervals.
    bigger = {d: {**p, "t": dict(p["t"])} for d, p in MIXTURE.items()}
    bigger["prose"]["t"] = {"code": 1.5, "prose": -3.0, "headers": 1.5}
    small = mixture_table(seed=3, extra={"flops_budget": 1e17})
    large = mixture_table(seed=4, truth=bigger, extra={"flops_budget": 6e17}, mix_seed=3)
    import pandas as pd

    result = fit_mixture(pd.concat([large, small], ignore_index=True), bootstrap=50,
                         target={"code": 0.5, "prose": 0.5})
    assert [s.scale for s in result.scales] == ["flops_budget 1e+17", "flops_budget 6e+17"]  # by size
    a, b = (s.optimum.proportions["prose"] for s in result.scales)
    assert b > a + 0.05
    assert any("moved beyond the 95% intervals in" in n and "prose" in n for n in result.notes())
    assert len(result.to_json()["scales"]) == 2


@pytest.mark.parametrize("kwargs,message", [
    ({"holdout": 4}, "holdout=4: leaves 4 points to fit; the law needs 5 (the table has 8)"),
    ({"target": {"nope": 1.0}}, "target={'nope': 1.0}: 'nope' is not an evaluation domain"),
    ({"target": {"code": -1.0}}, "target={'code': -1.0}: weights must be finite, 0 or more"),
    ({"fixed": {"c": 1.0}}, "fixed={'c': 1.0}: law mixture holds no parameter fixed"),
    ({"domains": ["nope"]}, "domains=nope: no column 'eval/nope/loss'"),
])
def test_bad_arguments_are_named_by_their_parameter(kwargs, message):
    with pytest.raises(ArgumentError) as err:
        fit_mixture(mixture_table(k=8, seeds=1), bootstrap=0, **kwargs)
    assert str(err.value).startswith(message), str(err.value)


def test_a_domain_missing_from_a_runs_mixture_has_weight_zero():
    # A run trained on code and prose only may leave mix/headers empty: that is a share of 0, not a row to
    # drop (dropping it loses the pure domains and every two-domain mixture).
    table = mixture_table(k=12, seeds=1, noise=0.0)
    table.loc[table["mix/headers"] == 0, "mix/headers"] = float("nan")
    result = fit_mixture(table, bootstrap=0)
    assert result.n_points == 12 and result.dropped == {}


def test_a_table_without_mixtures_or_with_too_few_is_refused_in_one_line():
    table = mixture_table(k=8, seeds=1)
    with pytest.raises(UsageError, match="needs mix/<domain> columns for at least 2"):
        fit_mixture(table.drop(columns=["mix/prose", "mix/headers"]), bootstrap=0)
    with pytest.raises(UsageError, match="needs at least 5 distinct mixtures"):
        fit_mixture(table.iloc[:4], bootstrap=0)


@pytest.mark.slow
def test_mixture_intervals_cover_the_truth_95_percent_of_the_time():
    # 20 mixtures x 2 seeds, 1% noise; the interval of every t_ij of one domain (three chances a draw).
    # Measured: 296 of 300 (0.987); the estimates average the truth to 0.003.
    draws, hits, total = 100, 0, 0
    for i in range(draws):
        result = fit_mixture(mixture_table(k=20, seeds=2, noise=0.01, seed=100 + i, mix_seed=i), domains=["code"],
                             bootstrap=100, seed=i)
        law = result.scales[0].laws[0]
        for j in COMPONENTS:
            lo, hi = law.ci95[f"t[{j}]"]
            hits += lo < MIXTURE["code"]["t"][j] < hi
            total += 1
    assert 0.88 <= hits / total <= 0.99, hits / total


def test_scales_given_by_size_and_tokens_are_told_apart_when_the_budget_column_is_empty():
    """The runs table always has flops_budget, empty for runs given tokens= (what a mixture plan writes):
    two scales must not pool into one 'flops_budget nan' fit (seen on sweeps/domains.yaml)."""
    import pandas as pd

    small = mixture_table(seed=3, extra={"flops_budget": float("nan"), "params": 5e4, "tokens": 8e5})
    large = mixture_table(seed=4, extra={"flops_budget": float("nan"), "params": 1e5, "tokens": 1.6e6}, mix_seed=3)
    result = fit_mixture(pd.concat([large, small], ignore_index=True), bootstrap=20)
    assert [s.scale for s in result.scales] == ["params 5e+04, tokens 8e+05", "params 1e+05, tokens 1.6e+06"]
