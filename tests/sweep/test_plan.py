"""The isoFLOP planner: sizes centred on each budget's predicted optimum, written as listed points that
`scaling sweep create` accepts, and refinement past the edges of a finished sweep."""
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import yaml
from laws_synth import isoflop_table, optimal_n

from scaling.cli import main
from scaling.errors import UsageError
from scaling.laws import fit_isoflop, load_runs
from scaling.runs import RunHome
from scaling.sweep import enumerate_points, load_spec, parse_spec
from scaling.sweep import plan as plan_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "sweeps", "demo-grid.yaml")  # a plain product grid as the base
COMMAND = ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"]


def test_sizes_spread_log_evenly_over_the_span_around_n_opt():
    sizes = plan_lib.sizes_around(1e6, 5, 4.0)
    assert sizes[0] == pytest.approx(1e6 / 4) and sizes[-1] == pytest.approx(1e6 * 4)
    assert sizes[2] == pytest.approx(1e6)
    assert np.allclose(np.diff(np.log(sizes)), np.log(4.0) / 2)  # 2 ln R over K - 1 gaps


def test_the_chinchilla_prior_is_hoffmanns_unrounded_law():
    with open(os.path.join(ROOT, "analysis", "published.yaml")) as fh:
        p = yaml.safe_load(fh)["chinchilla_unrounded"]["params"]
    s = p["alpha"] + p["beta"]
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / s)  # Hoffmann et al. eq. 4
    prior = plan_lib.prior_from("chinchilla")
    for c in (1e11, 1e18, 1e24):
        assert prior.n_opt(c) == pytest.approx(G * (c / 6) ** (p["beta"] / s), rel=1e-12)


def test_a_fit_json_is_a_prior_whichever_law_wrote_it(tmp_path):
    iso = tmp_path / "iso.json"
    iso.write_text(json.dumps({"law": "isoflop", "n_opt": {"coefficient": 0.02, "exponent": 0.6}}))
    assert plan_lib.prior_from(str(iso)).n_opt(1e12) == pytest.approx(0.02 * 1e12**0.6)
    law = tmp_path / "law.json"
    law.write_text(json.dumps({"law": "chinchilla", "optimal": {"a": 0.5, "b": 0.5, "G": 3.0}}))
    assert plan_lib.prior_from(str(law)).n_opt(6e12) == pytest.approx(3.0 * 1e12**0.5)
    report = tmp_path / "report-fit.json"  # a report's fit.json holds every law; isoFLOP first
    report.write_text(json.dumps({"metric": "loss", "chinchilla": json.loads(law.read_text()),
                                  "isoflop": {"law": "isoflop", "n_opt": {"coefficient": None, "exponent": None}}}))
    assert plan_lib.prior_from(str(report)).source.startswith("chinchilla fit")
    for bad, message in ((tmp_path / "none.json", "no such file"), (tmp_path / "iso.json", None)):
        if message:
            with pytest.raises(UsageError, match=message):
                plan_lib.prior_from(str(bad))
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(UsageError, match="not a fit JSON"):
        plan_lib.prior_from(str(junk))


def test_snapping_picks_distinct_recipe_sizes_nearest_the_targets():
    shapes = [10, 20, 40, 80, 160, 320]
    assert plan_lib.snap([19, 41, 79], shapes) == [20, 40, 80]
    assert plan_lib.snap([20, 21, 22], shapes) == [20, 40, 80]  # one shape twice would be one run twice
    assert plan_lib.snap([300, 310, 320], shapes) == [80, 160, 320]  # pushed down at the top
    with pytest.raises(UsageError, match="the recipe has 2 model sizes"):
        plan_lib.snap([1, 2, 3], [10, 20])


def test_plan_writes_a_spec_sweep_create_registers_with_each_budgets_sizes_around_its_optimum(tmp_path, capsys):
    out = tmp_path / "plan.yaml"
    assert main(["sweep", "plan", "--budgets", "2.5e11,1e12,4e12", "--per-budget", "5", "--span", "3",
                 "--prior", "chinchilla", "--base", DEMO, "--out", str(out)]) == 0
    spec = load_spec(str(out))
    assert spec.method == "grid" and {p.name for p in spec.parameters} == {"corpus", "seq_len", "batch_size",
                                                                           "n_evals", "eval_tokens"}
    prior = plan_lib.prior_from("chinchilla")
    constants = {p.name: p.settings["value"] for p in spec.parameters}
    shapes = plan_lib.recipe_shapes(constants, up_to=1e7)
    for c in (2.5e11, 1e12, 4e12):
        sizes = [p["params"] for p in spec.points if p["flops_budget"] == c]
        targets = plan_lib.sizes_around(prior.n_opt(c), 5, 3.0)
        assert sizes == plan_lib.snap(targets, shapes) and len(set(sizes)) == 5
        # centred: the middle size is the recipe's nearest to N_opt, unless a neighbour took it
        assert abs(math.log(sizes[2] / prior.n_opt(c))) < math.log(3.0)
    home = tmp_path / "runs"
    capsys.readouterr()
    assert main(["--home", str(home), "sweep", "create", str(out)]) == 0
    sweep_id = capsys.readouterr().out.strip().splitlines()[-1]
    runs = RunHome(str(home)).sweep_runs(sweep_id)
    assert len(runs) == 15 + 2 * 5  # the demo's seeds: 3 at 2.5e11
    for run in runs:  # each listed size is a model the trainer builds exactly
        assert run.config["params"] == run.plan["params"]


