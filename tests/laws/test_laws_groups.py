"""Laws by domain: one law per corpus, side by side, and the quantities where corpora differ beyond
their 95% intervals, in `scaling fit` and in the report."""
import json

import pandas as pd
import pytest
from laws_synth import TRUE, isoflop_table, true_allocation

from scaling.cli import main
from scaling.errors import UsageError
from scaling.laws import fit, fit_by, load_runs

CODE = TRUE  # a = 0.45
PROSE = {**TRUE, "alpha": 0.28, "beta": 0.52}  # a = 0.65: a different allocation


def two_corpora(prose=PROSE, seed=1) -> pd.DataFrame:
    code = isoflop_table(seed=seed, p=CODE).assign(corpus="code")
    other = isoflop_table(seed=seed + 1, p=prose).assign(corpus="prose", run_id=lambda f: "p" + f.run_id)
    return pd.concat([code, other], ignore_index=True)


@pytest.fixture(scope="module")
def grouped():
    table = load_runs(two_corpora())
    return fit_by(table, "corpus", lambda part: fit(part, "isoflop", bootstrap=200, seed=0, budgets=[1e22]))


def test_each_corpus_gets_its_own_law(grouped):
    assert list(grouped.results) == ["code", "prose"]
    for name, p in (("code", CODE), ("prose", PROSE)):
        res = grouped.results[name]
        assert res.n_opt.exponent == pytest.approx(true_allocation(p)["a"], abs=0.03)
        assert res.n_points == 36  # its own runs only


def test_corpora_whose_exponents_differ_are_said_to_differ_beyond_their_intervals(grouped):
    found = {d.quantity: d for d in grouped.differences()}
    a = found["a (N_opt ∝ C^a, D_opt ∝ C^b)"]
    assert a.groups == ("code", "prose") and a.ci95[0][1] < a.ci95[1][0]
    assert a.values == (grouped.results["code"].n_opt.exponent, grouped.results["prose"].n_opt.exponent)
    assert "N_opt at C = 1e+22" in found  # 0.45 vs 0.65 compounds to a factor of ~10 at 1e22
    quantities = grouped.quantities()
    assert quantities["a (N_opt ∝ C^a, D_opt ∝ C^b)"]["code"][1] == grouped.results["code"].n_opt.ci95


def test_corpora_drawn_from_one_law_show_no_difference():
    table = load_runs(two_corpora(prose=CODE, seed=3))
    same = fit_by(table, "corpus", lambda part: fit(part, "isoflop", bootstrap=200, seed=0, budgets=[1e22]))
    assert same.differences() == []


def test_fit_splits_by_corpus_when_the_table_holds_several(tmp_path, capsys):
    path, out = tmp_path / "runs.csv", tmp_path / "fit.json"
    two_corpora().to_csv(path, index=False)
    assert main(["fit", str(path), "--law", "isoflop", "--bootstrap", "100", "--at", "1e22", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "=== corpus = code" in text and "=== corpus = prose" in text and "side by side (corpus)" in text
    assert "differences beyond the 95% intervals" in text and "a (N_opt ∝ C^a, D_opt ∝ C^b): corpus code" in text
    result = json.loads(out.read_text())
    assert result["by"] == "corpus" and set(result["groups"]) == {"code", "prose"}
    assert any(d["quantity"].startswith("a (") for d in result["differences"])
    # pooled on request: each budget's two corpora make one zigzag curve, and no minimum is interior
    assert main(["fit", str(path), "--law", "isoflop", "--bootstrap", "0", "--by", "none"]) == 2
    assert "0 of 4 do" in capsys.readouterr().err


def test_fit_by_refuses_a_missing_column_or_a_single_group(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    two_corpora().to_csv(path, index=False)
    assert main(["fit", str(path), "--law", "isoflop", "--by", "tokenizer"]) == 2
    assert "--by tokenizer: no such column" in capsys.readouterr().err
    with pytest.raises(UsageError, match="one value of 'corpus'"):
        fit_by(load_runs(isoflop_table().assign(corpus="code")), "corpus", lambda part: fit(part, "isoflop"))


def test_report_gives_one_law_per_corpus_side_by_side_with_the_differences(tmp_path):
    from scaling.report.fitting import fit_all
    from scaling.report.gather import ReportData
    from scaling.report.render import write_report
    from scaling.report.spec import ReportSpec

    runs = two_corpora().assign(tokens=lambda f: f.flops / (6 * f.params))
    spec = ReportSpec(laws=("isoflop",), bootstrap=100, budgets=(1e22,), holdout="none")
    data = ReportData(runs=runs)
    fits = fit_all(data, spec, progress=lambda m: None)
    assert fits.results == {} and set(fits.by_group["isoflop"].results) == {"code", "prose"}
    files = write_report(data, fits, spec, str(tmp_path / "report"))
    md = open(files.markdown).read()
    assert "## Laws by corpus, side by side" in md and "| corpus code | corpus prose |" in md
    assert any(line.startswith("corpus prose: N_opt ∝ C^0.6") for line in files.headline)
    assert any("isoflop: a (N_opt ∝ C^a, D_opt ∝ C^b): corpus code" in line for line in files.headline)
    assert "by_corpus" in [f.name for f in files.figures]
    saved = json.loads(open(files.fit_json).read())
    assert set(saved["by_corpus"]["isoflop"]["groups"]) == {"code", "prose"}


@pytest.mark.slow  # a whole report with figures (3 s): the fast suite stays under 3 minutes
def test_a_grouped_report_without_budgets_states_n_opt_near_the_data_not_at_the_built_in_1e24(tmp_path):
    # The per-group laws used to keep the built-in 1e18/1e21/1e24 while the pooled headline moved to the
    # report's own budgets: a side-by-side N_opt 10 orders of magnitude past the runs.
    from scaling.report.fitting import fit_all
    from scaling.report.gather import ReportData
    from scaling.report.render import write_report
    from scaling.report.spec import ReportSpec

    runs = two_corpora().assign(tokens=lambda f: f.flops / (6 * f.params))
    spec = ReportSpec(laws=("isoflop",), bootstrap=20, holdout="none")
    data = ReportData(runs=runs)
    files = write_report(data, fit_all(data, spec, progress=lambda m: None), spec, str(tmp_path / "report"))
    saved = json.loads(open(files.fit_json).read())
    for group in saved["by_corpus"]["isoflop"]["groups"].values():
        budgets = [p["flops"] for p in group["optimal"]["at"]]
        assert budgets[:2] == pytest.approx([10 * runs["flops"].max(), 100 * runs["flops"].max()]), budgets
    assert "C = 1e+24" not in open(files.markdown).read()
