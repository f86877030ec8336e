"""The report's ladder check (issue 25 item 4): ladder runs (a `validates` column) are in no fit, no curve and
no list of runs used; they get their own table, a headline line each and `ladder_check` in fit.json."""
import json

import pandas as pd
import pytest
from laws_synth import chinchilla_loss, optimal_n, replicated_isoflop_table

from scaling.cli import main
from scaling.laws import fit, hoffmann_grid, load_runs
from scaling.report import ladder
from scaling.report.gather import gather, with_metric

CHEAP = {"starts": hoffmann_grid()[::90], "cross_check": False}
BIG = 1e22
SWEEP = replicated_isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21), sizes=5, seeds=2, noise=0.003).assign(sweep_id="s")


def with_ladder(frame: pd.DataFrame) -> pd.DataFrame:
    n = optimal_n(BIG)
    truth = chinchilla_loss(n, BIG / (6 * n))
    ladder = pd.DataFrame([{"run_id": f"L{i}", "sweep_id": "s-ladder", "validates": "s", "params": n, "flops": BIG,
                            "flops_budget": BIG, "seed": 0, "loss": f * truth} for i, f in enumerate((1.0, 1.1))])
    return pd.concat([frame, ladder], ignore_index=True)


def test_gather_takes_the_ladder_runs_out_of_the_runs_and_their_curves(tmp_path):
    runs = with_ladder(SWEEP).assign(eval_bpb=lambda r: r["loss"] / 0.693)
    steps = pd.concat([runs.assign(step=1, loss=runs["loss"] * 1.1), runs.assign(step=2)], ignore_index=True)
    steps.to_csv(tmp_path / "runs.csv", index=False)
    data = gather(None, csv=str(tmp_path / "runs.csv"))
    assert set(data.runs["run_id"]) == set(SWEEP["run_id"]) and set(data.steps["run_id"]) == set(SWEEP["run_id"])
    assert sorted(data.ladder["run_id"]) == ["L0", "L1"] and (data.ladder["step"] == 2).all()  # final rows
    bpb = with_metric(data, "bpb")  # checked on the report's metric, as the fits are
    assert list(bpb.ladder["loss"]) == pytest.approx(list(data.ladder["loss"] / 0.693))


def test_the_report_checks_ladder_runs_with_its_own_fit_and_renders_a_row_per_run(monkeypatch):
    own = fit(load_runs(SWEEP), "chinchilla", bootstrap=100, **CHEAP)
    monkeypatch.setattr("scaling.laws.fit", lambda *a, **k: pytest.fail("the report's own fit is the sweep's"))
    ladder_rows = with_ladder(SWEEP).iloc[len(SWEEP):]
    check = ladder.check(SWEEP, ladder_rows, ("chinchilla", "isoflop"), {"chinchilla": own}, bootstrap=100, seed=0,
                         huber_delta=1e-3, progress=lambda line: None)
    found = ladder.section(check)
    assert [r[0] for r in found.rows] == ["L0", "L1"] and found.header[2] == "predicted [95%]"
    assert "inside the 95% interval" in found.rows[0][-1] and "OUTSIDE" in found.rows[1][-1]
    assert len(found.headline) == 2 and "10x the sweep's largest compute" in found.headline[0]
    assert found.json["runs"][1]["predictions"][0]["inside"] is False
    assert ladder.section(None) is None


@pytest.mark.slow  # a whole report: figures and three laws' fits, about 20 s
def test_report_over_a_table_with_ladder_runs_has_the_ladder_check(tmp_path):
    with_ladder(SWEEP).to_csv(tmp_path / "runs.csv", index=False)
    out = tmp_path / "out"
    assert main(["report", str(tmp_path / "runs.csv"), "--out", str(out), "--bootstrap", "50", "--wandb", "off"]) == 0
    fitted = json.loads((out / "fit.json").read_text())
    assert fitted["chinchilla"]["n_points"] == len(SWEEP)  # the ladder runs are in no fit
    runs = {r["run_id"]: r for r in fitted["ladder_check"]["runs"]}
    assert runs["L0"]["predictions"][0]["inside"] and not runs["L1"]["predictions"][0]["inside"]
    md = (out / "report.md").read_text()
    assert "## Ladder check" in md and md.count("- ladder run L") == 2
    assert "L0" not in md.split("## Runs used", 1)[1].split("\n## ", 1)[0]
