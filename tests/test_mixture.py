"""corpus=mix: each row of a step's batch comes from one domain in proportion to the weights, as a pure
function of (seed, step); a resumed mixture run equals an uninterrupted one; bad mixtures are one line."""
import json
import math
import os

import numpy as np
import pytest
import yaml

from scaling.cli import main
from scaling.config import RunConfig
from scaling.mixture import corpus_for
from scaling.prepare import prepare
from scaling.runs import runs_table
from scaling.train import plan_run, train_run

# Each domain writes with its own bytes, so a window tells which domain it came from.
ALPHABETS = {"a": "abcdefg \n", "b": "0123456789\n", "c": "XYZ!?+-\n"}


def _domain(path, alphabet: str, files: int = 30, size: int = 2000, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    os.makedirs(path)
    for i in range(files):
        text = "".join(rng.choice(list(alphabet), size=size))
        (path / f"f{i}.txt").write_text(text + "\n")
    return str(path)


@pytest.fixture(scope="module")
def domains(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    return {name: _domain(root / name, alphabet, seed=i) for i, (name, alphabet) in enumerate(ALPHABETS.items())}


def _spec(domains) -> str:
    return ",".join(f"{n}:{d}" for n, d in domains.items())


def _source(window: np.ndarray) -> str:
    text = bytes(window.astype(np.uint8)).replace(b"\n", b"").decode()
    (name,) = {n for n, alphabet in ALPHABETS.items() if set(text) <= set(alphabet)}
    return name


def test_rows_come_from_the_domains_in_proportion_to_the_weights_within_binomial_bounds(domains):
    corpus = corpus_for("mix", "a:0.6,b:0.25,c:0.15", _spec(domains))
    steps, batch, seq = 400, 16, 16
    seen = {n: 0 for n in ALPHABETS}
    for step in range(steps):
        for window in corpus.mix.batch_windows(7, step, batch, seq, slice(None)):
            seen[_source(window)] += 1
    n = steps * batch
    for name, w in zip("abc", (0.6, 0.25, 0.15)):
        assert abs(seen[name] - n * w) <= 4 * math.sqrt(n * w * (1 - w)), (name, seen)
    drawn = corpus.mix.tokens_drawn(7, steps, batch, seq)
    assert drawn == {f"tokens/{k}": v * seq for k, v in seen.items()}  # the summary counts the rows drawn
    # ... so a million rows, counted the same way, bound the shares to a few tenths of a percent
    n = 62_500 * batch
    drawn = corpus.mix.tokens_drawn(7, 62_500, batch, 1)
    for name, w in zip("abc", (0.6, 0.25, 0.15)):
        assert abs(drawn[f"tokens/{name}"] - n * w) <= 4 * math.sqrt(n * w * (1 - w)), (name, drawn)


def test_a_domain_weighed_zero_is_never_drawn_and_unnormalised_weights_are_normalised(domains):
    corpus = corpus_for("mix", "a:3,b:0,c:1", _spec(domains))
    assert corpus.mix.mix.weights == (0.75, 0.0, 0.25)
    drawn = corpus.mix.tokens_drawn(0, 300, 16, 16)
    assert drawn["tokens/b"] == 0
    n = 300 * 16
    assert abs(drawn["tokens/a"] / 16 - 0.75 * n) <= 4 * math.sqrt(n * 0.75 * 0.25)


def test_a_mixtures_batch_is_a_pure_function_of_seed_and_step_and_rows_split_it(domains):
    walked = corpus_for("mix", "a:0.5,b:0.3,c:0.2", _spec(domains))
    for step in range(50):
        walked.mix.batch_windows(3, step, 8, 16, slice(None))
    expected = walked.mix.batch_windows(3, 50, 8, 16, slice(None))
    from scaling.mixture import MixDraw

    fresh = MixDraw(walked.mix.mix, walked.mix.parts)  # nothing counted: step 50 asked first
    np.testing.assert_array_equal(fresh.batch_windows(3, 50, 8, 16, slice(None)), expected)
    halves = [fresh.batch_windows(3, 50, 8, 16, slice(lo, lo + 4)) for lo in (0, 4)]
    np.testing.assert_array_equal(np.concatenate(halves), expected)
    assert not np.array_equal(fresh.batch_windows(4, 50, 8, 16, slice(None)), expected)  # the seed matters


def test_within_a_domain_no_window_repeats_before_the_domain_is_seen_whole(domains):
    corpus = corpus_for("mix", "a:0.5,b:0.5", _spec(domains))
    seq = 64
    part = corpus.mix.parts[0]
    n_windows = (len(part.train) - 1) // (seq + 1) - 1
    rows = []
    step = 0
    while len(rows) < n_windows:
        rows += [bytes(w.astype(np.uint8)) for w in corpus.mix.batch_windows(0, step, 16, seq, slice(None))
                 if _source(w) == "a"]
        step += 1
    assert len(set(rows[:n_windows])) == n_windows


def test_the_mixtures_validation_windows_are_the_domains_in_the_weights_shares(domains):
    corpus = corpus_for("mix", "a:0.5,b:0.3,c:0.2", _spec(domains))
    rows = np.concatenate([x for x, _ in corpus.mix.eval_batches(100 * 16, 7, 16)])
    counts = {n: 0 for n in ALPHABETS}
    for row in rows:
        counts[_source(row)] += 1
    assert counts == {"a": 50, "b": 30, "c": 20}
    assert corpus.mix.eval_shares(7) == [4, 2, 1]  # 3.5, 2.1, 1.4 by largest remainder


def _config(domains, **extra) -> dict:
    return {"d_model": 16, "seq_len": 32, "batch_size": 4, "eval_tokens": 256, "n_evals": 3, "wandb": "off",
            "corpus": "mix", "domains": {n: d for n, d in domains.items()}, "mixture": {"a": 0.7, "b": 0.2, "c": 0.1},
            **extra}


def test_a_killed_and_resumed_mixture_run_equals_an_uninterrupted_one(domains, tmp_path):
    home = str(tmp_path / "runs")
    base = _config(domains, tokens=128 * 24, checkpoint_every=5)
    straight = train_run(plan_run(RunConfig.from_dict(base | {"run_id": "straight"})), home)
    first = train_run(plan_run(RunConfig.from_dict(base | {"run_id": "cut"})), home, stop_at_step=13)
    assert first["status"] == "interrupted"
    again = train_run(plan_run(RunConfig.from_dict(base | {"run_id": "cut"})), home)
    assert again["status"] == "complete"
    for key in ("eval_loss", "train_loss"):
        assert again[key] == straight[key]  # bit for bit: the same windows in the same order
    drawn = {k: v for k, v in again.items() if k.startswith("tokens/")}
    assert drawn == {k: v for k, v in straight.items() if k.startswith("tokens/")}
    assert sum(drawn.values()) == again["tokens"] and set(drawn) == {"tokens/a", "tokens/b", "tokens/c"}
    with open(os.path.join(home, "cut", "config.yaml")) as fh:
        record = yaml.safe_load(fh)
    assert record["config"]["mixture"] == "a:0.7,b:0.2,c:0.1"
    parts = record["corpus"]["mixture"]
    assert {n: p["weight"] for n, p in parts.items()} == pytest.approx({"a": 0.7, "b": 0.2, "c": 0.1})
    single = {n: corpus_for(d, None, None).fingerprint for n, d in domains.items()}
    assert {n: p["corpus_fingerprint"] for n, p in parts.items()} == single


def test_mixtures_of_other_weights_have_other_fingerprints_and_names(domains):
    one = corpus_for("mix", "a:0.5,b:0.5", _spec(domains))
    other = corpus_for("mix", "a:0.4,b:0.6", _spec(domains))
    assert one.fingerprint != other.fingerprint
    assert (one.name, other.name) == ("mix:a:0.5,b:0.5", "mix:a:0.4,b:0.6")


@pytest.fixture(scope="module")
def bpe_corpus(tmp_path_factory, domains):
    out = str(tmp_path_factory.mktemp("bpe") / "a-bpe")
    prepare(domains["a"], out, tokenizer="bpe:512", val_fraction=0.1)
    return out


@pytest.mark.parametrize("items, message", [
    (["mixture=a:-0.5,b:1"], "weights are finite numbers >= 0"),
    (["mixture=a:x,b:1"], "weights are finite numbers >= 0"),
    (["mixture=a:0,b:0"], "every weight is zero"),
    (["mixture=a:0.5,python:0.5"], "'python' is not a domain"),
    (["mixture=a:0.5,a:0.5"], "'a' is given twice"),
    (["mixture=a0.5"], "expected NAME:WEIGHT"),
    (["corpus=stdlib"], "needs corpus=mix"),
    (["mixture=", "corpus=mix"], "empty value"),
])
def test_a_bad_mixture_is_one_line_and_exit_2(domains, tmp_path, capsys, items, message):
    args = ["corpus=mix", f"domains={_spec(domains)}", "mixture=a:0.5,b:0.5", *items]
    rc = main(["--home", str(tmp_path), "train", "d_model=16", "tokens=4e3", "wandb=off", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("*/config.yaml"))  # nothing recorded


def test_corpus_mix_without_its_keys_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--home", str(tmp_path), "train", "d_model=16", "tokens=4e3", "corpus=mix"]) == 2
    assert "corpus=mix needs mixture=" in capsys.readouterr().err


def test_domains_of_different_tokenizers_are_refused_in_one_line(domains, bpe_corpus, tmp_path, capsys):
    spec = f"a:{bpe_corpus},b:{domains['b']}"
    rc = main(["--home", str(tmp_path), "train", "d_model=16", "tokens=4e3", "corpus=mix", f"domains={spec}",
               "mixture=a:0.5,b:0.5"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "tokenized differently" in err and len(err.splitlines()) == 1, err
    rc = main(["--home", str(tmp_path), "train", "d_model=16", "tokens=4e3", "corpus=mix",
               f"domains=a:{domains['a']},s:synthetic", "mixture=a:0.5,s:0.5"])
    assert rc == 2 and "carries no tokenizer" in capsys.readouterr().err


def test_a_mixture_of_prepared_corpora_trains_evaluates_each_domain_and_fills_the_mixture_laws_columns(
        domains, bpe_corpus, tmp_path):
    other = str(tmp_path / "b-bpe")
    prepare(domains["b"], other, tokenizer=os.path.join(bpe_corpus, "tokenizer.json"), val_fraction=0.1)
    home = str(tmp_path / "runs")
    rc = main(["--home", home, "train", "d_model=16", "seq_len=32", "batch_size=4", "eval_tokens=256", "n_evals=2",
               "tokens=2e3", "corpus=mix", f"domains=a:{bpe_corpus},b:{other}", "mixture=a:3,b:1",
               f"eval=a:{bpe_corpus},b:{other}", "run_id=bpe", "wandb=off", "--quiet"])
    assert rc == 0
    with open(os.path.join(home, "bpe", "summary.json")) as fh:
        summary = json.load(fh)
    assert summary["status"] == "complete" and summary["eval_bpb"] is not None
    assert summary["tokens/a"] + summary["tokens/b"] == summary["tokens"]
    # what `fit --law mixture` reads (docs/contracts.md "The runs table", its domain columns): the run's
    # shares and each domain's loss
    row = runs_table(home).set_index("run_id").loc["bpe"]
    assert (row["mix/a"], row["mix/b"]) == pytest.approx((0.75, 0.25))
    assert row["eval/a/loss"] == summary["eval/a/loss"] and row["eval/b/loss"] == summary["eval/b/loss"]
