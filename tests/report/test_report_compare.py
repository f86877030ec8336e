"""The report's `by:` key: every law fitted per group of the named column, and the groups compared by
effective compute ("Comparing recipes": k(C) with intervals, crossover, shared E against separate fits,
the k(C) figure, fit.json's `compare`).

Synthetic recipes of known multiplier: B's law is A's with A and B scaled by m^-gamma, so B's
compute-optimal frontier at C is exactly A's at m C (k = m at every budget)."""
import json

import pandas as pd
import pytest
from laws_synth import TRUE, isoflop_table, replicated_isoflop_table

from scaling.cli import main
from scaling.errors import UsageError
from scaling.laws import load_runs
from scaling.report.compare_section import comparison_budgets
from scaling.report.grouping import config_values, grouping_column, with_config_column
from scaling.report.spec import BUILT_IN_BUDGETS, ReportSpec

GAMMA = TRUE["alpha"] * TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
K_TRUE = 3.0


def two_recipes(m: float = K_TRUE, seed: int = 11) -> pd.DataFrame:
    """Group `base` on Chinchilla's law, group `new` m times as compute-efficient; 2 seeds per point."""
    better = dict(TRUE, A=TRUE["A"] * m**-GAMMA, B=TRUE["B"] * m**-GAMMA)
    a = replicated_isoflop_table(seeds=2, noise=0.005, seed=seed).assign(recipe="base")
    b = replicated_isoflop_table(seeds=2, noise=0.005, seed=seed + 1, p=better).assign(recipe="new")
    return pd.concat([a, b.assign(run_id="n" + b["run_id"])], ignore_index=True)


def write_spec(path, **keys) -> str:
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in keys.items()))
    return str(path)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """The report of two recipes with `by: recipe` (Chinchilla only, 30 resamples, default budgets),
    recording every Chinchilla fit the comparison itself makes."""
    from scaling.laws import compare

    tmp = tmp_path_factory.mktemp("compare")
    csv = tmp / "runs.csv"
    two_recipes().to_csv(csv, index=False)
    spec = write_spec(tmp / "spec.yaml", title="recipes", laws=["chinchilla"], by="recipe", bootstrap=30)
    calls = []
    real = compare.fit_parametric

    def counted(*args, **kwargs):
        calls.append(kwargs.get("bootstrap"))
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compare, "fit_parametric", counted)
        assert main(["report", spec, str(csv), "--out", str(tmp / "out"), "--wandb", "off"]) == 0
    return tmp / "out", calls


@pytest.mark.slow
def test_by_spec_adds_the_comparing_recipes_section_its_figure_and_the_compare_json(compared):
    out, _ = compared
    md = (out / "report.md").read_text()
    assert "## Comparing recipes by recipe: the effective-compute multiplier k(C)" in md
    assert "## Comparing recipes: crossover, and one E shared against separate fits" in md
    assert "## Laws by recipe, side by side" in md and "| recipe base | recipe new |" in md
    assert (out / "figures" / "compare_multiplier.png").stat().st_size > 5000
    assert (out / "figures" / "compare_multiplier.svg").stat().st_size > 5000
    assert "id='compare_multiplier'" in (out / "index.html").read_text()
    fitted = json.loads((out / "fit.json").read_text())
    block = fitted["compare"]
    # the shape `scaling compare --shared E --json` writes
    assert set(block) == {"by", "budgets", "data_flops", "groups", "pairs", "shared_e", "holdout"}
    assert block["by"] == "recipe" and set(block["groups"]) == {"base", "new"}
    assert set(fitted["by_group"]["chinchilla"]["groups"]) == {"base", "new"}
    (pair,) = block["pairs"]
    assert (pair["a"], pair["b"]) == ("base", "new")
    # the spec names no budgets: the data's largest compute x1, x10, x100, not the built-in 1e18..1e24
    largest = block["data_flops"][1]
    assert block["budgets"] == pytest.approx([largest, 10 * largest, 100 * largest])
    at_data = pair["multipliers"][0]
    assert at_data["ci95"][0] < K_TRUE < at_data["ci95"][1]
    assert at_data["ci95"][0] > 1.0, "B is three times as compute-efficient: k's interval lies above 1"
    assert block["holdout"]["held_runs"] == 28  # largest-budget: each group's 7 sizes x 2 seeds there
    assert block["holdout"]["preferred"] in ("shared E", "separate")