def test_plan_without_a_base_takes_key_value_settings(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    assert main(["sweep", "plan", "--budgets", "1e11", "--per-budget", "3", "--span", "2", "--out", str(out),
                 "corpus=synthetic", "seq_len=64"]) == 0
    spec = load_spec(str(out))
    assert {p.name: p.settings["value"] for p in spec.parameters} == {"corpus": "synthetic", "seq_len": 64}
    assert list(spec.command) == COMMAND and len(enumerate_points(spec)) == 3
    assert "N_opt(C) = " in out.read_text().splitlines()[1]


@pytest.mark.parametrize("argv,message", [
    (["--per-budget", "5", "--span", "3"], "give --budgets C1,C2,... (a new plan) or --refine SWEEP"),
    (["--budgets", "1e11", "--refine", "x", "--span", "3"], "one of them"),
    (["--budgets", "1e11", "--per-budget", "2", "--span", "3"], "at least 3 sizes per budget"),
    (["--budgets", "1e11,-3", "--span", "3"], "--budgets budgets must be positive"),
    (["--budgets", "1e11", "--span", "3", "--prior", "nope.json"], "no such file"),
    (["--budgets", "1e11", "--span", "3", "colour=red"], "unknown key 'colour'"),
    (["--refine", "nope"], "no sweep 'nope'"),
])
def test_plan_refuses_bad_input_in_one_line(tmp_path, capsys, argv, message):
    out = tmp_path / "plan.yaml"
    assert main(["--home", str(tmp_path / "runs"), "sweep", "plan", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not out.exists()


def test_plan_refuses_a_span_of_one_or_less(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["sweep", "plan", "--budgets", "1e11", "--span", "1", "--out", str(tmp_path / "p.yaml")])
    assert stop.value.code == 2


def _spec(**extra):
    return {"method": "grid", "command": COMMAND, **extra}


def test_listed_points_run_as_given_each_with_the_parameters_grid():
    spec = parse_spec(_spec(parameters={"seq_len": {"values": [64, 128]}},
                            points=[{"params": 2e4, "flops_budget": 1e11}, {"params": 5e4, "flops_budget": 3e11}],
                            seeds={"count": 2, "where": {"flops_budget": 1e11}}))
    assert enumerate_points(spec) == [
        {"params": 2e4, "flops_budget": 1e11, "seq_len": 64, "seed": 0},
        {"params": 2e4, "flops_budget": 1e11, "seq_len": 64, "seed": 1},
        {"params": 2e4, "flops_budget": 1e11, "seq_len": 128, "seed": 0},
        {"params": 2e4, "flops_budget": 1e11, "seq_len": 128, "seed": 1},
        {"params": 5e4, "flops_budget": 3e11, "seq_len": 64},
        {"params": 5e4, "flops_budget": 3e11, "seq_len": 128},
    ]


@pytest.mark.parametrize("extra,message", [
    ({"method": "random", "run_cap": 3, "parameters": {"lr": {"min": 0.1, "max": 1.0}}, "points": [{"params": 1e4}]},
     "points: only with method: grid"),
    ({"points": [{"params": 1e4, "colour": "red"}]}, "points[0].colour: unknown key"),
    ({"points": [{"run_id": "x"}]}, "points[0].run_id: set by the sweep engine"),
    ({"points": []}, "points: expected a non-empty list"),
    ({"points": [{"params": [1, 2]}]}, "points[0].params: expected a number"),
    ({"points": [{"params": 1e4}], "parameters": {"params": {"value": 2e4}}}, "'params' is also a parameter"),
    ({}, "parameters: required"),
])
def test_listed_points_refuse_what_the_engine_cannot_run(extra, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(_spec(**extra))


def test_refine_adds_sizes_past_the_edge_only_where_the_minimum_fell_outside():
    # budget 4's sizes all lie above its optimum (shifted up by 3 in ln N): its minimum is below them
    frame = isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21, 1e22), shift=(4, 3.0))
    iso = fit_isoflop(load_runs(frame), bootstrap=0)
    assert [b.interior for b in iso.budgets] == [True, True, True, True, False]
    points, lines = plan_lib.refine_table(frame, 3)
    assert {p["flops_budget"] for p in points} == {iso.budgets[4].flops} and len(points) == 3
    lo, hi = iso.budgets[4].params_range
    step = math.log(hi / lo) / 8  # 9 sizes; the new ones are rounded to 3 significant digits
    assert [p["params"] for p in points] == pytest.approx([lo * math.exp(-k * step) for k in (1, 2, 3)], rel=5e-3)
    assert "below" in lines[4] and all("kept" in line for line in lines[:4])
    # the new sizes reach toward the optimum the sampled ones missed
    assert min(p["params"] for p in points) < lo < hi and optimal_n(1e22) < lo
    assert plan_lib.refine_table(isoflop_table(seed=1), 3) == ([], plan_lib.refine_table(isoflop_table(seed=1), 3)[1])


def test_refine_command_writes_the_new_points_on_the_sweeps_own_spec(tmp_path, capsys, monkeypatch):
    spec = yaml.safe_load(open(DEMO))
    frame = isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21), shift=(0, -3.0))  # budget 0: minimum above
    monkeypatch.setattr(plan_lib, "runs_table", lambda home, sweep: frame)
    monkeypatch.setattr("scaling.sweep.register.require_sweep",
                        lambda home, sweep: {"sweep_id": sweep, "name": "demo", "spec": spec})
    out = tmp_path / "refine.yaml"
    assert main(["--home", str(tmp_path / "runs"), "sweep", "plan", "--refine", "demo-abc", "--per-budget", "2",
                 "--out", str(out)]) == 0
    written = load_spec(str(out))
    assert written.name == "demo-refine" and {p.name for p in written.parameters} >= {"corpus", "seq_len"}
    (b0,) = [b for b in fit_isoflop(load_runs(frame), bootstrap=0, min_budgets=0).budgets if not b.interior]
    assert [p["flops_budget"] for p in written.points] == [b0.flops, b0.flops]
    assert all(p["params"] > b0.params_range[1] for p in written.points)


