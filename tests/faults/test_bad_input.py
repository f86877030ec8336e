"""Issue #11 item 9: bad input, everywhere, gets one line naming the key and what is allowed, exit code
2, no traceback, and nothing written: no run directory, no scaling.db where none existed, no report.
One table over configs, overrides, corpora, sweep specs, runs tables and report specs."""
import os

import numpy as np
import pytest
import yaml
from faultlib import COMMAND, TINY_SWEEP, tree

from scaling.cli import main

T = ["d_model=16", "seq_len=32", "batch_size=4", "eval_tokens=256", "n_evals=3", "wandb=off"]  # conftest's tiny run
LENGTH = ["tokens=1e4"]


def _spec(**top):
    parameters = {**TINY_SWEEP, "tokens": {"value": 320}, **top.pop("parameters", {})}
    return {"name": "s", "method": "grid", "command": COMMAND, "parameters": parameters, **top}


FILES = {
    "list.yaml": "- 1\n- 2\n",
    "bad.yaml": "params: [1e5\n",
    "unknown.yaml": "d_model: 16\ntokens: 1e4\ncolour: blue\n",
    "negseed.yaml": "d_model: 16\ntokens: 1e4\nseed: -1\n",
    "text.yaml": "d_model: 16\ntokens: lots\n",
    "nolength.yaml": "# a model and no length\nd_model: 16\n",
    "nan.yaml": "d_model: 16\ntokens: 1e4\nlr: .nan\n",
    "escape.yaml": "d_model: 16\ntokens: 1e4\nrun_id: ../up\n",
    "spec-project.yaml": yaml.safe_dump(_spec(parameters={"wandb_project": {"value": "a/b"}})),
    "spec-million.yaml": yaml.safe_dump(_spec(parameters={
        k: {"values": [round(1e-3 * (i + 1), 6) for i in range(10)]}
        for k in ("lr", "beta1", "beta2", "min_lr_ratio", "warmup_fraction", "weight_decay")})),
    "spec-million-random.yaml": yaml.safe_dump(_spec(method="random", run_cap=1_000_000,
                                                     parameters={"lr": {"min": 1e-4, "max": 1e-2}})),
    "spec-bayes.yaml": yaml.safe_dump(_spec(method="bayes")),
    "spec-early.yaml": yaml.safe_dump(_spec(early_terminate={"type": "hyperband", "min_iter": 3})),
    "spec-colour.yaml": yaml.safe_dump(_spec(parameters={"colour": {"value": "blue"}})),
    "spec-seed.yaml": yaml.safe_dump(_spec(parameters={"seed": {"value": -1}})),
    "spec-runid.yaml": yaml.safe_dump(_spec(parameters={"run_id": {"value": "x"}})),
    "spec-bad.yaml": "method: grid\nparameters: {lr: [1\n",
    "spec-nocommand.yaml": yaml.safe_dump({k: v for k, v in _spec().items() if k != "command"}),
    "spec-runcap0.yaml": yaml.safe_dump(_spec(run_cap=0)),
    "spec-random.yaml": yaml.safe_dump(_spec(method="random", parameters={"lr": {"min": 1e-4, "max": 1e-2}})),
    "spec-skipped.yaml": yaml.safe_dump(_spec(parameters={"tokens": {"value": 1}})),
    "spec-empty-values.yaml": yaml.safe_dump(_spec(parameters={"lr": {"values": []}})),
    "no-loss.csv": "params,tokens\n1e6,2e7\n2e6,4e7\n",
    "text-loss.csv": "params,tokens,loss\n1e6,2e7,low\n2e6,4e7,3.1\n",
    "negative.csv": "params,tokens,loss\n-1e6,2e7,3.2\n",
    "infinite.csv": "params,tokens,loss\n1e6,2e7,inf\n1e308,4e7,3.1\n",
    "one.csv": "params,tokens,loss\n1e6,2e7,3.2\n",
    "report-banana.yaml": "holdout: banana\n",
    "report-unknown.yaml": "colour: blue\n",
    "report-budgets.yaml": "budgets: [-1]\n",
    "report-laws.yaml": "laws: [nope]\n",
    "report-bootstrap.yaml": "bootstrap: lots\n",
    "report-negative.yaml": "bootstrap: -3\n",
    "report-published.yaml": "published: /no/such/laws.yaml\n",
    "existing-file": "I am a file\n",
    "notes.txt": "not a spec\n",
}

