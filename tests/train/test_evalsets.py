"""Several evaluation sets per run (`eval=NAME:DIR,...`) and `scaling eval --eval` of a finished run: each
set's loss and bits per byte in summary.json, metrics.jsonl, W&B and the runs table; a set tokenized by
another tokenizer refused in one line; a later evaluation recorded beside the training-time numbers."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY

from scaling.cli import main
from scaling.data import load_corpus
from scaling.errors import UsageError
from scaling.prepare import prepare
from scaling.runs import RunHome, runs_table
from scaling.runs.table import on_metric
from scaling.train.evalsets import load_eval_set, parse_eval


def _texts(folder, n, seed, words):
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(n):
        (folder / f"{i}.txt").write_text(" ".join(rng.choice(words, 60)) + "\n")
    return str(folder)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """A prepared byte corpus to train on, another folder of text, and a BPE corpus of the same text."""
    root = tmp_path_factory.mktemp("evalsets")
    train_text = _texts(root / "train", 60, 0, ["def", "return", "self", "x", "=", "(", ")", ":", "if"])
    other = _texts(root / "other", 20, 1, ["the", "cat", "sat", "on", "a", "mat", "and", "slept"])
    prepare(train_text, str(root / "bytes"), val_fraction=0.2)
    prepare(train_text, str(root / "bpe"), tokenizer="bpe:512", val_fraction=0.2)
    return {"bytes": str(root / "bytes"), "bpe": str(root / "bpe"), "other": other, "text": train_text}


@pytest.fixture(scope="module")
def trained(corpora, tmp_path_factory):
    home = str(tmp_path_factory.mktemp("home") / "runs")
    args = ["--home", home, "train", *TINY, "tokens=4096", "wandb=off", "run_id=r1", f"corpus={corpora['bytes']}",
            f"eval=self:{corpora['bytes']},other:{corpora['other']}"]
    assert main(args) == 0
    return home


def test_each_eval_set_has_its_loss_and_bpb_in_the_summary_and_eval_loss_stays_the_corpus(trained):
    s = json.load(open(os.path.join(trained, "r1", "summary.json")))
    # the prepared corpus named as a set is evaluated on its own validation split: the run's eval_loss
    assert s["eval/self/loss"] == pytest.approx(s["eval_loss"], rel=1e-6)
    assert s["eval/other/loss"] != pytest.approx(s["eval_loss"], rel=1e-3)  # the other folder's text, not ours
    assert s["eval/other/bpb"] == pytest.approx(s["eval/other/loss"] / math.log(2))  # byte tokens: 1 byte each
    rows = [json.loads(line) for line in open(os.path.join(trained, "r1", "metrics.jsonl"))]
    evaluated = [r for r in rows if "eval_loss" in r]
    assert len(evaluated) == 3 and all({"eval/self/loss", "eval/other/loss", "eval/other/bpb"} <= set(r)
                                       for r in evaluated)
    assert not any("eval/other/loss" in r for r in rows if "eval_loss" not in r)
    assert evaluated[-1]["eval/other/loss"] == s["eval/other/loss"]


def test_the_runs_table_has_a_column_pair_per_set_and_fit_reads_them(trained):
    table = runs_table(trained)
    for name in ("self", "other"):
        assert {f"eval/{name}/loss", f"eval/{name}/bpb"} <= set(table.columns)
    s = json.load(open(os.path.join(trained, "r1", "summary.json")))
    assert table.loc[0, "eval/other/loss"] == s["eval/other/loss"]
    steps = runs_table(trained, steps=True)
    rows = [json.loads(line) for line in open(os.path.join(trained, "r1", "metrics.jsonl")) if "eval_loss" in line]
    assert list(steps["eval/other/loss"]) == [r["eval/other/loss"] for r in rows]
    picked = on_metric(table, "other:bpb")
    assert picked.loc[0, "loss"] == s["eval/other/bpb"] and picked.loc[0, "loss_nats"] == s["eval_loss"]
    with pytest.raises(UsageError, match="no eval/nope/loss column .*evaluation sets: other, self"):
        on_metric(table, "nope:loss")


def test_a_set_prepared_with_another_tokenizer_is_refused_in_one_line(corpora, tmp_path, capsys):
    home = str(tmp_path / "runs")
    code = main(["--home", home, "train", *TINY, "tokens=4096", "wandb=off", f"corpus={corpora['bytes']}",
                 f"eval=bpe:{corpora['bpe']}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "tokenized by another tokenizer" in err
    assert not os.path.exists(home) or os.listdir(home) in ([], ["scaling.db"])  # nothing of a run written
    train = load_corpus(corpora["bpe"])
    with pytest.raises(UsageError, match="another tokenizer"):
        load_eval_set("b", corpora["bytes"], train, 32)


def test_a_text_folder_is_tokenized_by_the_training_corpus_tokenizer(corpora):
    import tokenizers

    train = load_corpus(corpora["bpe"])
    got = load_eval_set("other", corpora["other"], train, 32).corpus
    tok = tokenizers.Tokenizer.from_file(os.path.join(corpora["bpe"], "tokenizer.json"))
    first = open(os.path.join(corpora["other"], "0.txt")).read()
    ids = tok.encode(first, add_special_tokens=False).ids
    assert got.vocab_size == train.vocab_size and list(got.val[:len(ids)]) == ids
    text_bytes = sum(len(p.read_bytes()) for p in Path(corpora["other"]).iterdir())
    assert got.bytes_per_token == pytest.approx(text_bytes / len(got.val))  # text bytes per token, for bpb
    assert got.val[len(ids)] == tok.token_to_id("<|endoftext|>")  # each document closed as `data prepare` does


@pytest.mark.parametrize("spec, message", [("code", "expected NAME:DIR"), ("a:x,a:y", "given twice"),
                                           ("a b:x", "expected NAME:DIR")])
def test_a_malformed_eval_spec_is_one_line(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_eval(spec)


def test_scaling_eval_later_records_beside_the_training_numbers(trained, corpora, capsys):
    before = open(os.path.join(trained, "r1", "summary.json")).read()
    assert main(["--home", trained, "eval", "r1", "--eval", f"later:{corpora['other']}"]) == 0
    assert "later loss" in capsys.readouterr().out
    assert open(os.path.join(trained, "r1", "summary.json")).read() == before  # nothing recorded is changed
    evals = json.load(open(os.path.join(trained, "r1", "evals.json")))
    s = json.loads(before)
    # the final checkpoint on the same set gives the number training recorded
    assert evals["metrics"]["eval/later/loss"] == pytest.approx(s["eval/other/loss"], rel=1e-5)
    assert evals["sources"]["eval/later"]["source"] == corpora["other"] and evals["step"] == s["steps"]
    table = runs_table(RunHome(trained))
    assert table.loc[0, "eval/later/bpb"] == evals["metrics"]["eval/later/bpb"]
    assert main(["--home", trained, "eval", "r1", "--eval", f"bpe:{corpora['bpe']}"]) == 2
    assert "another tokenizer" in capsys.readouterr().err


@pytest.mark.slow  # trains the runs it fits (5 s): out of the fast suite
def test_fit_metric_name_loss_fits_that_sets_column(tmp_path, capsys):
    from laws_synth import isoflop_table

    runs = isoflop_table(budgets=(1e18, 1e19, 1e20), sizes=5, noise=0.002)
    runs["eval/code/loss"] = runs["loss"] * 2.0
    path = tmp_path / "runs.csv"
    runs.to_csv(path, index=False)
    fits = {}
    for metric in ("loss", "code:loss"):
        assert main(["fit", str(path), "--metric", metric, "--bootstrap", "0", "--json", "-"]) == 0
        fits[metric] = json.loads(capsys.readouterr().out)
    assert fits["code:loss"]["metric"] == "code:loss"
    assert fits["code:loss"]["params"]["E"] == pytest.approx(2 * fits["loss"]["params"]["E"], rel=2e-2)
    assert main(["fit", str(path), "--metric", "prose:loss", "--bootstrap", "0"]) == 2
    assert "evaluation sets: code" in capsys.readouterr().err
    assert pd.read_csv(path).shape == runs.shape


def test_wandb_gets_each_set_under_its_own_eval_key(tmp_path, offline_run):
    from scaling.track import WandbTracker

    tracker = WandbTracker(str(tmp_path), mode="offline", project="scaling", run_id="e-1", name="e-1", group=None)
    tracker.start({"config": {"wandb": "offline,nostats"}})
    tracker.log({"step": 1, "tokens": 128, "flops": 1e6, "loss": 3.0, "eval_loss": 2.9, "eval/code/loss": 2.5,
                 "eval/code/bpb": 3.6})
    tracker.finish({"status": "interrupted", "eval/code/loss": 2.5})
    rec = offline_run(str(tmp_path / "wandb"), "eval/code/loss")
    (row,) = rec["history"]
    assert row["eval/code/loss"] == 2.5 and row["eval/code/bpb"] == 3.6 and row["eval/loss"] == 2.9
    assert not any(k.startswith("train/eval") for k in row)
    assert rec["summary"]["eval/code/loss"] == 2.5


def test_eval_set_and_task_keys_are_documented():
    from test_contracts import mentioned, section

    from scaling.train.tasks import TaskResult

    for title in ("The run directory", "The runs table"):
        assert {"eval/<name>/loss", "eval/<name>/bpb"} <= mentioned(section(title)), title
    keys = TaskResult(0.5, 0.5, 1.0, 2, 0).metrics("<name>")
    assert set(keys) <= mentioned(section("Tasks")) and set(keys) <= mentioned(section("The runs table"))
    assert {"evals.json", "eval_sets"} <= {m.split("/")[-1] for m in mentioned(section("The run directory"))}


def test_report_metric_name_bpb_takes_that_sets_column_and_lists_the_runs_without_it():
    from scaling.report.gather import ReportData, with_metric
    from scaling.report.spec import ReportSpec

    runs = pd.DataFrame({"run_id": ["a", "b"], "loss": [3.0, 2.0], "eval/code/bpb": [1.5, np.nan]})
    data = with_metric(ReportData(runs=runs), "code:bpb")
    assert list(data.runs["loss"]) == [1.5] and list(data.runs["loss_nats"]) == [3.0]
    assert data.loss_unit == "bits/byte" and [e.run_id for e in data.excluded] == ["b"]
    assert ReportSpec.load(None, metric="code:loss").metric == "code:loss"
    with pytest.raises(UsageError, match="NAME:loss / NAME:bpb"):
        ReportSpec.load(None, metric="code:acc")
    with pytest.raises(UsageError, match="evaluation sets: code"):
        with_metric(ReportData(runs=runs), "prose:loss")