def test_an_isoflop_exponent_needs_three_interior_budgets():
    frame = isoflop_table(budgets=(1e18, 1e19, 1e20), shift=(2, 3.0))  # two interior budgets
    with pytest.raises(UsageError, match="at least 3 budgets whose loss minimum lies inside"):
        fit_isoflop(load_runs(frame), bootstrap=0)
    profiles = fit_isoflop(load_runs(frame), bootstrap=0, min_budgets=0)
    assert sum(b.interior for b in profiles.budgets) == 2 and math.isnan(profiles.n_opt.exponent)
    three = fit_isoflop(load_runs(isoflop_table(budgets=(1e18, 1e19, 1e20))), bootstrap=0)
    assert three.n_opt.exponent == pytest.approx(0.4516, abs=0.03)


def test_plan_as_branches_gives_each_size_one_wsd_run_whose_branches_cover_its_planned_budgets(tmp_path, capsys):
    from scaling.config import RunConfig
    from scaling.train import plan_run
    from scaling.train.branches import branch_plans

    grid, branched = tmp_path / "grid.yaml", tmp_path / "branches.yaml"
    common = ["sweep", "plan", "--budgets", "2.5e11,5e11,1e12", "--per-budget", "4", "--span", "3", "--base", DEMO]
    assert main([*common, "--out", str(grid)]) == 0
    assert main([*common, "--branches", "--out", str(branched)]) == 0
    planned = {(p["params"], p["flops_budget"]) for p in load_spec(str(grid)).points}
    spec = load_spec(str(branched))
    assert {p.name: p.settings.get("value") for p in spec.parameters}["schedule"] == "wsd"
    assert len(spec.points) == len({n for n, _ in planned}) < len(planned)  # one run per size
    assert [p["flops_budget"] for p in spec.points] == sorted((p["flops_budget"] for p in spec.points), reverse=True)
    covered = set()
    constants = {p.name: p.settings["value"] for p in spec.parameters if "value" in p.settings}
    for point in spec.points:
        plan = plan_run(RunConfig.from_dict({**constants, **point, "wandb": "off"}))
        covered.add((point["params"], point["flops_budget"]))
        for branch in branch_plans(plan):
            assert branch.config.branch_of == plan.run_id  # shares the parent's warmup: a real branch
            covered.add((point["params"], branch.config.flops_budget))
    assert covered == planned
    assert main([*common, "--branches", "--refine", "x", "--out", str(branched)]) == 2