@pytest.mark.slow
def test_by_spec_headline_leads_with_the_multiplier_and_the_held_out_choice(compared):
    out, _ = compared
    md = (out / "report.md").read_text()
    headline = md.split("## Headline", 1)[1].split("##", 1)[0].strip().splitlines()
    assert headline[0].startswith("- recipe: new over base by effective compute: k ")
    assert "B better" in headline[0] and "crossover" in headline[0]
    assert headline[1].startswith("- recipe: Held out 28 largest-compute runs (14 per group)")


@pytest.mark.slow
def test_by_spec_compares_the_reports_own_group_fits_without_fitting_them_again(compared):
    # the comparison's own Chinchilla fits are the held-out check's, one per group without resamples;
    # the groups' fits with their 30 resamples are the report's per-group fits, reused
    _, calls = compared
    assert calls == [0, 0]


def test_each_group_draws_its_bootstrap_with_a_seed_of_its_own(monkeypatch):
    # k(C) pairs the groups' resamples by index: drawn with one seed, two groups of the same design would
    # resample the same points together
    from scaling.report import fitting

    seeds = {}
    real = fitting.fit

    def recording(part, law, **kwargs):
        seeds[str(part.frame["recipe"].iloc[0])] = kwargs["seed"]
        return real(part, law, **kwargs)

    monkeypatch.setattr(fitting, "fit", recording)
    runs = pd.concat([isoflop_table(seed=1).assign(recipe="base"), isoflop_table(seed=2).assign(recipe="new")])
    spec = ReportSpec(laws=("isoflop",), by="recipe", bootstrap=0, seed=5, holdout="none")
    fits = fitting.fit_all(fitting.ReportData(runs=runs.reset_index(drop=True)), spec, progress=lambda m: None)
    assert set(fits.by_group["isoflop"].results) == {"base", "new"}
    assert seeds == {"base": 5, "new": 6}


def test_comparison_budgets_are_the_specs_and_otherwise_left_to_the_data():
    assert comparison_budgets(ReportSpec()) == ()
    assert comparison_budgets(ReportSpec(budgets=BUILT_IN_BUDGETS)) == ()  # naming the built-ins names none
    assert comparison_budgets(ReportSpec(budgets=(1e20, 1e21))) == (1e20, 1e21)


