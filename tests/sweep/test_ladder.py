"""`scaling sweep plan --validate C_BIG`: the ladder run past a finished sweep, where its fitted law puts
the compute-optimal model, with the predicted loss to check it against."""
import os

import numpy as np
import pytest
import yaml
from laws_synth import chinchilla_loss, isoflop_table, optimal_n

from scaling.cli import main
from scaling.errors import UsageError
from scaling.laws import fit_parametric, hoffmann_grid
from scaling.rules import Rules
from scaling.sweep import ladder, load_spec
from scaling.sweep import plan as plan_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "sweeps", "demo-grid.yaml")
CHEAP = {"starts": hoffmann_grid()[::90], "cross_check": False}
FRAME = isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21), noise=0.003, seed=2)  # largest compute ~1e21


def test_ladder_run_is_the_laws_optimum_past_the_sweep_with_a_prediction_that_holds_the_truth():
    run = ladder.plan_ladder(FRAME, 1e22, None, bootstrap=100, **CHEAP)
    lo, hi = run.n_opt_ci95
    assert lo < optimal_n(1e22) < hi
    assert run.params == pytest.approx(run.n_opt, rel=5e-3) and run.tokens == pytest.approx(1e22 / (6 * run.params))
    truth = chinchilla_loss(run.params, run.tokens)  # the generating law at the planned run
    assert run.loss_ci95[0] < truth < run.loss_ci95[1] and run.loss == pytest.approx(truth, rel=0.01)
    assert run.point() == {"flops_budget": 1e22, "params": run.params}


def test_planned_size_snaps_to_a_model_the_recipe_builds_and_the_prediction_is_for_that_model():
    shapes = [int(n) for n in np.geomspace(1e8, 1e11, 40)]
    run = ladder.plan_ladder(FRAME, 1e22, shapes, bootstrap=0, **CHEAP)
    assert run.params in shapes and run.params == plan_lib.snap([run.n_opt], shapes)[0]
    # a recipe with sizes far apart: the run is 4x off the optimum, and its predicted loss (and interval)
    # are that model's, above the optimum's
    coarse = ladder.plan_ladder(FRAME, 1e22, [int(1e9), int(2e10)], bootstrap=100, **CHEAP)
    assert coarse.params == int(2e10)
    truth = chinchilla_loss(coarse.params, 1e22 / (6 * coarse.params))
    assert coarse.loss_ci95[0] < truth < coarse.loss_ci95[1]
    assert coarse.loss_ci95[0] > chinchilla_loss(optimal_n(1e22), 1e22 / (6 * optimal_n(1e22)))


def test_fitted_rules_set_the_runs_lr_at_its_size_and_batch_at_its_budget():
    rules = Rules.from_fits([{"law": "lr", "lr_opt": {"coefficient": 0.5, "exponent": -0.35}},
                             {"law": "batch", "against": "flops", "batch_opt": {"coefficient": 0.3, "exponent": 0.33}}])
    run = ladder.plan_ladder(FRAME, 1e22, None, rules, bootstrap=0, **CHEAP)
    assert run.lr == pytest.approx(0.5 * run.params ** -0.35)
    assert run.batch_size == round(0.3 * 1e22 ** 0.33)
    # against the loss: at the loss the ladder predicts for its run (a plain run has none to give)
    by_loss = Rules.from_fits([{"law": "batch", "against": "loss",
                                "batch_opt": {"coefficient": 1e3, "exponent": -2.0}}])
    assert ladder.plan_ladder(FRAME, 1e22, None, by_loss, bootstrap=0, **CHEAP).batch_size == round(
        1e3 * run.loss ** -2.0)
    with pytest.raises(UsageError, match="law 'chinchilla'; expected law lr or batch"):
        Rules.from_fits([{"law": "chinchilla"}])
    tiny = Rules.from_fits([{"law": "batch", "batch_opt": {"coefficient": 1e-9, "exponent": 0.33}}])
    with pytest.raises(UsageError, match="a batch needs at least 1"):  # refused, not clamped to 1
        ladder.plan_ladder(FRAME, 1e22, None, tiny, bootstrap=0, **CHEAP)


@pytest.mark.parametrize("factor", [2.0, 50.0])
def test_a_budget_outside_4_to_30x_the_sweeps_largest_is_refused(factor):
    largest = FRAME["flops"].max()
    with pytest.raises(UsageError, match="a ladder run goes 4-30x past it"):
        ladder.plan_ladder(FRAME, factor * largest, None, bootstrap=0, **CHEAP)


