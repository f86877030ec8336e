"""Each law form and the compute-optimal allocation against formulas written out here in numpy, from known
parameters (no fitting): the fit tests show the pieces work together, these pin each piece exactly."""
import numpy as np
import pytest
from laws_synth import TRUE, chinchilla_loss, optimal_n, true_allocation
from scipy.optimize import minimize_scalar

from scaling.laws import forms, optimal_allocation
from scaling.laws.optim import x64

RNG = np.random.default_rng(0)
N = np.exp(RNG.uniform(np.log(1e6), np.log(1e11), 7))
D = np.exp(RNG.uniform(np.log(1e8), np.log(1e13), 7))
THETA_TRUE = np.r_[np.log([TRUE["A"], TRUE["B"], TRUE["E"]]), TRUE["alpha"], TRUE["beta"]]  # (a, b, e, alpha, beta)


def _predict(form, theta, n=N, d=D, unique=None):
    return form.predict(np.asarray(theta, dtype=np.float64), forms.features_for(form, n, d, 6 * n * d, unique))


@pytest.mark.parametrize("name,theta,natural,loss", [
    ("chinchilla", THETA_TRUE, TRUE, lambda n, d: chinchilla_loss(n, d)),
    ("kaplan-n", [0.076 * np.log(8.8e13), 0.076], {"N_c": 8.8e13, "alpha_N": 0.076},
     lambda n, d: (8.8e13 / n) ** 0.076),
    ("kaplan-d", [0.095 * np.log(5.4e13), 0.095], {"D_c": 5.4e13, "alpha_D": 0.095},
     lambda n, d: (5.4e13 / d) ** 0.095),
    ("kaplan-joint", [np.log(8.8e13), np.log(5.4e13), 0.076, 0.095],
     {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095},
     lambda n, d: ((8.8e13 / n) ** (0.076 / 0.095) + 5.4e13 / d) ** 0.095),
    ("compute", [np.log(1.7), 0.15 * np.log(1e16), 0.15], {"E": 1.7, "C0": 1e16, "gamma": 0.15},
     lambda n, d: 1.7 + (1e16 / (6 * n * d)) ** 0.15),
])
def test_form_predicts_its_published_formula(name, theta, natural, loss):
    form = forms.FORMS[name]
    np.testing.assert_allclose(_predict(form, theta), loss(N, D), rtol=1e-12)
    got = form.natural(np.asarray(theta))
    assert set(got) == set(natural) == set(form.param_names)
    for key, value in natural.items():
        assert float(got[key]) == pytest.approx(value, rel=1e-12), key
    # natural() maps a stack of parameter vectors row by row
    stacked = form.natural(np.stack([theta, theta]))
    assert all(np.shape(v) == (2,) for v in stacked.values())
    # a feature row too many or too few is an error, not silently ignored or clamped to the last row
    X = forms.features_for(form, N, D, 6 * N * D, None)
    for wrong in (np.vstack([X, X[:1]]), X[:-1]):
        with pytest.raises(ValueError):
            form.predict(np.asarray(theta, dtype=np.float64), wrong)


def test_data_constrained_form_reduces_to_chinchilla_on_fresh_data_and_discounts_repeats():
    form = forms.FORMS["data-constrained"]
    theta = np.r_[THETA_TRUE, np.log(15.4), np.log(5.3)]
    # N below N_opt(U_D) and D = U_D: no repeated data, no excess parameters
    n, d = np.array([1e7, 3e7]), np.array([1e11, 3e11])
    np.testing.assert_allclose(_predict(form, theta, n, d, unique=d), chinchilla_loss(n, d), rtol=1e-12)
    # 4 epochs of U tokens count as D' = U + U R*(1 - exp(-3/R*)) (Muennighoff et al. eq. 5)
    u = d / 4
    d_eff = u + u * 15.4 * (1 - np.exp(-3 / 15.4))
    np.testing.assert_allclose(_predict(form, theta, n, d, unique=u), chinchilla_loss(n, d_eff), rtol=1e-12)


