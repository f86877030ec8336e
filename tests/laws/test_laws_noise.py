"""Seed replicates in the laws: which runs are replicates of one point, the noise floor measured from
them, the two-level bootstrap, parabolas through replicate means, and intervals that cover the truth
when replicates share a point's error."""
import numpy as np
import pandas as pd
import pytest
from laws_synth import isoflop_table, replicated_isoflop_table, true_allocation

from scaling.laws import fit_isoflop, load_runs, two_level_weights
from scaling.laws.isoflop import group_budgets
from scaling.laws.noise import depth_of, noise_floor

TRUTH = true_allocation()


def _runs(**cols):
    n = len(next(iter(cols.values())))
    return pd.DataFrame({"run_id": [f"r{i}" for i in range(n)], **cols})


def test_runs_differing_only_in_seed_share_a_point_and_other_settings_do_not():
    table = load_runs(_runs(params=[1e6, 1e6, 1e6, 1e6, 2e6], tokens=[1e8] * 5, seed=[0, 1, 2, 0, 0],
                            lr=[1e-3, 1e-3, 1e-3, 2e-3, 1e-3], loss=[3.0, 3.1, 2.9, 3.2, 2.8]))
    points = table.frame["point"].tolist()
    assert points[0] == points[1] == points[2]
    assert len(set(points)) == 3 and table.n_replicated == 1


def test_checkpoint_rows_of_one_run_stay_one_point_as_their_tokens_grow():
    frame = pd.DataFrame({"run_id": ["a", "a", "b", "b"], "step": [1, 2, 1, 2], "params": [1e6] * 4,
                          "tokens": [1e7, 2e7, 1e7, 2e7], "seed": [0, 0, 1, 1], "loss": [4.0, 3.0, 4.1, 3.1]})
    table = load_runs(frame)
    assert table.frame["point"].nunique() == 1 and table.n_runs == 2


def test_best_of_keeps_the_best_point_with_all_its_seeds_not_the_luckiest_seed():
    # lr 1e-3 has the lowest single run (2.7) but the higher mean (3.0 vs 2.9)
    table = load_runs(_runs(params=[1e6] * 5, tokens=[1e8] * 5, seed=[0, 1, 2, 0, 1],
                            lr=[1e-3, 1e-3, 1e-3, 2e-3, 2e-3], loss=[2.7, 3.15, 3.15, 2.9, 2.9]),
                      best_of=["lr"])
    assert table.frame["lr"].tolist() == [2e-3, 2e-3]


def test_noise_floor_recovers_the_seed_sd_and_ignores_differences_between_points():
    rng = np.random.default_rng(0)
    rows = [{"run_id": f"p{p}s{s}", "params": 1e6 * (p + 1), "tokens": 1e8, "flops_budget": 1e15 if p < 100 else 1e16,
             "seed": s, "loss": 3.0 + p * 0.1 + rng.normal(0, 0.02)} for p in range(200) for s in range(3)]
    rows.append({"run_id": "single", "params": 5e9, "tokens": 1e8, "flops_budget": 1e16, "seed": 0, "loss": 9.0})
    table = load_runs(pd.DataFrame(rows))
    noise = noise_floor(table, *group_budgets(table))
    assert noise.pooled.sd == pytest.approx(0.02, rel=0.06)  # 400 dof: sd of the estimate 3.5%
    assert noise.pooled.dof == 400 and noise.pooled.points == 200
    assert [c for c, _ in noise.budgets] == [1e15, 1e16]
    assert all(est.sd == pytest.approx(0.02, rel=0.1) for _, est in noise.budgets)


def test_noise_floor_is_not_measured_without_replicates():
    table = load_runs(_runs(params=[1e6, 2e6, 3e6], tokens=[1e8] * 3, loss=[3.0, 2.9, 3.1]))
    noise = noise_floor(table, *group_budgets(table))
    assert noise.pooled.sd is None and noise.budgets == () and "not measured" in noise.describe()


def test_two_level_weights_draw_points_with_all_their_seeds_within_strata():
    point_of_run = np.array([0, 0, 0, 1, 2, 2, 3])
    strata = np.array([0, 0, 1, 1])
    w = two_level_weights(np.arange(7), point_of_run, 400, seed=1, strata=strata)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 1] == w[:, 2]) and np.all(w[:, 4] == w[:, 5])
    assert np.all(w[:, 0] + w[:, 3] == 2)  # stratum 0 (points 0, 1) draws two points
    assert np.all(w[:, 4] + w[:, 6] == 2)
    assert w[:, 0].std() > 0  # points really are redrawn
    redrawn = two_level_weights(np.arange(7), point_of_run, 400, seed=1, strata=strata, redraw_seeds=True)
    assert np.all(redrawn[:, :3].sum(axis=1) == 3 * w[:, 0]) and np.any(redrawn[:, 0] != redrawn[:, 1])


def test_isoflop_parabola_goes_through_replicate_means_weighted_by_their_count():
    # One budget's sizes with 1, 4, 1, 1, 1 replicates: the means weighted by n (1/SE^2 with one SD),
    # not each size once; an unweighted fit through the means has a different minimum.
    base = replicated_isoflop_table(budgets=(1e18, 1e19), sizes=5, seeds=1, noise=0.01, seed=3)
    extra = base[base["run_id"] == "b0s1r0"]
    rng = np.random.default_rng(4)
    extra = pd.concat([extra.assign(run_id=f"x{k}", seed=k + 1, loss=extra["loss"] + rng.normal(0, 0.02))
                       for k in range(3)])
    table = load_runs(pd.concat([base, extra], ignore_index=True))
    prof = fit_isoflop(table, bootstrap=0, min_budgets=0).budgets[0]
    rows = table.frame[table.frame["flops_budget"] == 1e18]
    means = rows.groupby("params")["loss"].agg(["mean", "size"])
    x = np.log(means.index.to_numpy()) - prof.parabola[3]
    weighted = np.polyfit(x, means["mean"], 2, w=np.sqrt(means["size"]))
    plain = np.polyfit(x, means["mean"], 2)
    assert np.allclose(prof.parabola[2::-1], weighted, rtol=1e-9, atol=1e-12)
    assert not np.allclose(weighted, plain, rtol=1e-6)
    assert prof.replicated == 1 and prof.n_points == 8