def test_validate_command_writes_the_run_on_the_sweeps_own_spec(tmp_path, capsys, monkeypatch):
    spec = yaml.safe_load(open(DEMO))
    monkeypatch.setattr(ladder, "runs_table", lambda home, sweep: FRAME)
    monkeypatch.setattr("scaling.sweep.register.require_sweep",
                        lambda home, sweep: {"sweep_id": sweep, "name": "demo", "spec": spec})
    monkeypatch.setattr(ladder, "_registered_shapes", lambda spec: None)  # the synthetic law's sizes: not the recipe's
    monkeypatch.setattr(ladder, "fit_parametric",
                        lambda *a, **k: fit_parametric(*a, **{**k, **CHEAP, "bootstrap": 30}))
    rule = tmp_path / "lr.json"
    rule.write_text('{"law": "lr", "lr_opt": {"coefficient": 0.5, "exponent": -0.35}}')
    out = tmp_path / "ladder.yaml"
    assert main(["--home", str(tmp_path / "runs"), "sweep", "plan", "--validate", "1e22", "--sweep", "demo-abc",
                 "--rules", str(rule), "--out", str(out)]) == 0
    written = load_spec(str(out))
    (point,) = written.points
    assert written.name == "demo-ladder" and point["flops_budget"] == 1e22 and "lr" in point
    assert point["validates"] == "demo-abc"  # the run names the sweep it checks: fit and report find it
    text = out.read_text()
    assert "predicted loss" in yaml.safe_load(text)["description"] and "predicted loss" in text.splitlines()[2]
    assert "batch_size" in {p.name for p in written.parameters}  # no batch rule: the sweep's own constant stays
    capsys.readouterr()
    for argv, message in ((["--validate", "1e22"], "needs --sweep SWEEP"),
                          (["--validate", "1e22", "--sweep", "s", "--budgets", "1e11"], "takes none of"),
                          (["--validate", "1e22", "--sweep", "s", "--rules", str(tmp_path / "no.json")],
                           "cannot read it")):
        assert main(["sweep", "plan", *argv, "--out", str(tmp_path / "x.yaml")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err


def test_a_ladder_spec_may_name_the_sweep_it_checks_by_name_and_gets_its_id(tmp_path, capsys):
    from scaling.runs import RunHome
    from scaling.sweep import create_sweep

    home = RunHome(str(tmp_path / "runs"))
    home.register_sweep("demo-1a2b3c", "demo", {}, [{"run_id": "demo-1a2b3c-000", "status": "pending", "config": {}}])
    spec = tmp_path / "ladder.yaml"
    command = ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"]
    spec.write_text(yaml.safe_dump({
        "name": "demo-ladder", "method": "grid", "command": command,
        "parameters": {"corpus": {"value": "synthetic:64"}, "seq_len": {"value": 32}, "batch_size": {"value": 4}},
        "points": [{"params": 5.0e3, "flops_budget": 1.0e10, "validates": "demo"}]}))
    created = create_sweep(home, str(spec))
    (run,) = created["runs"]
    assert run["config"]["validates"] == "demo-1a2b3c" and "validates: demo is sweep demo-1a2b3c" in created["notes"]
    spec.write_text(spec.read_text().replace("validates: demo", "validates: nosuch"))
    assert main(["--home", home.root, "sweep", "create", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "validates=nosuch: no sweep of that id or name" in err
    assert len(home.sweeps()) == 2  # nothing more registered


def test_4x_the_largest_budget_is_a_ladder_run_though_its_runs_measured_a_little_more():
    # runs round D to whole steps: the demo's 2e12 runs measure up to 2.002e12, and 8e12 must still be 4x
    budget = {f"b{i}": c for i, c in enumerate((1e18, 1e19, 1e20, 1e21))}
    frame = FRAME.assign(flops_budget=FRAME["run_id"].str[:2].map(budget))
    frame.loc[frame["flops"].idxmax(), "flops"] = 1.004e21
    run = ladder.plan_ladder(frame, 4e21, None, bootstrap=0, **CHEAP)
    assert run.largest == 1e21 and run.flops == 4e21
    with pytest.raises(UsageError, match="a ladder run goes 4-30x past it"):  # measured C alone: 3.98x
        ladder.plan_ladder(frame.drop(columns="flops_budget"), 4e21, None, bootstrap=0, **CHEAP)