def test_chinchilla_objective_and_gradient_with_bootstrap_weights():
    """The hand-written gradient (the hot path) against the same objective written here and central
    differences, with uneven weights as a bootstrap resample has them."""
    X = forms.features_for(forms.CHINCHILLA, N, D, 6 * N * D)
    y = np.log(chinchilla_loss(N, D)) + RNG.normal(0, 0.01, len(N))
    w = RNG.integers(0, 4, len(N)).astype(float)
    delta = 1e-2  # some residuals inside the Huber threshold, some outside
    theta = THETA_TRUE + np.array([0.3, -0.2, 0.05, 0.01, -0.02])

    def objective(t):
        a, b, e, alpha, beta = t
        r = np.log(np.exp(a - alpha * X[0]) + np.exp(b - beta * X[1]) + np.exp(e)) - y
        return np.sum(w * np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)))

    with x64():
        import jax.numpy as jnp

        args = (jnp.asarray(X), jnp.asarray(y), delta, jnp.asarray(w[None]))
        f, g = forms.CHINCHILLA.value_and_grad(jnp.asarray(theta[None]), *args)
        f_obj = forms.CHINCHILLA.objective(jnp.asarray(theta[None]), *args)
    assert float(f[0]) == pytest.approx(objective(theta), rel=1e-12)
    assert float(f_obj[0]) == pytest.approx(objective(theta), rel=1e-12)
    h = 1e-6
    numeric = [(objective(theta + h * e) - objective(theta - h * e)) / (2 * h) for e in np.eye(5)]
    np.testing.assert_allclose(np.asarray(g[0]), numeric, rtol=1e-5, atol=1e-9)


def test_allocation_exponents_are_the_closed_forms():
    # Chinchilla: the generating law's closed form (laws_synth), for a stack of parameter vectors
    laws = [TRUE, {**TRUE, "alpha": 0.52, "A": 50.0}, {**TRUE, "beta": 0.6, "B": 3000.0}]
    thetas = np.array([np.r_[np.log([p["A"], p["B"], p["E"]]), p["alpha"], p["beta"]] for p in laws])
    ex = forms.allocation_exponents(forms.CHINCHILLA, thetas)
    direct = forms.chinchilla_allocation([p["A"] for p in laws], [p["B"] for p in laws],
                                         [p["alpha"] for p in laws], [p["beta"] for p in laws])
    for key in ("G", "a", "b"):
        expected = [true_allocation(p)[key] for p in laws]
        np.testing.assert_allclose(ex[key], expected, rtol=1e-12)
        np.testing.assert_allclose(direct[key], expected, rtol=1e-12)
    same = forms.allocation_exponents(forms.FORMS["data-constrained"], np.c_[thetas, np.zeros((3, 2))])
    np.testing.assert_allclose(same["G"], ex["G"], rtol=1e-12)
    # Kaplan's joint form: N_opt found by minimizing the law along C = 6ND numerically
    theta = np.array([np.log(8.8e13), np.log(5.4e13), 0.076, 0.095])
    ex = forms.allocation_exponents(forms.KAPLAN_JOINT, theta)
    law = forms.KAPLAN_JOINT
    for c in (1e19, 1e23):
        res = minimize_scalar(lambda x, c=c: _predict(law, theta, np.exp([x]), c / (6 * np.exp([x])))[0],
                              bounds=(np.log(1e3), np.log(1e16)), method="bounded", options={"xatol": 1e-10})
        assert float(ex["G"] * (c / 6) ** ex["a"]) == pytest.approx(np.exp(res.x), rel=1e-5)
    assert float(ex["a"] + ex["b"]) == pytest.approx(1.0, abs=1e-15)
    with pytest.raises(ValueError, match="kaplan-n has no compute-optimal allocation"):
        forms.allocation_exponents(forms.KAPLAN_N, [0.0, 0.1])