# (argv with {ws} for the folder of the files above, the message's telling part)
CASES = [
    # ---- config files --------------------------------------------------------------------------------
    (["train", "{ws}/list.yaml"], "expected a mapping of key: value"),
    (["train", "{ws}/bad.yaml", "d_model=16"], "not valid YAML at line 2"),
    (["train", "{ws}/missing.yaml", *LENGTH], "missing.yaml: no such file"),
    (["train", "{ws}/unknown.yaml"], "unknown key 'colour'"),
    (["train", "{ws}/negseed.yaml"], "seed=-1: allowed 0..4294967295"),
    (["train", "{ws}/text.yaml"], "tokens='lots': expected a finite number"),
    (["train", "{ws}/nolength.yaml"], "give exactly one of tokens=D or flops_budget=C"),
    (["train", "{ws}/nan.yaml"], "lr=nan: expected a finite number"),
    (["train", "{ws}/escape.yaml"], "run_id='../up': use letters, digits"),
    (["train", "{ws}/corpora", *T, *LENGTH], "cannot read"),
    # ---- key=value overrides ---------------------------------------------------------------------------
    (["train", *T, *LENGTH, "seed=-1"], "seed=-1: allowed 0..4294967295"),
    (["train", *T, *LENGTH, "seed=1e20"], "seed=100000000000000000000: allowed 0..4294967295"),
    (["train", *T, *LENGTH, "seed=1.5"], "seed='1.5': expected an integer"),
    (["train", "params=1e15", "tokens=1e9", "wandb=off"], "params=1e+15: d16384-L48-H256"),
    (["train", *T[:2], "batch_size=1e9", *T[3:], "tokens=1e11"], "batch_size=1000000000 x seq_len=32 needs at least"),
    (["train", *T, *LENGTH, "run_id=" + "r" * 300], "has 300 characters; allowed: at most 128"),
    (["train", *T, "tokens=1e15"], "tokens=1e+15 is 7.81e+12 steps of 128 tokens; allowed: at most 1e+08 steps"),
    (["train", *T, "flops_budget=1e30"], "flops_budget=1e+30 is"),
    (["train", *T, *LENGTH, "run_id="], "run_id=: empty value"),
    (["train", *T, *LENGTH, "wandb_project="], "wandb_project=: empty value"),
    (["train", *T, *LENGTH, "vocab_size=1000"], "vocab_size=1000: corpus='stdlib' has its own vocabulary of 256"),
    (["train", *T, *LENGTH, "corpus=synthetic", "vocab_size=1000"], "vocab_size=1000: corpus='synthetic'"),
    (["train", *T, *LENGTH, "wandb_project=a/b"], "wandb_project='a/b': allowed 1..128 characters"),
    (["train", *T, *LENGTH, "lr=-1"], "lr=-1: must be positive"),
    (["train", *T, *LENGTH, "lr=nan"], "lr='nan': expected a finite number"),
    (["train", *T, *LENGTH, "lr=inf"], "lr='inf': expected a finite number"),
    (["train", *T, "tokens=0"], "tokens=0: must be positive"),
    (["train", "d_model=0", *LENGTH], "d_model=0: must be positive"),
    (["train", "d_model=17", *LENGTH], "d_model=17: must be an even integer >= 16"),
    (["train", "d_model=64", "n_heads=5", *LENGTH], "n_heads=5 does not divide d_model=64"),
    (["train", *T, *LENGTH, "schedule=linear"], "schedule='linear': allowed cosine, wsd"),
    (["train", *T, *LENGTH, "mlp=relu"], "mlp='relu': allowed swiglu, gelu"),
    (["train", *T, *LENGTH, "dtype=float16"], "dtype='float16': allowed auto, float32, bfloat16"),
    (["train", *T[:-1], *LENGTH, "wandb=maybe"], "wandb='maybe': allowed a mode (auto, off, offline, online)"),
    (["train", *T, *LENGTH, "beta1=2"], "beta1=2.0: must be in [0, 1]"),
    (["train", *T, *LENGTH, "warmup_fraction=-0.1"], "warmup_fraction=-0.1: must be in [0, 1]"),
    (["train", *T, *LENGTH, "checkpoint_every=-1"], "checkpoint_every=-1: must be >= 0"),
    (["train", *T, *LENGTH, "checkpoint_every=1.5"], "checkpoint_every='1.5': expected an integer"),
    (["train", *T, *LENGTH, "n_evals=-1"], "n_evals=-1: must be >= 0"),
    (["train", *T, *LENGTH, "tied=maybe"], "tied='maybe': expected true or false"),
    (["train", *T, *LENGTH, "grad_clip=-1"], "grad_clip=-1.0: must be >= 0"),
    (["train", *T, *LENGTH, "run_id=../escape"], "run_id='../escape': use letters, digits"),
    (["train", *T, *LENGTH, "run_id=.hidden"], "run_id='.hidden': use letters, digits"),
    (["train", *T, *LENGTH, "params"], "'params': expected key=value"),
    (["train", *T, *LENGTH, "=5"], "'=5': expected key=value"),
    (["train", *T, *LENGTH, "colour=blue"], "unknown key 'colour'"),
    (["train", "params=1e5", "d_model=16", *LENGTH], "give params=N or d_model=WIDTH, not both"),
    (["train", *T], "give exactly one of tokens=D or flops_budget=C"),
    (["train", *LENGTH], "give the model size: params=N"),
    (["train", *T, "tokens=10"], "less than one batch"),
    (["train", *T, *LENGTH, "seq_len=0"], "seq_len=0: must be positive"),
    (["train", *T, *LENGTH, "eval_tokens=0"], "eval_tokens=0: must be positive"),
    (["train", *T, "flops_budget=lots"], "flops_budget='lots': expected a finite number"),
    # ---- corpora ---------------------------------------------------------------------------------------
    (["train", *T, *LENGTH, "corpus=/no/such/dir"], "corpus='/no/such/dir': no such directory, file or glob"),
    (["train", *T, *LENGTH, "corpus={ws}/missing.bin"], "missing.bin': no such file"),
    (["train", *T, *LENGTH, "corpus=synthetic:1"], "corpus='synthetic:1': vocab must be in [2, 65536]"),
    (["train", *T, *LENGTH, "corpus=synthetic:x"], "corpus='synthetic:x': expected synthetic[:VOCAB[:SEED]]"),
    (["train", *T, *LENGTH, "corpus={ws}/corpora/tiny.bin"], "only 100 tokens"),
    (["train", *T, *LENGTH, "corpus={ws}/corpora/big.bin", "vocab_size=500"], "holds token id 999 >= vocab_size=500"),
    (["train", *T, *LENGTH, "corpus={ws}/corpora/empty"], "no text files found"),
    (["train", *T, *LENGTH, "corpus={ws}/corpora/binary"], "no text files found"),
    (["train", *T, *LENGTH, "corpus={ws}/corpora/short"], "shorter than one sequence of 33 tokens"),
    (["train", *T, *LENGTH, "corpus={ws}/corpora/*.nothing"], "no such directory, file or glob match"),
    # ---- sweep specs -------------------------------------------------------------------------------------
    (["sweep", "create", "{ws}/spec-project.yaml"], "wandb_project='a/b': allowed 1..128 characters"),
    (["sweep", "create", "{ws}/spec-million.yaml"], "1,000,000 points; allowed: at most 10,000 per sweep"),
    (["sweep", "create", "{ws}/spec-million-random.yaml"], "1,000,000 points; allowed: at most 10,000 per sweep"),
    (["sweep", "create", "{ws}/spec-bayes.yaml"], "method: bayes needs W&B's server"),
    (["sweep", "create", "{ws}/spec-early.yaml"], "early_terminate: not supported by the local engine"),
    (["sweep", "create", "{ws}/spec-colour.yaml"], "parameters.colour: unknown key 'colour'"),
    (["sweep", "create", "{ws}/spec-seed.yaml"], "seed=-1: allowed 0..4294967295"),
    (["sweep", "create", "{ws}/spec-runid.yaml"], "parameters.run_id: set by the sweep engine"),
    (["sweep", "create", "{ws}/spec-bad.yaml"], "not valid YAML"),
    (["sweep", "create", "{ws}/spec-nocommand.yaml"], "command: required"),
    (["sweep", "create", "{ws}/spec-runcap0.yaml"], "run_cap: expected a positive integer, got 0"),
    (["sweep", "create", "{ws}/spec-random.yaml"], "run_cap: required with method: random"),
    (["sweep", "create", "{ws}/spec-skipped.yaml"], "no point can run"),
    (["sweep", "create", "{ws}/spec-empty-values.yaml"], "parameters.lr.values: empty list"),
    (["sweep", "create", "{ws}/missing-spec.yaml"], "missing-spec.yaml: no such file"),
    # ---- runs tables -------------------------------------------------------------------------------------
    (["fit", "{ws}/missing.csv"], "cannot read runs table"),
    (["fit", "{ws}/no-loss.csv"], "is missing loss"),
    (["fit", "{ws}/text-loss.csv"], "column 'loss' has a non-numeric value 'low' (row 1)"),
    (["fit", "{ws}/negative.csv"], "no usable rows (1 dropped: 1 bad params (e.g. -1e+06))"),
    (["fit", "{ws}/infinite.csv"], "no usable rows (2 dropped: 1 bad loss (e.g. inf), 1 bad params (e.g. 1e+308))"),
    (["fit", "{ws}/corpora"], "it is a directory"),
    (["fit", "{ws}/one.csv", "--bootstrap", "-5"], "--bootstrap must be 0 or more, got -5"),
    (["fit", "{ws}/one.csv", "--at", "banana"], "--at takes FLOP budgets like 1e21,1e24; got 'banana'"),
    (["fit", "{ws}/one.csv", "--json", "{ws}/no/such/fit.json"], "--json {ws}/no/such/fit.json: no folder"),
    (["fit", "--sweep", "nosuch"], "no sweep 'nosuch'"),
    (["fit"], "pass a runs table (CSV or Parquet) or --sweep SWEEP"),
    (["fit", "{ws}/one.csv", "--sweep", "s"], "pass either a runs table or --sweep, not both"),
    # scaling.laws names its parameters (holdout=, fixed=, budgets=); the command names its flags
    (["fit", "{ws}/one.csv", "--holdout", "1"], "--holdout 1: leaves no runs to fit (the table has 1 runs)"),
    (["fit", "{ws}/one.csv", "--law", "isoflop", "--holdout", "1"], "--holdout: needs a parametric law"),
    (["fit", "{ws}/one.csv", "--fix", "Q=1"], "--fix Q: law chinchilla has no parameter 'Q'"),
    (["fit", "{ws}/one.csv", "--fix", "E=-1"], "--fix E=-1.0: expected a positive finite number"),
    (["fit", "{ws}/one.csv", "--law", "lr", "--at", "1e21"], "--at: does not apply to law lr"),
    (["fit", "{ws}/one.csv", "--metric", "bpb"], "--metric bpb: the runs table"),
    (["fit", "{ws}/one.csv", "--huber-delta", "-1"], "--huber-delta -1: must be positive"),
    (["fit", "{ws}/one.csv", "--params-column", "n"], "--params-column 'n': not a column of the runs table"),
    (["fit", "{ws}/one.csv", "--by", "corpus"], "--by corpus: no such column in the runs table"),
    (["runs", "--csv", "{ws}/no/such/runs.csv"], "--csv {ws}/no/such/runs.csv: no folder"),
    (["runs", "--csv", "{ws}/corpora"], "is a folder; give a file name"),
    (["runs", "--sweep", "nosuch"], "no sweep 'nosuch'"),
    # ---- report specs and report outputs -----------------------------------------------------------------
    (["report", "{ws}/report-banana.yaml", "{ws}/one.csv", "--out", "{ws}/r"], "holdout='banana': allowed"),
    (["report", "{ws}/one.csv", "--out", "{ws}/existing-file"], "--out {ws}/existing-file: is a file"),
    (["report", "{ws}/one.csv", "--out", "{ws}/existing-file/r"], "is a file, so no folder can be made"),
    (["report", "{ws}/one.csv", "--out", "{ws}/r", "--bootstrap", "-5"], "--bootstrap -5: must be 0 or more"),
    (["report", "{ws}/report-unknown.yaml", "{ws}/one.csv", "--out", "{ws}/r"], "unknown key 'colour'"),
    (["report", "{ws}/report-budgets.yaml", "{ws}/one.csv", "--out", "{ws}/r"], "budgets must be positive"),
    (["report", "{ws}/report-laws.yaml", "{ws}/one.csv", "--out", "{ws}/r"], "unknown law 'nope'"),
    (["report", "{ws}/report-bootstrap.yaml", "{ws}/one.csv", "--out", "{ws}/r"], "bootstrap and seed integers"),
    (["report", "{ws}/report-negative.yaml", "{ws}/one.csv", "--out", "{ws}/r"], "bootstrap=-3: must be 0 or more"),
    (["report", "{ws}/report-published.yaml", "{ws}/one.csv", "--out", "{ws}/r"], "published: no such file"),
    (["report", "{ws}/no-loss.csv", "--out", "{ws}/r"], "is missing loss"),
    (["report", "--out", "{ws}/r"], "give --sweep SWEEP, a RUNS.csv, or a spec that names one"),
    (["report", "--sweep", "nosuch", "--out", "{ws}/r"], "sweep 'nosuch' not found"),
    (["report", "{ws}/notes.txt", "--out", "{ws}/r"], "expected a report spec (.yaml) or a runs table"),
    # ---- sweeps that are not there, ids that are not ids -------------------------------------------------
    (["sweep", "status", "nosuch"], "no sweep 'nosuch'"),
    (["sweep", "agent", "nosuch", "--quiet"], "no sweep 'nosuch'"),
    (["sweep", "slurm", "nosuch", "--executor", "local"], "no sweep 'nosuch'"),
    (["dashboard", "--sweep", "../../x"], "--sweep '../../x': a sweep id uses letters"),
    (["dashboard", "--sweep", "a/b"], "--sweep 'a/b': a sweep id uses letters"),
    (["dashboard", "--sweep", "s", "--out", "{ws}/existing-file"], "--out {ws}/existing-file: is a file"),
]


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """The inputs, in a folder that must look the same afterwards (the working directory too)."""
    folder = tmp_path / "ws"
    folder.mkdir()
    for name, text in FILES.items():
        (folder / name).write_text(text)
    corpora = folder / "corpora"
    for sub in ("empty", "binary", "short"):
        (corpora / sub).mkdir(parents=True)
    (corpora / "binary" / "blob.dat").write_bytes(b"\0\1\2" * 100)
    (corpora / "short" / "a.txt").write_text("tiny text\n")
    np.arange(100, dtype=np.uint16).tofile(corpora / "tiny.bin")
    (np.arange(2000, dtype=np.uint16) % 1000).tofile(corpora / "big.bin")
    monkeypatch.chdir(tmp_path)
    return str(folder)


