"""docs/contracts.md stays current: every key the code writes or reads in a contract (config keys, run
files, runs-table columns, fit JSON, sweep and report specs, prepared corpora) is documented there, and
the code cites that page's sections, never a file outside the repository."""
import dataclasses
import re
import typing
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "contracts.md"


def section(title: str) -> str:
    """The text under `## title` up to the next `## ` heading."""
    text = DOC.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"docs/contracts.md has no section {title!r}"
    return match.group(1)


def rows(text: str) -> list[list[str]]:
    """The cells of every table row (header and rule rows left out)."""
    out = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            out.append([c.strip() for c in line.strip().strip("|").split("|")])
    return [r for r in out if not r[0].islower() or "`" in r[0]]  # header rows are plain words


def first_cells(text: str) -> set[str]:
    """The backticked names in the first cell of every table row."""
    return {name for r in rows(text) for name in re.findall(r"`([^`]+)`", r[0])}


def mentioned(text: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", text))


def missing(keys, documented) -> list[str]:
    return sorted(set(keys) - set(documented))


def test_every_config_key_is_documented_with_its_type_and_default():
    from scaling.config import RunConfig

    table = {re.sub(r"`", "", r[0]): r for r in rows(section("Config keys")) if len(r) == 4}
    hints = typing.get_type_hints(RunConfig)
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    assert missing(fields, table) == [], "config keys not in docs/contracts.md"
    assert missing(table, fields) == [], "docs/contracts.md documents config keys the code does not have"
    for name, f in fields.items():
        args = [a for a in typing.get_args(hints[name]) if a is not type(None)]
        kind = (args[0] if args else hints[name]).__name__
        assert (table[name][1], table[name][2]) == (kind, f"`{f.default}`"), name


def test_every_runs_table_column_is_documented():
    from scaling.runs.table import RUN_COLUMNS

    assert missing([*RUN_COLUMNS, "step"], first_cells(section("The runs table"))) == []


@pytest.fixture(scope="module")
def plan():
    from scaling.config import RunConfig
    from scaling.train.plan import plan_run

    return plan_run(RunConfig(d_model=16, tokens=1e4, seq_len=32, batch_size=4, corpus="synthetic",
                              schedule="wsd", cooldowns="5e3", parametrization="mup"))


def test_config_yaml_and_summary_keys_are_documented(plan):
    from scaling.train.record import run_record, summary

    record = run_record(plan, plan.layout())
    documented = first_cells(section("The run directory"))
    assert missing(record, documented) == []
    assert missing(record["resolved"], documented) == []
    text = section("The run directory")
    assert missing(record["corpus"], mentioned(text)) == []
    assert missing(record["resolved"]["shape"], mentioned(text)) == []
    result = summary(plan, status="complete", step=plan.steps, eval_loss=1.0, train_loss=1.0, tokens_per_s=1.0,
                     ceiling=None, wall_s=1.0)
    assert missing([*result, "reason"], documented) == []


def test_metrics_row_keys_are_documented(plan):
    from scaling.train.hooks import evaluate, measure

    state = SimpleNamespace(plan=plan, step=1, losses=[np.float32(2.0)], grad_norm=np.float32(1.0), tokens_per_s=1.0,
                            clock=SimpleNamespace(wall_s=1.0), params=None)
    measure(np.ones(plan.steps, np.float32))(state)
    evaluate(lambda params: 1.5)(state)
    assert missing(state.row, first_cells(section("The run directory"))) == []


def test_run_files_and_statuses_are_documented():
    from scaling.runs import files
    from scaling.runs.records import STATUSES

    text = mentioned(section("The run directory"))
    for name in (files.CONFIG, files.METRICS, files.SUMMARY, files.CHECKPOINTS, files.TRAIN_LOG, "scaling.db",
                 ".seeding", ".sweeps", "wandb"):
        assert any(name in m for m in text), name
    assert missing(STATUSES, text) == []


def test_fit_json_keys_are_documented():
    from laws_synth import isoflop_table

    from scaling.laws import fit, load_runs
    from scaling.laws.allocation import Allocation, BudgetPoint
    from scaling.laws.chinchilla import CrossCheck
    from scaling.laws.groups import GroupedFit
    from scaling.laws.noise import NoiseEstimate, NoiseFloor
    from scaling.laws.parametric import Holdout, LawFit

    table = isoflop_table(sizes=5).assign(seed=0)
    replicates = table.iloc[:5].assign(seed=1, loss=lambda f: f.loss * 1.001, run_id=lambda f: f.run_id + "r")
    table = pd.concat([table, replicates], ignore_index=True)  # a noise floor to write
    iso = fit(load_runs(table), "isoflop", bootstrap=0, budgets=[1e22]).to_json()
    noise = NoiseFloor(budgets=((1e18, NoiseEstimate(0.1, 1, 1)),), pooled=NoiseEstimate(0.1, 1, 1))
    law = LawFit(law="chinchilla", params={"E": 1.0}, ci95={"E": (0.9, 1.1)}, objective=0.0, huber_delta=1e-3,
                 n_points=1, n_runs=1, dropped={}, n_starts=1, n_converged=1, n_resamples=0, theta=np.zeros(5),
                 samples=np.zeros((0, 5)), holdout=Holdout(1, 1, 0.0, 0.0), noise=noise, fixed={"E": 1.0},
                 cross_check=CrossCheck("varpro", {}, 0.0, True, {}),
                 optimal=Allocation(0.5, 0.5, 1.0, {"a": (0.4, 0.6)},
                                    (BudgetPoint(1e21, 1e9, 1e11, 100.0, 2.0, {"params": (1e8, 1e10)}),))).to_json()
    grouped = GroupedFit(law="isoflop", column="corpus", results={}, errors={}).to_json()
    keys = {*iso, *iso["budgets"][0], *iso["n_opt"], *iso["noise"], *iso["optimal"], *iso["optimal"]["at"][0],
            *law, *law["holdout"], *law["cross_check"], *law["noise"]["pooled"], *law["optimal"],
            *law["optimal"]["at"][0], *grouped, "metric"}
    assert missing(keys, mentioned(section("The fit JSON"))) == []


def test_sweep_and_report_spec_keys_are_documented():
    from scaling.report.spec import ReportSpec
    from scaling.sweep.spec import SPEC_KEYS, WANDB_ONLY

    sweep = section("Sweep specs")
    assert missing(SPEC_KEYS, first_cells(sweep) | mentioned(sweep)) == []
    assert missing(WANDB_ONLY, mentioned(sweep)) == []
    report = first_cells(section("Report specs"))
    assert sorted(report) == sorted(f.name for f in dataclasses.fields(ReportSpec))


def test_prepared_corpus_files_and_meta_keys_are_documented(tmp_path):
    from scaling.prepare import prepare

    source = tmp_path / "text"
    source.mkdir()
    for i in range(40):
        (source / f"{i}.txt").write_text(f"document {i} " * 20)
    meta = prepare(str(source), str(tmp_path / "corpus"), val_fraction=0.2)
    text = section("Prepared corpora")
    assert missing([p.name for p in (tmp_path / "corpus").iterdir()], first_cells(text)) == []
    assert missing([*meta, *meta["tokenizer"], *meta["splits"]["train"]], mentioned(text)) == []


def test_the_code_cites_only_files_in_the_repository():
    """No citation of a design document outside the repository (the first design lived beside it, not in
    it); every citation of docs/contracts.md names a section it has."""
    outside = re.compile(r"DESIGN" r"\.md|\.\./" r"shared/")  # spelled in pieces: this file cites neither
    titles = set(re.findall(r"^## (.+)$", DOC.read_text(), flags=re.M))
    cited = []
    for folder in ("scaling", "tests", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert not outside.search(text), path
            cited += [(path, title) for title in re.findall(r'docs/contracts\.md[,:]?\s+"([^"]+)"', text)]
    assert cited, "the code cites docs/contracts.md"
    assert [(str(p), t) for p, t in cited if t not in titles] == []


def test_comparison_json_keys_are_documented():
    from laws_synth import isoflop_table

    from scaling.laws import load_runs, split_by
    from scaling.laws.compare import compare_groups

    table = isoflop_table(sizes=5).assign(recipe="a")
    other = isoflop_table(sizes=5, seed=1).assign(recipe="b", run_id=lambda f: "b" + f.run_id)
    parts = split_by(load_runs(pd.concat([table, other], ignore_index=True)), "recipe")
    out = compare_groups(parts, "recipe", bootstrap=3, shared_e=True, holdout=2, cross_check=False,
                         starts=np.array([[6.0, 6.0, 0.5, 0.34, 0.28]])).to_json()
    pair = out["pairs"][0]
    assert "shared_e_crossover" in pair
    keys = {*out, *out["groups"]["a"], *pair, *pair["multipliers"][0], *pair["crossover"], *out["shared_e"],
            *out["holdout"]}
    assert missing(keys, mentioned(section("The comparison JSON"))) == []
