"""Accuracy as a sigmoid of loss: the curve's parameters come back with chance held or fitted, accuracy
falls as loss rises, held-out points are unseen, and a loss law's interval at a budget widens the
accuracy's (Llama 3's two steps)."""
import numpy as np
import pytest
from domains_synth import ACCURACY, accuracy, accuracy_table

from scaling.laws import ArgumentError, LossAtBudget, fit_accuracy, loss_at_budgets
from scaling.laws.accuracy import accuracy_at


@pytest.mark.parametrize("fixed", [{}, {"floor": 0.25}])
def test_accuracy_law_recovers_the_generating_sigmoid(fixed):
    result = fit_accuracy(accuracy_table(n=60, noise=0.005, seed=1), "mc", fixed=fixed, bootstrap=0)
    for name, value in ACCURACY.items():
        assert result.params[name] == pytest.approx(value, rel=0.05), name
    assert result.fixed == fixed
    loss = np.linspace(1.5, 3.5, 9)
    np.testing.assert_allclose(result.predict(loss), accuracy(loss), atol=0.01)


def test_accuracy_falls_as_loss_rises():
    # s > 0: a model with lower loss scores higher. A sign flipped in the fitted curve would give s < 0 or
    # a rising prediction.
    result = fit_accuracy(accuracy_table(n=40, seed=2), "mc", fixed={"floor": 0.25}, bootstrap=0)
    assert result.params["s"] > 0
    assert np.all(np.diff(result.predict(np.linspace(1.0, 4.0, 20))) < 0)


def test_the_correct_answers_nll_can_be_the_predictor():
    result = fit_accuracy(accuracy_table(n=40, noise=0.005, seed=3), "mc", "nll", bootstrap=0)
    assert result.x == "task/mc/nll"
    assert result.params["L0"] == pytest.approx(0.5 * ACCURACY["L0"], rel=0.05)  # the table's nll is loss / 2


def test_held_out_points_are_unseen_by_the_fit():
    table = accuracy_table(n=30, seeds=2, noise=0.005, seed=4)
    best = table.groupby("params")["loss"].mean().nsmallest(3).index
    held = table["params"].isin(best)
    spoiled = table.copy()
    spoiled.loc[held, "task/mc/acc"] -= 0.3
    result = fit_accuracy(spoiled, "mc", fixed={"floor": 0.25}, bootstrap=0, holdout=3)
    alone = fit_accuracy(table[~held], "mc", fixed={"floor": 0.25}, bootstrap=0)
    assert result.params == pytest.approx(alone.params, rel=1e-6)
    assert result.holdout.mean_abs_error == pytest.approx(0.3, abs=0.02)
    assert result.holdout.runs == 6


def test_the_loss_interval_at_a_budget_carries_into_the_accuracy_interval():
    result = fit_accuracy(accuracy_table(n=40, seeds=2, seed=5), "mc", fixed={"floor": 0.25}, bootstrap=200)
    exact, wide = accuracy_at(result, [LossAtBudget(1e21, 2.5, (2.5, 2.5)), LossAtBudget(1e21, 2.5, (2.3, 2.7))])
    assert exact.accuracy == wide.accuracy == pytest.approx(float(result.predict(2.5)))
    width = lambda a: a.ci95[1] - a.ci95[0]  # noqa: E731
    # The sigmoid's slope at L0 is (ceil - floor) s / 4 = 0.65: a loss interval of +-0.2 alone spans about
    # 0.26 of accuracy, far more than the sigmoid's own uncertainty.
    assert width(wide) > 0.2 > 5 * width(exact)
    lo, hi = wide.ci95
    assert lo < accuracy(2.6) and hi > accuracy(2.4)
    # Without resamples, the sigmoid at the interval's ends: the high loss gives the low accuracy.
    plain = fit_accuracy(accuracy_table(n=40, seed=5), "mc", fixed={"floor": 0.25}, bootstrap=0)
    (at,) = accuracy_at(plain, [LossAtBudget(1e21, 2.5, (2.3, 2.7))])
    assert at.ci95 == pytest.approx((float(plain.predict(2.7)), float(plain.predict(2.3))))


def test_the_loss_at_a_budget_comes_from_a_fit_json():
    fit_json = {"law": "chinchilla", "optimal": {"at": [
        {"flops": 1e21, "loss": 2.4, "ci95": {"loss": [2.3, 2.5]}}, {"flops": 1e22, "loss": 2.1, "ci95": {}}]}}
    assert loss_at_budgets(fit_json) == [LossAtBudget(1e21, 2.4, (2.3, 2.5)), LossAtBudget(1e22, 2.1, None)]
    assert loss_at_budgets(fit_json, [1e22]) == [LossAtBudget(1e22, 2.1, None)]
    with pytest.raises(ArgumentError, match="budgets=1e\\+20: the loss fit has no loss at 1e\\+20 FLOPs"):
        loss_at_budgets(fit_json, [1e20])
    with pytest.raises(ArgumentError, match="loss_fit: has no loss at a budget"):
        loss_at_budgets({"law": "isoflop"})


@pytest.mark.parametrize("kwargs,message", [
    ({"task": "nope"}, "task=nope: no column 'task/nope/acc' in the runs table (tasks: mc)"),
    ({"fixed": {"s": 1.0}}, "fixed={'s': 1.0}: law accuracy holds only floor or ceil fixed"),
    ({"fixed": {"floor": 1.5}}, "fixed={'floor': 1.5}: floor is an accuracy, between 0 and 1"),
    ({"fixed": {"floor": 0.5, "ceil": 0.4}}, "fixed={'floor': 0.5, 'ceil': 0.4}: floor must be below ceil"),
    ({"x": "nope"}, "x=nope: no column 'eval/nope/loss' or 'nope'"),
    ({"holdout": 26}, "holdout=26: leaves 4 points to fit; the law needs 5"),
])
def test_bad_arguments_are_named_by_their_parameter(kwargs, message):
    args = {"task": "mc", "bootstrap": 0, **kwargs}
    with pytest.raises(ArgumentError) as err:
        fit_accuracy(accuracy_table(n=30), args.pop("task"), **args)
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.slow
def test_accuracy_at_a_budget_covers_the_truth_95_percent_of_the_time():
    # The loss at the budget is itself an estimate: drawn around the truth with sd 0.05, its interval
    # +-1.96 sd; the accuracy interval must cover the true accuracy at the true loss. Measured: 97 of 100
    # (and L0's interval 97 of 100).
    rng = np.random.default_rng(0)
    draws, hits = 100, 0
    for i in range(draws):
        result = fit_accuracy(accuracy_table(n=30, seeds=2, noise=0.02, seed=300 + i), "mc", fixed={"floor": 0.25},
                              bootstrap=100, seed=i)
        loss = 2.6 + rng.normal(0.0, 0.05)
        (at,) = accuracy_at(result, [LossAtBudget(1e21, loss, (loss - 0.098, loss + 0.098))], seed=i)
        hits += at.ci95[0] < accuracy(2.6) < at.ci95[1]
    assert 0.88 <= hits / draws <= 0.99, hits / draws