def test_a_budget_shallower_than_twice_the_noise_is_flagged_and_fit_json_carries_the_noise():
    # span 0.15 in ln N makes the smallest budget's curve about 1e-4 deep against a noise SD of 0.01
    deep = replicated_isoflop_table(budgets=(1e19, 1e20, 1e21), sizes=5, span=1.5, seeds=3, noise=0.001, seed=1)
    shallow = replicated_isoflop_table(budgets=(1e18,), sizes=5, span=0.15, seeds=3, noise=0.01, seed=2)
    shallow["run_id"] = "shallow-" + shallow["run_id"]
    result = fit_isoflop(load_runs(pd.concat([shallow, deep], ignore_index=True)), bootstrap=50)
    flags = {b.flops: b.resolved for b in result.budgets}
    assert flags == {1e18: False, 1e19: True, 1e20: True, 1e21: True}
    out = result.to_json()
    assert out["noise"]["pooled"]["sd"] > 0.001 and out["noise"]["pooled"]["points"] == 20
    by_budget = {b["flops"]: b["sd"] for b in out["noise"]["budgets"]}
    assert by_budget[1e18] == pytest.approx(0.01 * 2.5, rel=0.5) and by_budget[1e20] < 0.005
    assert out["budgets"][0]["resolved"] is False and out["budgets"][0]["noise_from"] == "budget"
    assert any("1e+18" in line and "not resolved" in line for line in result.notes())


def test_depth_is_the_gap_from_the_minimum_to_the_better_edge_and_zero_at_an_edge():
    assert depth_of((1.0, 0.0, 1.0), -1.0, 2.0) == pytest.approx(1.0)  # edges 2 and 5, minimum 1
    assert depth_of((1.0, 1.0, 1.0), 0.0, 2.0) == 0.0  # increasing on the range: the minimum is an edge


@pytest.mark.slow  # the fast suite keeps the bootstrap-unit tests (tests/laws/test_laws_bootstrap_unit.py)
def test_isoflop_interval_covers_the_truth_when_replicates_share_a_point_error():
    # 4 budgets x 9 sizes x 3 seeds; each point's replicates share an error (sd 0.4%) on top of their
    # own (sd 0.4%). Resampling runs as if independent counts each shared error three times: it
    # covered the truth in 84% of these draws; resampling points covers it in 98% (measured, 120 draws).
    draws, hits = 120, 0
    for i in range(draws):
        table = load_runs(replicated_isoflop_table(sizes=9, noise=0.004, point_noise=0.004, seed=5000 + i))
        lo, hi = fit_isoflop(table, bootstrap=200, seed=i).n_opt.ci95
        hits += lo < TRUTH["a"] < hi
    assert 0.88 <= hits / draws <= 0.99, hits / draws


def test_fit_json_carries_the_noise_per_budget_and_pooled(tmp_path, capsys):
    from scaling.cli import main

    path = tmp_path / "runs.csv"
    replicated_isoflop_table(sizes=5, seeds=2, noise=0.01, seed=7).to_csv(path, index=False)
    out = tmp_path / "fit.json"
    assert main(["fit", str(path), "--law", "isoflop", "--bootstrap", "20", "--json", str(out)]) == 0
    noise = __import__("json").loads(out.read_text())["noise"]
    assert noise["pooled"]["points"] == 20 and noise["pooled"]["dof"] == 20 and noise["pooled"]["sd"] > 0
    assert [b["flops"] for b in noise["budgets"]] == [1e18, 1e19, 1e20, 1e21]
    assert "noise floor: run-to-run SD of the final loss" in capsys.readouterr().out


def test_three_sizes_of_one_seed_per_budget_give_no_interval_and_say_why_not_a_zero_width_one():
    """A parabola through exactly 3 points is the same in every resample that can fit it: the point
    bootstrap cannot see the noise there (a user's sweep showed N_opt [2.71e+05, 2.71e+05])."""
    exact = fit_isoflop(load_runs(isoflop_table(budgets=(4e11, 6e11, 9e11), sizes=3, span=0.6, noise=0.01)),
                       bootstrap=200)
    assert exact.n_opt.ci95 is None and exact.allocate([1e13]).at[0].ci95 == {}
    assert any("no intervals for N_opt(C)" in n and "3 sizes" in n for n in exact.notes())
    four = fit_isoflop(load_runs(isoflop_table(budgets=(4e11, 6e11, 9e11), sizes=4, span=0.6, noise=0.01)),
                      bootstrap=200)
    lo, hi = four.n_opt.ci95
    assert lo < four.n_opt.exponent < hi and not any("no intervals" in n for n in four.notes())
    seeds = isoflop_table(budgets=(4e11, 6e11, 9e11), sizes=3, span=0.6, noise=0.01)
    again = isoflop_table(budgets=(4e11, 6e11, 9e11), sizes=3, span=0.6, noise=0.01, seed=1)
    replicated = fit_isoflop(load_runs(pd.concat([seeds.assign(seed=0), again.assign(seed=1, params=seeds.params,
                                                                               flops=seeds.flops)])),
                            bootstrap=200)
    assert replicated.n_opt.ci95 is not None  # seeds let the resamples differ
