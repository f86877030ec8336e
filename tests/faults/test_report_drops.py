"""Issue #11 item 10: reports and fits say what they dropped. A runs table without a flops column gets a
whole report (C = 6ND is derived), a report that fails leaves its folder as it was, a fit of a sweep
counts the runs that diverged or failed, and the report says at which step a run diverged."""
import os
import re

import pytest
from faultlib import make_sweep, tree
from reportlib import SPEC, isoflop_table

from scaling.cli import main
from scaling.runs import RunHome


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "report.yaml"
    path.write_text(SPEC)
    return str(path)


def test_a_runs_table_without_a_flops_column_gets_a_whole_report(tmp_path, spec, capsys):
    csv = tmp_path / "runs.csv"
    isoflop_table(flops_column=False).to_csv(csv, index=False)
    out = tmp_path / "report"
    assert main(["report", spec, str(csv), "--out", str(out), "--wandb", "off"]) == 0
    figures = sorted(os.listdir(out / "figures"))
    assert figures == ["compute_optimal.png", "compute_optimal.svg", "isoflop_profiles.png", "isoflop_profiles.svg"]
    assert "flops" in (out / "runs.csv").read_text().splitlines()[0].split(",")
    assert [n for n in os.listdir(tmp_path) if n.startswith(".report-")] == []
    capsys.readouterr()


def test_a_report_that_fails_midway_leaves_its_folder_as_it_was(tmp_path, spec, monkeypatch, capsys):
    csv, out = tmp_path / "runs.csv", tmp_path / "report"
    isoflop_table().to_csv(csv, index=False)
    assert main(["report", spec, str(csv), "--out", str(out), "--wandb", "off"]) == 0
    before = tree(out)
    from scaling.report import figures

    def broken(data, fits, published, axes):
        raise RuntimeError("a figure that cannot be drawn")

    monkeypatch.setattr(figures, "FIGURES", [(*f[:5], broken) if f[0] == "compute_optimal" else f
                                             for f in figures.FIGURES])
    with pytest.raises(RuntimeError):
        main(["report", spec, str(csv), "--out", str(out), "--wandb", "off"])
    assert tree(out) == before  # no half-written figures/, no stray files
    assert [n for n in os.listdir(tmp_path) if n.startswith(".report-")] == []
    capsys.readouterr()


def test_rows_dropped_from_a_runs_table_are_listed_in_the_report(tmp_path, spec, capsys):
    table = isoflop_table()
    table.loc[[0, 5], "loss"] = None
    csv, out = tmp_path / "runs.csv", tmp_path / "report"
    table.to_csv(csv, index=False)
    assert main(["report", spec, str(csv), "--out", str(out), "--wandb", "off"]) == 0
    md = (out / "report.md").read_text()
    assert "| 2 row(s) | dropped | missing values |" in md
    capsys.readouterr()


def _fake_sweep(home):
    """A sweep whose runs finished (with the isoFLOP table's numbers), diverged, failed or never ran."""
    store = RunHome(home)
    table = isoflop_table(flops_column=True)
    rows = [{"run_id": r.run_id, "status": "pending", "config": {}} for r in table.itertuples()]
    rows += [{"run_id": f"x{i}", "status": "pending", "config": {}} for i in range(3)]
    store.register_sweep("s", "s", {}, rows)
    for r in table.itertuples():
        store.record_state(r.run_id, "complete", {}, {"status": "complete", "params": r.params, "tokens": r.tokens,
                                                      "flops": r.flops, "eval_loss": r.loss})
    store.record_state("x0", "diverged", {}, {"status": "diverged", "eval_loss": None},
                       reason="train loss nan at step 12")
    store.record_state("x1", "failed", {}, {"status": "failed"}, reason="scaling train exited 1: boom")


def test_a_fit_of_a_sweep_counts_its_diverged_failed_and_pending_runs_as_dropped(home, capsys):
    _fake_sweep(home)
    assert main(["--home", home, "fit", "--sweep", "s", "--law", "isoflop", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"15 points used, 3 dropped \(.*1 diverged.*\)", out), out
    assert "1 failed" in out and "1 pending" in out


def test_the_report_says_at_which_step_a_run_diverged(tmp_path, home, capsys):
    from scaling.agents import Agent
    from scaling.report import gather

    # the shape of conftest's tiny run, compiled once per session
    tiny = {"seq_len": {"value": 32}, "batch_size": {"value": 4}, "corpus": {"value": "stdlib"},
            "eval_tokens": {"value": 256}, "n_evals": {"value": 3}}
    sid = make_sweep(tmp_path, home, {**tiny, "tokens": {"value": 640}, "lr": {"values": [1e-3, 1e30]}}, name="nan")
    results = Agent(home, sid, lease_s=30).run()
    assert sorted(r.status for r in results) == ["complete", "diverged"]
    excluded = gather(home, sid).excluded
    assert len(excluded) == 1
    for e in excluded:
        assert e.status == "diverged" and re.fullmatch(r"(train|eval) loss (nan|inf) at step \d+", e.reason), e
    capsys.readouterr()