def test_a_fit_json_prior_takes_n_opts_exponent_a_not_d_opts_b(tmp_path):
    # a != b (a = b = 0.5 above would let a planner reading b for a pass)
    law = tmp_path / "law.json"
    law.write_text(json.dumps({"law": "chinchilla", "optimal": {"a": 0.46, "b": 0.54, "G": 3.0}}))
    assert plan_lib.prior_from(str(law)).n_opt(6e12) == pytest.approx(3.0 * 1e12**0.46)
    iso = tmp_path / "iso.json"
    iso.write_text(json.dumps({"law": "isoflop", "n_opt": {"coefficient": 0.05, "exponent": 0.45},
                               "d_opt": {"coefficient": 3.3, "exponent": 0.55}}))
    assert plan_lib.prior_from(str(iso)).n_opt(1e12) == pytest.approx(0.05 * 1e12**0.45)


def test_a_prior_from_a_real_isoflop_fit_json_plans_around_that_fits_n_opt(tmp_path):
    from laws_synth import isoflop_table

    from scaling.laws import fit_isoflop, load_runs

    result = fit_isoflop(load_runs(isoflop_table(noise=0.001)), bootstrap=0)
    assert abs(result.n_opt.exponent - result.d_opt.exponent) > 0.05  # a != b: a swap would show
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(result.to_json()))
    for c in (1e19, 1e23):
        assert plan_lib.prior_from(str(path)).n_opt(c) == pytest.approx(result.allocate([c]).at[0].params, rel=1e-9)


def test_refine_upward_joins_each_budget_as_planned_and_takes_the_recipe_sizes_nearest_each_target_above():
    # budget 0's sizes all lie below its optimum, and its runs measured 15% over the planned FLOPs (steps
    # rounded up): the new points join the planned 1e18 exactly, at the budget's own spacing of 9 sizes
    frame = isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21), shift=(0, -3.0))
    frame["flops_budget"] = [10.0 ** (18 + int(run_id[1])) for run_id in frame["run_id"]]
    frame["flops"] = frame["flops_budget"] * 1.15
    (b0,) = [b for b in fit_isoflop(load_runs(frame), bootstrap=0, min_budgets=0).budgets if not b.interior]
    lo, hi = b0.params_range
    shapes = sorted({int(n) for n in np.geomspace(hi / 4, hi * 20, 40)})
    points, lines = plan_lib.refine_table(frame, 3, shapes)
    assert [p["flops_budget"] for p in points] == [1e18] * 3
    targets = [hi * math.exp((k + 1) * math.log(hi / lo) / 8) for k in range(3)]
    above = [n for n in shapes if n > hi * 1.001]
    nearest = [min(above, key=lambda n: abs(math.log(n / t))) for t in targets]
    assert [p["params"] for p in points] == sorted(nearest) and len(set(nearest)) == 3
    assert "above" in lines[0] and "adding" in lines[0]


def test_the_budgets_a_refusal_names_are_rounded_to_3_figures_toward_the_side_that_passes():
    assert plan_lib._ceil3(1.2345e12) == pytest.approx(1.24e12) and plan_lib._ceil3(1.23e12) == pytest.approx(1.23e12)
    assert plan_lib._floor3(1.2389e12) == pytest.approx(1.23e12) and plan_lib._floor3(1.23e12) == pytest.approx(1.23e12)
    assert plan_lib._ceil3(9.991e10) == pytest.approx(1e11) and plan_lib._floor3(9.999e10) == pytest.approx(9.99e10)


def test_refine_handles_each_off_range_budget_in_turn_and_says_when_the_recipe_has_nothing_past_an_edge():
    # budget 0's minimum below its sizes, budget 3's above
    below = isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21), shift=(0, 3.0))
    above = isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21), shift=(3, -3.0))
    frame = pd.concat([below[~below["run_id"].str.startswith("b3")], above[above["run_id"].str.startswith("b3")]],
                      ignore_index=True)

    # rounded sizes (no recipe): 3 new points at each of the two budgets, one line each, in budget order
    points, lines = plan_lib.refine_table(frame, 3)
    budgets = fit_isoflop(load_runs(frame), bootstrap=0, min_budgets=0).budgets
    assert [p["flops_budget"] for p in points] == [budgets[0].flops] * 3 + [budgets[3].flops] * 3
    assert "below" in lines[0] and "above" in lines[3] and all("kept" in line for line in lines[1:3])
    assert lines[0].endswith("adding " + ", ".join(f"{p['params']:.3g}" for p in points[:3]))
    # a recipe with nothing below budget 0's sizes: that budget says so, and budget 3 is still refined
    hi3 = budgets[3].params_range[1]
    shapes = [int(hi3 * f) for f in (1.5, 2.2, 3.3, 5.0)]
    points, lines = plan_lib.refine_table(frame, 3, shapes)
    assert lines[0].endswith(f"no buildable size past the edge not yet run (the recipe's smallest, {min(shapes):,} "
                             "params); a larger budget moves N_opt up into reach")
    assert [p["params"] for p in points] == shapes[:3] and {p["flops_budget"] for p in points} == {budgets[3].flops}
