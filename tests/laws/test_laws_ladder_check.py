"""The ladder check: a run past a sweep, predicted by laws fitted to the sweep alone (issue 25 item 4). On a
law of known truth a ladder run drawn from it falls inside the interval, one 10% above it is flagged, and the
ladder runs never enter the fit that predicts them."""
import json

import pandas as pd
import pytest
from laws_synth import chinchilla_loss, optimal_n, replicated_isoflop_table

from scaling.cli import main
from scaling.laws import fit, hoffmann_grid, load_runs
from scaling.laws.ladder_check import check_ladder, split_ladder

CHEAP = {"starts": hoffmann_grid()[::90], "cross_check": False}
BIG = 1e22  # 10x the sweep's largest budget
SWEEP = replicated_isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21), sizes=5, seeds=2, noise=0.003).assign(sweep_id="s")


def ladder_rows(factors=(1.0, 1.1), sweep="s-ladder"):
    """Ladder runs at the true optimum of BIG, their losses the truth times each factor."""
    n = optimal_n(BIG)
    truth = chinchilla_loss(n, BIG / (6 * n))
    return pd.DataFrame([{"run_id": f"L{i}", "sweep_id": sweep, "validates": "s", "params": n, "flops": BIG,
                          "loss": f * truth} for i, f in enumerate(factors)])


@pytest.fixture(scope="module")
def checked():
    fitted = []

    def spy(table, law):
        fitted.append(table)
        return fit(table, law, bootstrap=100, **CHEAP)

    # registered in the sweep they check: only their `validates` tells them from its runs
    frame = pd.concat([SWEEP, ladder_rows(sweep="s")], ignore_index=True)
    return check_ladder(frame, ("isoflop",), fit_law=spy), fitted


def test_a_ladder_run_drawn_from_the_truth_falls_inside_the_interval(checked):
    check, _ = checked
    run = next(r for r in check.runs if r.run_id == "L0")
    (p,) = run.predictions  # isoFLOP profiles give no loss past their data: Approach 3 alone
    assert p.law == "chinchilla"
    assert p.ci95[0] < p.measured < p.ci95[1] and p.inside
    assert abs(p.in_half_widths) <= 1 and abs(p.rel_error) < 0.01
    assert run.past == pytest.approx(10, rel=0.02) and run.fitted_runs == len(SWEEP)
    assert p.noise_sd == pytest.approx(0.003 * 2.5, rel=0.6)  # the replicates' spread, in nats (loss ~ 2.5)


def test_a_ladder_run_10_percent_above_the_truth_is_flagged_outside(checked):
    check, _ = checked
    p = next(r for r in check.runs if r.run_id == "L1").predictions[0]
    assert p.inside is False and "OUTSIDE" in p.verdict()
    assert p.rel_error == pytest.approx(0.1, abs=0.01) and p.in_half_widths > 3 and p.in_noise_sds > 10
    assert any("OUTSIDE" in line and "L1" in line for line in check.headline())
    assert json.dumps(check.to_json())  # plain JSON, no NaN


def test_the_ladder_runs_are_never_in_the_fit_that_predicts_them(checked):
    check, fitted = checked
    (table,) = fitted  # Approach 3, on the sweep's runs alone
    assert set(table.frame["run"]) == set(SWEEP["run_id"])
    # its prediction is that of the sweep's own fit: the 10% outlier moved nothing
    alone = fit(load_runs(SWEEP), "chinchilla", bootstrap=0, **CHEAP)
    p = check.runs[0].predictions[0]
    assert p.loss == pytest.approx(float(alone.predict(params=check.runs[0].params, tokens=check.runs[0].tokens)),
                                   rel=1e-6)


def test_the_error_is_measured_in_the_half_width_on_the_side_the_measurement_fell():
    from scaling.laws.ladder_check import Prediction

    # a skewed interval, as bootstrap percentiles are: 0.1 below the prediction, 0.4 above
    below = Prediction("chinchilla", "Approach 3", 2.0, (1.9, 2.4), measured=1.85, noise_sd=0.05)
    above = Prediction("chinchilla", "Approach 3", 2.0, (1.9, 2.4), measured=2.3, noise_sd=0.05)
    assert below.in_half_widths == pytest.approx(-1.5) and below.inside is False
    assert above.in_half_widths == pytest.approx(0.75) and above.inside is True
    assert above.in_noise_sds == pytest.approx(6.0) and below.in_noise_sds == pytest.approx(-3.0)
    assert "OUTSIDE" in below.verdict() and "within 2 noise SDs" not in below.verdict()
    near = Prediction("chinchilla", "Approach 3", 2.0, (1.99, 2.01), measured=2.05, noise_sd=0.05)
    assert "OUTSIDE" in near.verdict() and "within 2 noise SDs" in near.verdict()