def test_degenerate_parameters_give_non_finite_allocations_without_raising():
    """Bootstrap resamples can land on alpha or beta = 0 or on exponents too small to exponentiate: their
    allocation is 0, inf or NaN (and dropped from intervals), never a floating-point error."""
    with np.errstate(all="raise"):
        for ex in (forms.chinchilla_allocation([406.4, 406.4, 1e5], [410.7, 410.7, 1.0], [0.0, 0.0, 1e-300],
                                               [0.28, 0.0, 1e-300]),
                   forms.allocation_exponents(forms.CHINCHILLA, [[6.0, 6.0, 0.5, 0.0, 0.28], [6.0, 6.0, 0.5, 0.0, 0.0],
                                                                 [12.0, 0.0, 0.5, 1e-300, 1e-300]]),
                   forms.allocation_exponents(forms.KAPLAN_JOINT, [[30.0, 30.0, 0.0, 0.1], [30.0, 30.0, 0.0, 0.0],
                                                                   [1000.0, 0.0, 1000.0, 1.0]])):
            g = np.asarray(ex["G"])
            assert not (np.isfinite(g) & (g > 0)).any(), g


def test_optimal_allocation_at_budgets_with_percentile_intervals():
    budgets = [1e21, 1e24]
    # 41 parameter vectors with alpha spread around the truth: the intervals are their 2.5/97.5 percentiles
    samples = np.tile(THETA_TRUE, (41, 1))
    samples[:, 3] += np.linspace(-0.02, 0.02, 41)
    alloc = optimal_allocation(forms.CHINCHILLA, THETA_TRUE, budgets, samples=samples)
    truth = true_allocation()
    assert (alloc.a, alloc.b, alloc.G) == pytest.approx((truth["a"], truth["b"], truth["G"]), rel=1e-12)
    a_samples = TRUE["beta"] / (samples[:, 3] + TRUE["beta"])
    assert alloc.ci95["a"] == pytest.approx(tuple(np.percentile(a_samples, [2.5, 97.5])), rel=1e-12)
    for point, c in zip(alloc.at, budgets):
        n = optimal_n(c)
        d = c / (6 * n)
        assert point.flops == c
        assert (point.params, point.tokens, point.tokens_per_param) == pytest.approx((n, d, d / n), rel=1e-10)
        assert point.loss == pytest.approx(chinchilla_loss(n, d), rel=1e-12)
        per_sample = [optimal_n(c, {**TRUE, "alpha": s}) for s in samples[:, 3]]
        assert point.ci95["params"] == pytest.approx(tuple(np.percentile(per_sample, [2.5, 97.5])), rel=1e-10)
        losses = [chinchilla_loss(m, c / (6 * m), {**TRUE, "alpha": s}) for m, s in zip(per_sample, samples[:, 3])]
        assert point.ci95["loss"] == pytest.approx(tuple(np.percentile(losses, [2.5, 97.5])), rel=1e-10)
        assert set(point.ci95) == {"params", "tokens", "tokens_per_param", "loss"}
    bare = optimal_allocation(forms.CHINCHILLA, THETA_TRUE, budgets, samples=samples[:1])  # one sample: no interval
    assert bare.ci95 == {} and bare.at[0].ci95 == {} and bare.at[1].params == pytest.approx(alloc.at[1].params)
    two = optimal_allocation(forms.CHINCHILLA, THETA_TRUE, budgets, samples=samples[[0, -1]])  # two: an interval
    assert two.ci95["a"] == pytest.approx(tuple(np.percentile(a_samples[[0, -1]], [2.5, 97.5])), rel=1e-12)


def test_optimal_allocation_holds_at_tiny_sizes():
    """The closed form holds for any positive budget, including optima below one parameter or one token."""
    for p, c in ((TRUE, 6.0), ({**TRUE, "A": 40.0}, 6.0)):  # N_opt = G: 1.34 (D = 0.74), then 0.032
        theta = np.r_[np.log([p["A"], p["B"], p["E"]]), p["alpha"], p["beta"]]
        point = optimal_allocation(forms.CHINCHILLA, theta, [c]).at[0]
        n = optimal_n(c, p)
        assert point.params == pytest.approx(n, rel=1e-12)
        assert point.loss == pytest.approx(chinchilla_loss(n, c / (6 * n), p), rel=1e-12)


