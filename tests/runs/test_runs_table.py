"""sweeps/smoke.yaml end to end through `scaling sweep` and `scaling runs`: the table `scaling fit`
reads, per-step rows, and the index rebuilt from the run directories."""
import math
import os
import shutil

import pandas as pd
import pytest

from scaling.cli import main
from scaling.data import load_corpus
from scaling.runs import RunHome, runs_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMOKE = os.path.join(ROOT, "sweeps", "smoke.yaml")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke sweep, created and run once by one in-process agent."""
    import contextlib
    import io

    home = str(tmp_path_factory.mktemp("smoke") / "runs")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["--home", home, "sweep", "create", SMOKE]) == 0
        sweep_id = out.getvalue().strip().splitlines()[-1]
        assert main(["--home", home, "sweep", "agent", sweep_id]) == 0, err.getvalue()
    return home, sweep_id, err.getvalue()


def test_smoke_agent_runs_every_point_and_reports_each(smoke):
    home, sweep_id, log = smoke
    assert sweep_id.startswith("smoke-")
    runs = RunHome(home).sweep_runs(sweep_id)
    assert [r.status for r in runs] == ["complete"] * 4
    assert log.count(" complete  eval ") == 4 and "[4/4]" in log and "ran 4 run(s) (4 complete)" in log


def test_runs_csv_has_the_columns_fit_reads_with_exact_accounting(smoke, tmp_path, capsys):
    home, sweep_id, _ = smoke
    csv = tmp_path / "runs.csv"
    assert main(["--home", home, "runs", "--sweep", sweep_id, "--csv", str(csv)]) == 0
    table = pd.read_csv(csv)
    assert len(table) == 4 and "step" not in table
    assert {"run_id", "sweep_id", "params", "params_nonembed", "tokens", "flops", "flops_model", "loss", "lr",
            "batch_size", "seed", "status", "epochs"} <= set(table.columns)
    assert (table.flops == 6 * table.params * table.tokens).all()
    assert (table.status == "complete").all()
    assert sorted(table.tokens) == [2048, 2048, 4096, 4096] and table.params.nunique() == 2
    # The table carries a real signal. On the 16-token Markov corpus an untrained model scores ln 16 = 2.77
    # (so did runs whose updates were scaled to nothing: 2.79 at both lengths) and no model can beat the
    # chain's entropy rate (1.97); these runs score 2.37-2.65, and doubling a run's length lowers its loss
    # by 0.12-0.15.
    corpus = load_corpus("synthetic")
    assert table.loss.between(corpus.entropy_rate, math.log(16) - 0.05).all()
    for _, group in table.groupby("params"):
        short, long = group.sort_values("tokens").loss
        assert long < short - 0.05
        assert long < math.log(16) - 0.15

    assert main(["--home", home, "runs", "--sweep", sweep_id]) == 0
    printed = capsys.readouterr().out
    assert all(run_id in printed for run_id in table.run_id)


def test_runs_steps_gives_one_row_per_evaluated_checkpoint(smoke):
    home, sweep_id, _ = smoke
    final = runs_table(home, sweep_id)
    steps = runs_table(home, sweep_id, steps=True)
    assert "step" in steps and len(steps) == 8  # n_evals=2: the first step and the last, per run
    last = steps.sort_values("step").groupby("run_id").tail(1).set_index("run_id").sort_index()
    final = final.set_index("run_id").sort_index()
    assert (last.loss == final.loss).all() and (last.tokens == final.tokens).all()
    assert (steps.flops == 6 * steps.params * steps.tokens).all()


def test_runs_name_each_loss_corpus_and_vocabulary(smoke, capsys):
    """A BPE run's 5-7 nats/token beside a byte run's 1-2 must not read as one scale: each row says its
    corpus and what its loss is measured in, in the CSV and on the screen."""
    home, sweep_id, _ = smoke
    table = runs_table(home, sweep_id)
    assert (table.metric == "nats/token V=16").all() and (table.corpus == "synthetic").all()
    assert main(["--home", home, "runs", "--sweep", sweep_id]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert "metric" in header and "corpus" in header
    assert all("nats/token V=16" in row and "synthetic" in row for row in rows)


def test_status_shows_counts_and_the_finished_sweep(smoke, capsys):
    home, sweep_id, _ = smoke
    assert main(["--home", home, "sweep", "status", sweep_id]) == 0
    out = capsys.readouterr().out
    assert "4 complete" in out and "done 4/4" in out
    assert main(["--home", home, "sweep", "status"]) == 0
    assert sweep_id in capsys.readouterr().out


def test_reindex_rebuilds_the_index_and_the_queue_from_the_files(smoke, tmp_path, capsys):
    home, sweep_id, _ = smoke
    copy = str(tmp_path / "copy")
    shutil.copytree(home, copy)
    before = runs_table(copy, sweep_id)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(os.path.join(copy, "scaling.db" + suffix)):
            os.remove(os.path.join(copy, "scaling.db" + suffix))
    shutil.rmtree(os.path.join(copy, f"{sweep_id}-003"))  # a run whose directory was lost runs again
    assert main(["--home", copy, "runs", "--reindex", "--sweep", sweep_id, "--csv", str(tmp_path / "r.csv")]) == 0
    after = runs_table(copy, sweep_id)
    pd.testing.assert_frame_equal(after, before[before.run_id != f"{sweep_id}-003"].reset_index(drop=True))
    statuses = {r.run_id: r.status for r in RunHome(copy).sweep_runs(sweep_id)}
    assert statuses[f"{sweep_id}-003"] == "pending" and list(statuses.values()).count("complete") == 3
    assert "1 sweep(s) restored" in capsys.readouterr().err


def test_runs_table_carries_the_flops_budget_each_run_was_given(tmp_path, tiny):
    # the isoFLOP fit and `sweep plan --refine` group a budget's runs by the C they were given, not by the
    # measured C (6ND after rounding D to whole steps): the table carries it, empty for a tokens= run
    home = str(tmp_path / "runs")
    budget = 2.3456789e7  # d16: 4 steps of 128 tokens, D rounded, so 6ND != the budget
    assert main(["--home", home, "train", *tiny, f"flops_budget={budget!r}", "wandb=off", "run_id=c",
                 "--quiet"]) == 0
    assert main(["--home", home, "train", *tiny, "tokens=512", "wandb=off", "run_id=d", "--quiet"]) == 0
    table = runs_table(home).set_index("run_id")
    assert table.loc["c", "flops_budget"] == budget != table.loc["c", "flops"]
    assert pd.isna(table.loc["d", "flops_budget"])