def test_ladder_runs_of_a_sweep_missing_from_the_table_are_listed_not_checked():
    frame = pd.concat([SWEEP, ladder_rows((1.0,)).assign(validates="gone")], ignore_index=True)
    check = check_ladder(frame, fit_law=lambda t, law: pytest.fail("nothing to fit"))
    (run,) = check.runs
    assert run.predictions == () and "not in the table" in run.reason
    assert check_ladder(SWEEP) is None
    rest, ladder = split_ladder(frame.assign(validates=[None] * len(SWEEP) + ["  "]))  # blank: no ladder run
    assert len(rest) == len(frame) and not len(ladder)


def test_fit_command_keeps_ladder_rows_out_of_the_fit_and_prints_the_check(tmp_path, capsys, monkeypatch):
    import scaling.laws

    real = scaling.laws.fit
    monkeypatch.setattr(scaling.laws, "fit", lambda table, law, **k: real(table, law, **{**k, **CHEAP}))
    path = tmp_path / "runs.csv"
    pd.concat([SWEEP, ladder_rows()], ignore_index=True).to_csv(path, index=False)
    out_json = tmp_path / "fit.json"
    assert main(["fit", str(path), "--bootstrap", "100", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: {len(SWEEP)} points used, 2 dropped (2 ladder runs (checked below, not fitted))" in out
    assert "ladder check" in out and "OUTSIDE the 95% interval" in out and "inside the 95% interval" in out
    data = json.loads(out_json.read_text())
    assert data["n_points"] == len(SWEEP)
    runs = {r["run_id"]: r for r in data["ladder_check"]["runs"]}
    assert [p["law"] for p in runs["L0"]["predictions"]] == ["chinchilla"]
    assert runs["L0"]["predictions"][0]["inside"] is True and runs["L1"]["predictions"][0]["inside"] is False
    assert runs["L1"]["predictions"][0]["error_in_half_widths"] > 3


@pytest.mark.slow  # kaplan-joint's first fit compiles for about 15 s
def test_every_law_that_predicts_a_loss_is_checked_with_its_own_interval():
    frame = pd.concat([SWEEP, ladder_rows((1.0,))], ignore_index=True)
    check = check_ladder(frame, ("kaplan-joint", "isoflop", "envelope"), bootstrap=100, cross_check=False)
    (run,) = check.runs
    assert [p.law for p in run.predictions] == ["chinchilla", "kaplan-joint"]
    joint = run.predictions[1]
    # a law of another form fits these runs less well, but its interval is its own resamples' losses there
    assert joint.ci95[0] <= joint.loss <= joint.ci95[1] and joint.ci95 != run.predictions[0].ci95


def fake_home(home, ladder_config=None):
    """Sweep `s` (named demo) finished with SWEEP's numbers, and sweep `s-ladder` whose two runs name it."""
    from scaling.runs import RunHome

    store = RunHome(home)
    store.register_sweep("s", "demo", {}, [{"run_id": r.run_id, "status": "pending", "config": {"seed": int(r.seed)}}
                                           for r in SWEEP.itertuples()])
    ladder = ladder_rows()
    config = ladder_config or {"validates": "s"}
    store.register_sweep("s-ladder", "demo-ladder", {}, [{"run_id": r.run_id, "status": "pending", "config": config}
                                                         for r in ladder.itertuples()])
    for r in pd.concat([SWEEP, ladder]).itertuples():
        store.record_state(r.run_id, "complete", {}, {"status": "complete", "params": r.params, "flops": r.flops,
                                                      "tokens": r.flops / (6 * r.params), "flops_model": r.flops,
                                                      "eval_loss": r.loss})
    return store


def test_fit_of_a_sweep_finds_the_ladder_runs_that_name_it_in_other_sweeps(home, capsys, monkeypatch):
    import scaling.laws
    from scaling.report.gather import gather
    from scaling.runs import runs_table

    real = scaling.laws.fit
    monkeypatch.setattr(scaling.laws, "fit", lambda table, law, **k: real(table, law, **{**k, **CHEAP}))
    store = fake_home(home)
    table = runs_table(store)
    assert list(table.loc[table["validates"].notna(), "run_id"]) == ["L0", "L1"]  # the column, for ladder runs
    assert sorted(runs_table(store, validating="s")["run_id"]) == ["L0", "L1"]
    out_json = f"{home}/fit.json"
    assert main(["--home", home, "fit", "--sweep", "s", "--bootstrap", "100", "--json", out_json]) == 0
    out = capsys.readouterr().out
    assert f"{len(SWEEP)} points used, 0 dropped" in out and "OUTSIDE the 95% interval" in out
    with open(out_json) as fh:
        assert [r["run_id"] for r in json.load(fh)["ladder_check"]["runs"]] == ["L0", "L1"]
    data = gather(store, "s")  # the report of the sweep finds them too, and fits none of them
    assert sorted(data.ladder["run_id"]) == ["L0", "L1"] and "L0" not in set(data.runs["run_id"])
