"""`scaling fit --law lr`: the best learning rate per size from an lr-by-size sweep, its power law in N,
and a run that takes the fitted rule with lr=fit:FIT.json."""
import json

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.laws import fit, fit_lr, load_runs

C_TRUE, K_TRUE = 0.5, -0.35  # lr_opt = 0.5 N^-0.35: 0.0089 at 1e5, 0.0040 at 1e6


def lr_table(sizes=(2e4, 5e4, 1e5, 3e5, 1e6), lrs_per=7, width=1.2, noise=0.002, seeds=1, seed=0, offset=0.0,
             budgets=(None,)):
    """Runs whose final loss is a parabola in ln lr around lr_opt(N) (curvature 0.03 per ln^2) on top of a
    law in N; the swept rates span lr_opt x exp(+-width), moved by `offset` in ln lr."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in budgets:
        for n in sizes:
            best = np.log(C_TRUE * n**K_TRUE)
            for x in np.linspace(best - width, best + width, lrs_per) + offset:
                for s in range(seeds):
                    loss = 2.0 + 30 * n**-0.3 + 0.03 * (x - best) ** 2 + rng.normal(0, noise)
                    rows.append({"run_id": f"n{n:g}b{b}x{x:.3f}s{s}", "params": n, "tokens": 2e6 if b is None else b,
                                 "lr": float(np.exp(x)), "seed": s, "loss": loss})
    return pd.DataFrame(rows)


def test_lr_opt_per_size_and_its_power_law_are_recovered_with_intervals():
    result = fit_lr(load_runs(lr_table(seeds=2)), bootstrap=200, seed=1)
    assert len(result.sizes) == 5 and all(s.interior for s in result.sizes)
    for s in result.sizes:
        truth = C_TRUE * s.params**K_TRUE
        assert s.lr_opt == pytest.approx(truth, rel=0.15)
        assert s.ci95[0] < truth < s.ci95[1]
    assert result.lr_opt.exponent == pytest.approx(K_TRUE, abs=0.03)
    lo, hi = result.lr_opt.ci95
    assert lo < K_TRUE < hi and hi - lo < 0.1
    assert result.rule(1e5) == pytest.approx(result.lr_opt.coefficient * 1e5**result.lr_opt.exponent)


def test_a_size_whose_best_lr_lies_outside_the_sweep_is_flagged_and_left_out():
    inside = lr_table(sizes=(2e4, 1e5, 1e6), noise=0.0005)
    outside = lr_table(sizes=(5e4,), noise=0.0005, offset=2.0)  # every rate swept is above the best
    result = fit_lr(load_runs(pd.concat([inside, outside], ignore_index=True)), bootstrap=0)
    flags = {s.params: s.interior for s in result.sizes}
    assert flags == {2e4: True, 1e5: True, 1e6: True, 5e4: False}
    alone = fit_lr(load_runs(inside), bootstrap=0)
    assert result.lr_opt.exponent == pytest.approx(alone.lr_opt.exponent, rel=1e-12)
    assert any("5e+04" in note and "outside the swept" in note for note in result.notes())


def test_each_budget_of_a_size_gets_its_own_optimum():
    result = fit_lr(load_runs(lr_table(sizes=(2e4, 1e5), budgets=(1e6, 4e6), noise=0.0005)), bootstrap=0)
    got = sorted((s.params, s.flops) for s in result.sizes)
    assert np.allclose(got, sorted((n, 6 * n * d) for n in (2e4, 1e5) for d in (1e6, 4e6)), rtol=1e-12)


@pytest.mark.parametrize("frame,message", [
    (lr_table().drop(columns="lr"), "needs an 'lr' column"),
    (lr_table(lrs_per=2), "needs at least 3 learning rates at some size"),
    (lr_table(sizes=(1e5,)), "needs at least 2 sizes whose best lr lies inside"),
])
def test_lr_fit_refuses_tables_that_cannot_give_a_rule(frame, message):
    with pytest.raises(UsageError, match=message):
        fit(load_runs(frame), "lr", bootstrap=0)


def test_lr_refuses_options_of_loss_laws():
    with pytest.raises(UsageError, match="budgets: does not apply to law lr"):
        fit(load_runs(lr_table()), "lr", bootstrap=0, budgets=[1e21])


def test_fit_command_writes_the_rule_and_a_run_takes_it(tmp_path, capsys):
    path, out = tmp_path / "lr.csv", tmp_path / "lr.json"
    lr_table(noise=0.001).to_csv(path, index=False)
    assert main(["fit", str(path), "--law", "lr", "--bootstrap", "50", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lr_opt = c N^k: k" in text and "interior" in text
    rule = json.loads(out.read_text())
    assert rule["law"] == "lr" and len(rule["sizes"]) == 5 and len(rule["lr_opt"]["ci95"]) == 2
    c, k = rule["lr_opt"]["coefficient"], rule["lr_opt"]["exponent"]
    cfg = RunConfig.from_dict({"params": 3e5, "tokens": 1e6, "lr": f"fit:{out}"})
    assert cfg.lr == pytest.approx(c * 3e5**k, rel=1e-12)
    assert cfg.lr == pytest.approx(C_TRUE * 3e5**K_TRUE, rel=0.1)


@pytest.mark.parametrize("values,message", [
    ({"d_model": 64, "lr": "fit:{fit}"}, "needs params=N"),
    ({"params": 1e5, "lr": "fit:{missing}"}, "cannot read"),
    ({"params": 1e5, "lr": "fit:{other}"}, "a fit JSON of law 'isoflop'; expected law lr or batch"),
    ({"params": 1e5, "lr": "fit:{batch}"}, "holds no learning-rate rule"),
])
def test_lr_from_a_fit_refuses_what_it_cannot_evaluate(tmp_path, values, message):
    (tmp_path / "fit.json").write_text(json.dumps({"law": "lr", "lr_opt": {"coefficient": 0.5, "exponent": -0.3}}))
    (tmp_path / "other.json").write_text(json.dumps({"law": "isoflop", "n_opt": {"coefficient": 1, "exponent": 1}}))
    (tmp_path / "batch.json").write_text(json.dumps({"law": "batch", "batch_opt": {"coefficient": 1, "exponent": 1}}))
    names = {"fit": tmp_path / "fit.json", "missing": tmp_path / "nope.json", "other": tmp_path / "other.json",
             "batch": tmp_path / "batch.json"}
    values = {k: v.format(**names) if isinstance(v, str) else v for k, v in values.items()}
    with pytest.raises(UsageError, match=message):
        RunConfig.from_dict({"tokens": 1e6, **values})
