"""`scaling fit --law batch`: the best batch size per budget (a parabola in log batch size, each size at
its best swept lr), and its power law in compute or in the loss."""
import json

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.laws import fit, fit_batch, fit_lr, load_runs

C_TRUE, K_TRUE = 0.3, 0.33  # batch_opt = 0.3 C^0.33 (DeepSeek LLM's form): 28 at 1e6... 2,700 at 1e12
BUDGETS = (1e10, 1e11, 1e12, 1e13)
LR0 = 3e-3


def batch_opt(c):
    return C_TRUE * c**K_TRUE


def hparam_table(budgets=BUDGETS, batches=7, width=1.5, lrs=(LR0,), lr_follows=0.0, noise=0.001, seeds=1, seed=0,
                 offset=0.0):
    """Runs at a compute-optimal size per budget: final loss = a law in C + 0.04 (ln B - ln B_opt)^2
    + 0.03 (ln lr - ln lr_opt(B))^2, lr_opt(B) = LR0 (B / B_opt)^lr_follows (larger batches take larger
    rates); batch sizes log-even over B_opt x exp(+-width), moved by `offset` in ln B."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        best = np.log(batch_opt(c))
        n = 0.1 * c**0.5
        for x in np.linspace(best - width, best + width, batches) + offset:
            lr_opt = np.log(LR0) + lr_follows * (x - best)
            for lr in lrs:
                for s in range(seeds):
                    loss = (2.0 + 40 * c**-0.1 + 0.04 * (x - best) ** 2 + 0.03 * (np.log(lr) - lr_opt) ** 2
                            + rng.normal(0, noise))
                    rows.append({"run_id": f"c{c:g}x{x:.3f}lr{lr:g}s{s}", "params": n, "flops": c, "flops_budget": c,
                                 "batch_size": float(np.exp(x)), "lr": lr, "seed": s, "loss": loss})
    return pd.DataFrame(rows)


def test_parabola_vertex_is_taken_in_log_batch_size():
    # noise-free losses are an exact parabola in ln B: the vertex is B_opt to rounding; a parabola in B
    # itself (or a vertex read off in the wrong space) lands elsewhere on this 20x span
    result = fit_batch(load_runs(hparam_table(noise=0.0)), bootstrap=0)
    for b in result.budgets:
        assert b.interior and b.batch_opt == pytest.approx(batch_opt(b.flops), rel=1e-9)
    assert result.batch_opt.exponent == pytest.approx(K_TRUE, rel=1e-9)
    assert result.batch_opt.coefficient == pytest.approx(C_TRUE, rel=1e-9)


def test_batch_grows_with_compute_the_exponent_positive_with_an_interval_around_the_truth():
    result = fit_batch(load_runs(hparam_table(noise=0.002, seeds=2)), bootstrap=200, seed=1)
    lo, hi = result.batch_opt.ci95
    assert 0 < lo < K_TRUE < hi and hi - lo < 0.1
    for b in result.budgets:
        assert b.ci95[0] < batch_opt(b.flops) < b.ci95[1]
    assert result.rule(1e12) == pytest.approx(result.batch_opt.coefficient * 1e12**result.batch_opt.exponent)


def test_each_batch_size_takes_its_best_lr_in_an_lr_by_batch_grid():
    # lr_opt grows with the batch, and the swept rates sit above LR0: averaging over the rates would
    # favour the large batches (whose best rate the grid holds) and move the vertex up
    lrs = tuple(LR0 * np.exp(np.linspace(-1.0, 3.0, 9)))
    table = load_runs(hparam_table(lrs=lrs, lr_follows=1.0, noise=0.0))
    result = fit_batch(table, bootstrap=0)
    for b in result.budgets:
        assert b.batch_opt == pytest.approx(batch_opt(b.flops), rel=0.05)
    # and the lr law on the same grid: each rate at its best batch size, so lr_opt is LR0 at B_opt
    lr_result = fit_lr(load_runs(hparam_table(lrs=lrs, lr_follows=1.0, noise=0.0, batches=9)), bootstrap=0)
    assert all(s.lr_opt == pytest.approx(LR0, rel=0.1) for s in lr_result.sizes)


def test_against_loss_batch_grows_as_the_loss_falls():
    result = fit(load_runs(hparam_table(noise=0.001)), "batch", bootstrap=50, against="loss")
    assert result.against == "loss" and result.batch_opt.exponent < 0
    assert result.batch_opt.ci95[1] < 0
    losses = [b.loss_opt for b in result.budgets]
    assert result.rule(losses[0]) == pytest.approx(result.budgets[0].batch_opt, rel=0.1)


def test_a_budget_whose_best_batch_lies_outside_the_sweep_is_flagged_and_left_out():
    inside = hparam_table(budgets=(1e10, 1e12, 1e13), noise=0.0005)
    outside = hparam_table(budgets=(1e11,), noise=0.0005, offset=2.0)  # every batch swept is above the best
    result = fit_batch(load_runs(pd.concat([inside, outside], ignore_index=True)), bootstrap=0)
    assert {b.flops: b.interior for b in result.budgets} == {1e10: True, 1e12: True, 1e13: True, 1e11: False}
    assert any("1e+11" in note and "outside the swept" in note for note in result.notes())


def test_fit_law_batch_writes_its_json_and_rejects_what_does_not_apply(tmp_path, capsys):
    path, out_json = tmp_path / "runs.csv", tmp_path / "batch.json"
    hparam_table(noise=0.001).to_csv(path, index=False)
    assert main(["fit", str(path), "--law", "batch", "--bootstrap", "20", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "batch_opt = c C^k: k" in out and "interior" in out
    data = json.loads(out_json.read_text())
    assert data["law"] == "batch" and data["against"] == "flops" and len(data["budgets"]) == 4
    assert set(data["batch_opt"]) == {"coefficient", "exponent", "ci95", "coefficient_ci95"}
    assert main(["fit", str(path), "--law", "batch", "--at", "1e21"]) == 2
    assert main(["fit", str(path), "--law", "chinchilla", "--against", "loss"]) == 2
    pd.read_csv(path).drop(columns="batch_size").to_csv(path, index=False)
    assert main(["fit", str(path), "--law", "batch"]) == 2
    err = capsys.readouterr().err
    assert "--at: does not apply to law batch" in err and "'batch_size'" in err
    assert "--against loss: applies to --law batch only" in err


def test_batch_json_keys_are_documented():
    from test_contracts import mentioned, missing, section

    data = fit_batch(load_runs(hparam_table(noise=0.001)), bootstrap=5).to_json()
    keys = {*data, *data["budgets"][0], *data["batch_opt"]}
    assert missing(keys, mentioned(section("The fit JSON"))) == []


def test_grouped_batch_fits_name_a_difference_in_the_exponent():
    from scaling.laws import fit_by

    a = hparam_table(noise=0.001).assign(recipe="a")
    b = hparam_table(noise=0.001, seed=1).assign(recipe="b", run_id=lambda f: "b" + f.run_id)
    b["batch_size"] *= (b["flops"] / 1e10) ** 0.2  # B's best batch grows as C^0.53, not C^0.33
    grouped = fit_by(load_runs(pd.concat([a, b], ignore_index=True)), "recipe",
                     lambda part: fit_batch(part, bootstrap=100))
    assert [d.quantity for d in grouped.differences()] == ["k (batch_opt = c C^k)"]