@pytest.mark.parametrize("runs, by, says", [
    (two_recipes(), "qk_norm", "by: 'qk_norm': no such column in the runs"),
    (two_recipes().assign(recipe="base"), "recipe", "by: recipe: the runs have one value (base)"),
    (two_recipes().assign(recipe=lambda f: f["recipe"].where(f.index > 0)), "recipe",
     "by: recipe: 1 of 112 runs have no recipe"),
    (two_recipes().assign(corpus=lambda f: ["code", "prose"] * (len(f) // 2)), "recipe",
     "by: recipe: the runs span several corpora (code, prose)"),
], ids=["absent", "one-group", "unvalued", "several-corpora"])
def test_report_refuses_a_by_column_absent_without_values_or_with_fewer_than_two_groups(tmp_path, capsys, runs,
                                                                                         by, says):
    csv = tmp_path / "runs.csv"
    runs.to_csv(csv, index=False)
    spec = write_spec(tmp_path / "spec.yaml", laws=["chinchilla"], by=by, bootstrap=0)
    assert main(["report", spec, str(csv), "--out", str(tmp_path / "out"), "--wandb", "off"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "out").exists()


def test_a_spec_by_must_be_a_column_name(tmp_path):
    with pytest.raises(UsageError, match="by: expected text"):
        ReportSpec.load(write_spec(tmp_path / "spec.yaml", by=["recipe", "corpus"]))


def test_grouping_without_by_is_by_corpus_when_the_runs_hold_several_else_none():
    runs = isoflop_table()
    assert grouping_column(load_runs(runs), None) is None
    assert grouping_column(load_runs(runs.assign(corpus=["a", "b"] * (len(runs) // 2) + ["a"] * (len(runs) % 2))),
                           None) == "corpus"


def test_a_sweeps_recipe_key_is_copied_from_each_runs_config_into_the_runs_and_their_steps():
    runs = pd.DataFrame({"run_id": ["r0", "r1"], "loss": [3.0, 2.9]})
    steps = pd.DataFrame({"run_id": ["r0", "r0", "r1"], "step": [1, 2, 1], "loss": [4.0, 3.0, 3.5]})
    configs = {"r0": {"qk_norm": False}, "r1": {"qk_norm": True}}
    with_runs, with_steps = with_config_column(runs, steps, "qk_norm", configs)
    assert list(with_runs["qk_norm"]) == ["False", "True"] and list(with_steps["qk_norm"]) == ["False", "False", "True"]
    # a standard-parametrization run's config says nothing; a column the table has is left alone
    kind, _ = with_config_column(runs, None, "parametrization", {"r0": {"parametrization": "mup"}, "r1": {}})
    assert list(kind["parametrization"]) == ["mup", "standard"]
    assert with_config_column(runs, steps, "loss", configs)[0] is runs


def test_a_baseline_run_that_leaves_a_recipe_key_to_its_default_is_grouped_under_the_default():
    # A sweep that sets `mlp: gelu` and `qk_norm: true` on some points says nothing on its baseline's: those
    # runs are SwiGLU without QK-norm, not a group "None" (what `scaling compare --sweep --by mlp` made of them).
    configs = {"base": {}, "gelu": {"mlp": "gelu"}, "qk": {"qk_norm": True}}
    assert config_values(configs, "mlp") == {"base": "swiglu", "gelu": "gelu", "qk": "swiglu"}
    assert config_values(configs, "qk_norm") == {"base": False, "gelu": False, "qk": True}
    assert config_values(configs, "parametrization") is None  # no run sets it: not a recipe key here


def fake_recipe_sweep(home, qk_norm=lambda i: i % 2 == 1) -> None:
    """A finished sweep of two isoFLOP grids whose runs differ in a config key the runs table lacks."""
    from scaling.runs import RunHome

    store = RunHome(home)
    table = pd.concat([isoflop_table(seed=1), isoflop_table(seed=2).assign(run_id=lambda f: "q" + f.run_id)],
                      ignore_index=True).assign(tokens=lambda f: f.flops / (6 * f.params))
    configs = {r.run_id: {"qk_norm": qk_norm(i // (len(table) // 2))} for i, r in enumerate(table.itertuples())}
    store.register_sweep("s", "s", {}, [{"run_id": r, "status": "pending", "config": c} for r, c in configs.items()])
    for r in table.itertuples():
        store.record_state(r.run_id, "complete", configs[r.run_id],
                           {"status": "complete", "params": r.params, "tokens": r.tokens, "flops": r.flops,
                            "flops_model": r.flops, "eval_loss": r.loss})


def test_a_sweeps_report_groups_by_a_config_key_its_runs_table_lacks(home):
    from scaling.report import fit_all, gather
    from scaling.report.grouping import with_sweep_column

    fake_recipe_sweep(home)
    data = with_sweep_column(gather(home, "s"), "qk_norm", home, "s")
    spec = ReportSpec(laws=("isoflop",), by="qk_norm", bootstrap=0, holdout="none")
    fits = fit_all(data, spec, progress=lambda m: None)
    assert set(fits.by_group["isoflop"].results) == {"False", "True"}


def test_a_sweeps_report_refuses_a_config_key_with_one_value(tmp_path, home, capsys):
    fake_recipe_sweep(home, qk_norm=lambda i: False)
    spec = write_spec(tmp_path / "spec.yaml", laws=["isoflop"], by="qk_norm", bootstrap=0)
    assert main(["--home", home, "report", spec, "--sweep", "s", "--out", str(tmp_path / "out"), "--wandb", "off"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "by: qk_norm: the runs have one value (False)" in err, err
