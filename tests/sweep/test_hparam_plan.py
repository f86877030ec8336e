"""`scaling sweep plan --hparams`: an lr x batch-size grid at each budget's compute-optimal model, centred
on the recipe's own values there, that `sweep create` registers and `fit --law batch` can read."""
import math
import os

import numpy as np
import pytest

from scaling.cli import main
from scaling.errors import UsageError
from scaling.runs import RunHome
from scaling.sweep import load_spec
from scaling.sweep import plan as plan_lib
from scaling.sweep.hparams import plan_grid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "sweeps", "demo-grid.yaml")
CONSTANTS = {"corpus": "synthetic", "seq_len": 64}


def test_each_axis_is_log_even_and_centred_on_the_recipe_value_at_that_budget():
    prior = plan_lib.prior_from("chinchilla")
    seen = []

    def recipe(settings):  # a stand-in rule whose values differ per size, to see each budget centred on its own
        seen.append(settings)
        return 1e-2 * (settings["params"] / 1e5) ** -0.5, 32
    grids = plan_grid([2.5e11, 4e12], 5, 4.0, prior, CONSTANTS, resolve=recipe)
    for g in grids:
        assert g.lr == pytest.approx(1e-2 * (g.params / 1e5) ** -0.5)
        assert g.lrs[2] == pytest.approx(g.lr, rel=5e-3)  # the middle value is the recipe's, to 3 digits
        ratios = np.diff(np.log(g.lrs))
        assert ratios == pytest.approx([math.log(4.0) / 2] * 4, abs=1e-2)  # value/4 .. value*4, log-even
        assert g.batch_sizes == (8, 16, 32, 64, 128)
        assert len(g.points()) == 25 and {p["flops_budget"] for p in g.points()} == {g.flops}
    assert grids[0].params < grids[1].params  # each budget its own compute-optimal model
    # the largest batch is checked to make a whole step at its budget
    assert any(s.get("batch_size") == 128 for s in seen)


def test_small_batch_sizes_stay_distinct_whole_numbers():
    grids = plan_grid([1e12, 4e12], 5, 3.0, plan_lib.prior_from("chinchilla"), CONSTANTS,
                      resolve=lambda s: (1e-3, 2))
    assert grids[0].batch_sizes == (1, 2, 3, 4, 6)  # 0.67, 1.15, 2, 3.5, 6 rounded, then made distinct


def test_a_budget_too_small_for_the_largest_batch_is_refused_by_name():
    def recipe(settings):
        if settings.get("batch_size", 0) > 40:
            raise UsageError("less than one batch")
        return 1e-3, 16
    with pytest.raises(UsageError, match=r"--budgets 2.5e\+11: the largest batch size 48"):
        plan_grid([2.5e11, 1e12], 5, 3.0, plan_lib.prior_from("chinchilla"), CONSTANTS, resolve=recipe)


def test_hparam_plan_writes_a_spec_sweep_create_registers(tmp_path, capsys):
    out = tmp_path / "hp.yaml"
    assert main(["sweep", "plan", "--hparams", "--budgets", "2.5e11,1e12", "--per-budget", "3", "--span", "2",
                 "--base", DEMO, "--out", str(out)]) == 0
    spec = load_spec(str(out))
    names = {p.name for p in spec.parameters}
    assert "batch_size" not in names and "lr" not in names  # the points set both
    assert len(spec.points) == 2 * 9 and {p["flops_budget"] for p in spec.points} == {2.5e11, 1e12}
    demo_batch = 16  # the base spec's constant batch size is the grid's centre
    assert sorted({p["batch_size"] for p in spec.points}) == [8, demo_batch, 32]
    home = tmp_path / "runs"
    capsys.readouterr()
    assert main(["--home", str(home), "sweep", "create", str(out)]) == 0
    sweep_id = capsys.readouterr().out.strip().splitlines()[-1]
    runs = RunHome(str(home)).sweep_runs(sweep_id)
    assert {(r.plan["batch_size"], r.plan["lr"]) for r in runs if r.status == "pending"} == {
        (p["batch_size"], p["lr"]) for p in spec.points}


@pytest.mark.parametrize("argv,message", [
    (["--budgets", "1e12", "--per-budget", "3"], "at least two budgets"),
    (["--budgets", "1e12,4e12", "--per-budget", "2"], "at least 3 values per hyperparameter"),
    (["--refine", "x"], "neither --refine nor --branches"),
    (["--per-budget", "3"], "--hparams needs --budgets"),
])
def test_hparam_plan_refuses_bad_input_in_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "hp.yaml"
    assert main(["--home", str(tmp_path / "runs"), "sweep", "plan", "--hparams", *argv, "--out", str(out),
                 "corpus=synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not out.exists()
