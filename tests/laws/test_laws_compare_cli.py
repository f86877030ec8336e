"""`scaling compare`: the happy path prints k(C) per pair and writes the JSON and the figure; bad input
exits 2 with one line, before any fitting."""
import json

import pandas as pd
import pytest
from laws_synth import TRUE, replicated_isoflop_table

from scaling.cli import main
from scaling.errors import UsageError

GAMMA = TRUE["alpha"] * TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])


@pytest.fixture
def two_recipes_csv(tmp_path):
    better = dict(TRUE, A=TRUE["A"] * 2.0**-GAMMA, B=TRUE["B"] * 2.0**-GAMMA)  # k = 2 at every budget
    a = replicated_isoflop_table(seeds=2, noise=0.004, seed=3).assign(qk_norm="off")
    b = replicated_isoflop_table(seeds=2, noise=0.004, seed=4, p=better).assign(qk_norm="on")
    path = tmp_path / "runs.csv"
    pd.concat([a, b.assign(run_id="q" + b["run_id"])], ignore_index=True).to_csv(path, index=False)
    return path


@pytest.mark.slow  # three fits and a figure (4 s): out of the fast suite
def test_compare_prints_multipliers_and_writes_json_and_figure(two_recipes_csv, tmp_path, capsys):
    out_json, figure = tmp_path / "compare.json", tmp_path / "k.png"
    assert main(["compare", str(two_recipes_csv), "--by", "qk_norm", "--budgets", "1e21,1e23", "--bootstrap", "20",
                 "--shared", "E", "--holdout", "0", "--json", str(out_json), "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "on (B) against off (A)" in out and "crossover:" in out and "shared E:" in out
    assert "the data prefer" not in out  # --holdout 0: no held-out comparison (tests/laws/test_laws_compare.py)
    data = json.loads(out_json.read_text())
    assert data["by"] == "qk_norm" and data["budgets"] == [1e21, 1e23]
    (pair,) = data["pairs"]
    assert (pair["a"], pair["b"]) == ("off", "on")
    assert [m["flops"] for m in pair["multipliers"]] == [1e21, 1e23]
    assert 1.3 < pair["multipliers"][0]["k"] < 3.0
    assert set(data["groups"]) == {"off", "on"} and data["groups"]["off"]["noise"]["pooled"]["sd"] > 0
    assert "holdout" not in data and len(pair["shared_e_multipliers"]) == 2
    assert figure.stat().st_size > 1000


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("scaling compare: error: "), err
    return err


def test_compare_bad_input_is_one_line(two_recipes_csv, tmp_path, capsys):
    csv = str(two_recipes_csv)
    assert "no such column" in _error(capsys, ["compare", csv, "--by", "nope"])
    assert "--by" in _error(capsys, ["compare", csv, "--by", "nope"])
    one = tmp_path / "one.csv"
    pd.read_csv(two_recipes_csv).query("qk_norm == 'on'").to_csv(one, index=False)
    assert "nothing to compare" in _error(capsys, ["compare", str(one), "--by", "qk_norm"])
    assert "--shared E" in _error(capsys, ["compare", csv, "--by", "qk_norm", "--holdout", "3"])
    assert "--budgets" in _error(capsys, ["compare", csv, "--by", "qk_norm", "--budgets", "lots"])
    assert "--figure" in _error(capsys, ["compare", csv, "--by", "qk_norm", "--figure", str(tmp_path / "k.gif")])
    assert "runs table" in _error(capsys, ["compare", "--by", "qk_norm"])


def test_a_sweep_is_split_by_a_recipe_key_its_runs_set_that_the_runs_table_lacks(two_recipes_csv, tmp_path,
                                                                                monkeypatch):
    from argparse import Namespace
    from types import SimpleNamespace

    import scaling.report.grouping  # noqa: F401 - imported before the patches: report/ binds runs_table on import
    from scaling.commands import compare

    frame = pd.read_csv(two_recipes_csv)
    configs = [SimpleNamespace(run_id=r, config={"qk_norm": q}) for r, q in zip(frame["run_id"], frame["qk_norm"])]
    monkeypatch.setattr("scaling.runs.runs_table", lambda home, sweep: frame.drop(columns="qk_norm"))
    monkeypatch.setattr("scaling.runs.RunHome.sweep_runs", lambda self, sweep: configs)
    monkeypatch.setattr("scaling.sweep.require_sweep", lambda home, sweep: {"sweep_id": sweep})
    monkeypatch.setattr(compare, "refresh_index", lambda *a, **k: None)
    args = Namespace(runs=None, sweep="s", home=str(tmp_path / "runs"), by="qk_norm", params_column="params",
                     metric="loss")
    table = compare._table(args)
    assert sorted(table.frame["qk_norm"].unique()) == ["off", "on"]
    assert (table.frame.groupby("qk_norm").size() == frame.groupby("qk_norm").size()).all()
    with pytest.raises(UsageError, match="neither a runs-table column nor a key the sweep's runs set"):
        compare._table(Namespace(**{**vars(args), "by": "colour"}))
