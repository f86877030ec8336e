"""Issue #23 item 4 and limits: tables that lie to the noise estimate. Exact duplicate rows are collapsed
(without a run id they would pass for seed replicates with identical losses: noise SD 0, every minimum
"resolved"), rows whose status is not complete are dropped by status, and a value that is no measurement
(1e308, inf, 0) drops its row, listed, instead of overflowing a fit or a report."""
import pandas as pd
import pytest
from reportlib import SPEC, isoflop_table

from scaling.cli import main
from scaling.errors import UsageError
from scaling.laws import fit_isoflop, load_runs
from scaling.runs import RunHome


def test_duplicated_rows_without_a_run_id_are_not_taken_for_seed_replicates():
    grid = isoflop_table().drop(columns="run_id")
    table = load_runs(pd.concat([grid, grid, grid], ignore_index=True))
    assert table.n_points == len(grid)
    assert table.dropped == {"exact duplicate rows (one copy kept)": 2 * len(grid)}
    fit = fit_isoflop(table, bootstrap=0)
    assert fit.noise.pooled.sd is None  # not 0: nothing measured the noise
    assert all(b.resolved is None for b in fit.budgets)


def test_rows_that_differ_only_in_seed_are_still_replicates():
    grid = isoflop_table().drop(columns="run_id")
    other = grid.assign(seed=1, loss=grid["loss"] * 1.001)
    table = load_runs(pd.concat([grid.assign(seed=0), other], ignore_index=True))
    assert table.dropped == {} and table.n_replicated == len(grid)


def test_a_fit_drops_and_lists_diverged_interrupted_and_skipped_rows(tmp_path, capsys):
    grid = isoflop_table().assign(status="complete")
    grid.loc[[0, 5, 10], "status"] = ["diverged", "interrupted", "skipped"]  # one in each budget
    grid.loc[3, "status"] = "Complete "  # a spelling of complete, kept
    csv = tmp_path / "runs.csv"
    grid.to_csv(csv, index=False)
    assert main(["fit", str(csv), "--law", "isoflop", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert (f"{len(grid) - 3} points used, 3 dropped (1 status diverged, 1 status interrupted, "
            "1 status skipped)") in out, out


@pytest.mark.parametrize("column,value", [("params", 1e308), ("loss", 1e308), ("tokens", float("inf")),
                                          ("loss", 0.0), ("params", -5.0)])
def test_a_value_that_is_no_measurement_drops_its_row_and_says_so(tmp_path, capsys, column, value):
    grid = isoflop_table()
    grid.loc[4, column] = value
    csv = tmp_path / "runs.csv"
    grid.to_csv(csv, index=False)
    assert main(["fit", str(csv), "--law", "isoflop", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert f"{len(grid) - 1} points used, 1 dropped (1 bad {column} (e.g. {value:g}))" in out, out


def test_a_table_of_nothing_but_bad_values_is_a_one_line_error(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    csv.write_text("params,tokens,loss\n1e308,2e7,3.2\n2e6,4e7,inf\n")
    with pytest.raises(UsageError, match="no usable rows"):
        load_runs(str(csv))
    assert main(["fit", str(csv)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 bad params" in err and "1 bad loss" in err, err


@pytest.mark.slow  # 4-5 s (trains or writes a whole report): the fast suite stays under 3 minutes
def test_a_report_over_a_sweep_with_params_1e308_leaves_that_run_out_and_names_it(tmp_path, home, capsys):
    store = RunHome(home)
    grid = isoflop_table(flops_column=True)
    store.register_sweep("s", "s", {}, [{"run_id": r, "status": "pending", "config": {}} for r in grid.run_id])
    for r in grid.itertuples():
        params = 1e308 if r.Index == 2 else r.params
        store.record_state(r.run_id, "complete", {}, {"status": "complete", "params": params, "tokens": r.tokens,
                                                      "flops": r.flops, "flops_model": r.flops, "eval_loss": r.loss})
    spec, out = tmp_path / "spec.yaml", tmp_path / "report"
    spec.write_text(SPEC)
    assert main(["--home", home, "report", str(spec), "--sweep", "s", "--out", str(out), "--wandb", "off"]) == 0
    md = (out / "report.md").read_text()
    assert "| r2 | complete | params 1e+308 is no measurement" in md, md
    assert "r2" not in set(pd.read_csv(out / "runs.csv")["run_id"])
    capsys.readouterr()