@pytest.mark.parametrize("argv,message", CASES, ids=[f"{i:03d}-{' '.join(a)[:40]}" for i, (a, _) in enumerate(CASES)])
def test_bad_input_gets_one_line_exit_2_no_traceback_and_writes_nothing(tmp_path, ws, capsys, argv, message):
    home = str(tmp_path / "home")
    before = tree(tmp_path)
    rc = main(["--home", home, *(a.replace("{ws}", ws) for a in argv)])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert (rc, len(lines)) == (2, 1), err
    assert message.replace("{ws}", ws) in lines[0]
    assert lines[0].startswith("scaling ") and "Traceback" not in err
    assert not os.path.exists(home)  # no run directory, no scaling.db
    assert tree(tmp_path) == before


def test_the_table_has_at_least_60_cases_across_every_kind_of_input():
    kinds = {a[0] if a[0] != "sweep" else f"sweep {a[1]}" for a, _ in CASES}
    assert len(CASES) >= 60 and {"train", "sweep create", "fit", "runs", "report", "dashboard"} <= kinds


def test_fit_json_dash_writes_the_json_to_stdout_not_a_file_named_dash(tmp_path, monkeypatch, capsys):
    import json

    from reportlib import isoflop_table

    monkeypatch.chdir(tmp_path)
    isoflop_table().to_csv("runs.csv", index=False)
    assert main(["fit", "runs.csv", "--law", "isoflop", "--bootstrap", "0", "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["law"] == "isoflop" and "isoflop" in err  # the readable summary went to stderr
    assert sorted(os.listdir(tmp_path)) == ["runs.csv"]