def test_optimal_allocation_of_other_forms():
    # data-constrained with fresh data: Chinchilla's answer
    theta = np.r_[THETA_TRUE, np.log(15.4), np.log(5.3)]
    point = optimal_allocation(forms.FORMS["data-constrained"], theta, [1e22]).at[0]
    n = optimal_n(1e22)
    assert point.params == pytest.approx(n, rel=1e-10)
    assert point.loss == pytest.approx(chinchilla_loss(n, 1e22 / (6 * n)), rel=1e-10)
    # compute frontier: a loss per budget, no sizes
    alloc = optimal_allocation(forms.COMPUTE, [np.log(1.7), 0.15 * np.log(1e16), 0.15], [1e20, 1e22])
    assert (alloc.a, alloc.b, alloc.G) == (None, None, None)
    for point, c in zip(alloc.at, [1e20, 1e22]):
        assert point.params is None and point.tokens is None
        assert point.loss == pytest.approx(1.7 + (1e16 / c) ** 0.15, rel=1e-12)
    for form, theta in ((forms.COMPUTE, [np.log(1.7), 0.15 * np.log(1e16), 0.15]), (forms.CHINCHILLA, THETA_TRUE)):
        assert optimal_allocation(form, theta, []).at == ()  # exponents only, no budgets
    with pytest.raises(ValueError, match="kaplan-d has no compute-optimal allocation"):
        optimal_allocation(forms.KAPLAN_D, [1.0, 0.1], [1e20])


def test_allocation_of_a_degenerate_resample_is_left_out_of_the_interval():
    """A resample with beta = 0 has no finite optimum: its sizes are infinite and its loss is NaN, and the
    percentile interval ignores it instead of turning NaN."""
    samples = np.tile(THETA_TRUE, (5, 1))
    samples[0, 4] = 0.0
    with np.errstate(all="raise"):
        alloc = optimal_allocation(forms.CHINCHILLA, samples[0], [1e21], samples=samples)
    assert np.isnan(alloc.at[0].loss) and not np.isfinite(alloc.at[0].params)
    # A resample with A = e^700 puts N_opt = G (C/6)^a past float64 (D_opt stays a tiny positive number): its
    # loss is NaN, no answer, not the law evaluated at an infinite size.
    with np.errstate(all="raise"):
        point = optimal_allocation(forms.CHINCHILLA, [700.0, 0.0, 0.5, 0.5, 0.5], [6e10]).at[0]
    assert point.params == np.inf and 0 < point.tokens < 1e-290 and np.isnan(point.loss)
    lo, hi = alloc.at[0].ci95["loss"]
    expected = chinchilla_loss(optimal_n(1e21), 1e21 / (6 * optimal_n(1e21)))
    assert lo == pytest.approx(expected, rel=1e-12) and hi == pytest.approx(expected, rel=1e-12)


def test_features_are_logs_in_the_forms_order():
    n, d = np.array([1e6, 1e7]), np.array([1e9, 2e9])
    X = forms.features_for(forms.FORMS["data-constrained"], n, d, 6 * n * d, unique_tokens=d / 2)
    np.testing.assert_allclose(X, np.log([n, d, d / 2]), rtol=1e-15)
    np.testing.assert_allclose(forms.features_for(forms.FORMS["data-constrained"], n, d, 6 * n * d)[2], np.log(d))
    np.testing.assert_allclose(forms.features_for(forms.COMPUTE, n, d, 6 * n * d), np.log([6 * n * d]))
    np.testing.assert_allclose(forms.features_for(forms.KAPLAN_D, n, d, 6 * n * d), np.log([d]))
