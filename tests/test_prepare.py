"""`scaling data prepare`: sources to token files and back, vocabularies past uint16, a killed prepare,
and the bits-per-byte accounting that makes runs of different tokenizers comparable."""
import json
import math
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from scaling import data
from scaling.cli import main
from scaling.errors import UsageError
from scaling.prepare import EOS, prepare

tokenizers = pytest.importorskip("tokenizers")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "the of and to in a is that for it as with was on be by this are from or at an which".split() + [
    "λόγος", "数据", "naïve", "😀", "tab\there", "line\nbreak"]


def _docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 400))) for _ in range(n)]
    return [d + ("\n" if i % 3 == 0 else "") for i, d in enumerate(docs)]


def _text_folder(path, docs) -> str:
    os.makedirs(path)
    for i, doc in enumerate(docs):
        (path / f"d{i:04d}.txt").write_text(doc, encoding="utf-8")
    return str(path)


def _decoded(out: str, meta: dict) -> list[str]:
    """Every document of both splits, decoded from the token files."""
    dtype = np.dtype(meta["dtype"])
    docs = []
    for split in ("train", "val"):
        ids = np.fromfile(os.path.join(out, f"{split}.bin"), dtype=dtype)
        if meta["tokenizer"]["kind"] == "bytes":  # no separator token: the split's text, in source order
            docs.append(ids.astype(np.uint8).tobytes().decode("utf-8"))
            continue
        tok = tokenizers.Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
        eos = meta["tokenizer"]["eos_id"]
        cuts = np.flatnonzero(ids == eos)
        assert len(cuts) == meta["splits"][split]["documents"]
        starts = np.r_[0, cuts[:-1] + 1]
        docs += [tok.decode(ids[a:b].tolist()) for a, b in zip(starts, cuts)]
    return docs


def _byte_splits(docs: list[str], val_fraction: float) -> list[str]:
    """What the byte tokenizer writes: each split's documents in order, each ending with a newline."""
    return ["".join(d if d.endswith("\n") else d + "\n" for d in docs if data.doc_is_val(d, val_fraction) == val)
            for val in (False, True)]


def test_bpe_prepare_round_trips_every_document_and_records_its_splits(tmp_path):
    docs = _docs(200)
    src = _text_folder(tmp_path / "src", docs)
    out = str(tmp_path / "corpus")
    meta = prepare(src, out, tokenizer="bpe:700", val_fraction=0.1)
    assert sorted(os.listdir(out)) == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]
    assert meta == json.load(open(os.path.join(out, "meta.json")))
    assert sorted(_decoded(out, meta)) == sorted(docs)  # byte-level BPE is lossless
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    assert train["documents"] + val["documents"] == 200 and 5 <= val["documents"] <= 40
    # the validation documents are exactly those whose text hashes into the split
    assert val["documents"] == sum(data.doc_is_val(d, 0.1) for d in docs)
    assert train["bytes"] + val["bytes"] == sum(len(d.encode()) for d in docs)
    assert meta["dtype"] == "uint16" and meta["tokenizer"]["vocab_size"] <= 700
    ids = np.fromfile(os.path.join(out, "train.bin"), dtype=np.uint16)
    assert meta["unigram_counts"] == np.bincount(ids, minlength=meta["tokenizer"]["vocab_size"]).tolist()

    corpus = data.load_corpus(out)
    assert corpus.vocab_size == meta["tokenizer"]["vocab_size"] and corpus.fingerprint == meta["fingerprint"]
    assert len(corpus.train) == train["tokens"] and corpus.bytes_per_token == val["bytes"] / val["tokens"]
    counts = np.bincount(ids).astype(float)
    p = counts[counts > 0] / counts.sum()
    assert corpus.unigram_entropy == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-12)
    x, y = data.batch(corpus, 0, 3, 4, 16)  # the batch contract holds on a prepared corpus
    assert x.shape == (4, 16) and (x[:, 1:] == y[:, :-1]).all()

    again = prepare(src, str(tmp_path / "again"), tokenizer=os.path.join(out, "tokenizer.json"), val_fraction=0.1)
    assert again["fingerprint"] == meta["fingerprint"]  # the same tokenizer on the same text: the same corpus
    other = prepare(src, str(tmp_path / "other"), tokenizer="bytes", val_fraction=0.1)
    assert other["fingerprint"] != meta["fingerprint"]


def test_byte_prepare_round_trips_and_counts_one_byte_per_token(tmp_path):
    docs = _docs(80, seed=1)
    out = str(tmp_path / "corpus")
    meta = prepare(_text_folder(tmp_path / "src", docs), out, val_fraction=0.2)
    assert _decoded(out, meta) == _byte_splits(docs, 0.2)
    for split in meta["splits"].values():
        assert split["bytes"] == split["tokens"]
    corpus = data.load_corpus(out)
    assert corpus.bytes_per_token == 1.0 and corpus.vocab_size == 256
    assert corpus.bits_per_byte(math.log(2)) == pytest.approx(1.0)


def test_table_sources_jsonl_parquet_and_a_saved_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    docs = _docs(60, seed=2)
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"body": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    pd.DataFrame({"body": docs}).to_parquet(tmp_path / "a.parquet")
    datasets.Dataset.from_dict({"body": docs}).save_to_disk(str(tmp_path / "saved"))
    metas = [prepare(str(tmp_path / src), str(tmp_path / f"out{i}"), text_field="body", val_fraction=0.2)
             for i, src in enumerate(["a.jsonl", "a.parquet", "saved"])]
    assert len({m["fingerprint"] for m in metas}) == 1  # the same documents, however they were stored
    assert _decoded(str(tmp_path / "out0"), metas[0]) == _byte_splits(docs, 0.2)
    with pytest.raises(UsageError, match=r"no field 'text' \(fields: body, id\); choose one with --text-field"):
        prepare(str(tmp_path / "a.jsonl"), str(tmp_path / "x"))
    with pytest.raises(UsageError, match="no field 'text'"):
        prepare(str(tmp_path / "saved"), str(tmp_path / "y"))
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path / "y")


def test_vocabularies_past_65536_are_stored_as_uint32(tmp_path):
    vocab = {f"w{i}": i for i in range(70_000)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab={**vocab, EOS: 70_000}, unk_token=EOS))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tok.save(str(tmp_path / "wide.json"))
    rng = random.Random(3)
    docs = [" ".join(f"w{rng.randrange(70_000)}" for _ in range(300)) for _ in range(40)]
    out = str(tmp_path / "corpus")
    meta = prepare(_text_folder(tmp_path / "src", docs), out, tokenizer=str(tmp_path / "wide.json"), val_fraction=0.2)
    assert meta["dtype"] == "uint32" and meta["tokenizer"]["vocab_size"] == 70_001
    ids = np.concatenate([np.fromfile(os.path.join(out, f"{s}.bin"), dtype=np.uint32) for s in ("train", "val")])
    assert ids.max() > 65_535
    assert os.path.getsize(os.path.join(out, "train.bin")) == 4 * meta["splits"]["train"]["tokens"]
    assert sorted(_decoded(out, meta)) == sorted(docs)
    corpus = data.load_corpus(out)
    assert corpus.vocab_size == 70_001 and corpus.train.dtype == np.uint32
    x, _ = data.batch(corpus, 0, 0, 2, 64)
    assert x.max() < 70_001 and x.dtype == np.int32


def test_a_killed_prepare_leaves_no_corpus_a_run_would_accept_and_a_rerun_completes(tmp_path):
    src = tmp_path / "src"
    os.makedirs(src)
    block = " ".join(_docs(1, seed=4) * 50)
    for i in range(60):
        (src / f"big{i:02d}.txt").write_text(f"{i} " + block * 20)  # ~60 x 1 MB: several seconds of work
    out = str(tmp_path / "corpus")
    cmd = [sys.executable, "-m", "scaling.cli", "data", "prepare", str(src), "--out", out, "--quiet",
           "--tokenizer", "bytes", "--val-fraction", "0.3"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = os.path.join(out + ".partial", "train.bin")
    deadline = time.time() + 120
    while not (os.path.exists(partial) and os.path.getsize(partial) > 0) and time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(out)
    with pytest.raises(UsageError):
        data.load_corpus(out)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not os.path.exists(out + ".partial")
    meta = json.load(open(os.path.join(out, "meta.json")))
    assert meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"] == sum(
        len(t) + (not t.endswith(b"\n")) for t in (p.read_bytes() for p in src.iterdir()))


@pytest.mark.parametrize("args,message", [
    (["--tokenizer", "bpe:x"], "expected bpe:VOCAB with an integer"),
    (["--tokenizer", "bpe:10"], "vocabulary must be in"),
    (["--tokenizer", "nope.json"], "expected bytes, bpe:VOCAB or the path of a tokenizer.json"),
    (["--val-fraction", "1.5"], "must be in (0, 1)"),
    (["--val-fraction", "0.0001"], "no document fell in the val split"),
])
def test_bad_prepare_input_is_one_line_and_exit_2(tmp_path, args, message, capsys):
    # In-process: the CLI's own process refusing in one line is tests/faults/test_corpus_faults.py's
    src = _text_folder(tmp_path / "src", _docs(10))
    assert main(["data", "prepare", src, "--out", str(tmp_path / "out"), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "out")


def test_prepare_refuses_an_existing_out_folder_and_a_missing_source(tmp_path):
    src = _text_folder(tmp_path / "src", _docs(10))
    with pytest.raises(UsageError, match="already exists"):
        prepare(src, src)
    with pytest.raises(UsageError, match="no such folder, file or glob match"):
        prepare(str(tmp_path / "missing"), str(tmp_path / "out"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "meta.json").write_text("{}")
    with pytest.raises(UsageError, match="not a prepared corpus"):
        data.load_corpus(str(tmp_path / "bad"))


def test_a_run_on_a_prepared_corpus_records_bits_per_byte_in_its_summary_and_the_runs_table(tmp_path):
    from scaling.cli import main
    from scaling.runs import runs_table

    out = str(tmp_path / "corpus")
    meta = prepare(_text_folder(tmp_path / "src", _docs(150, seed=5)), out, tokenizer="bpe:600", val_fraction=0.1)
    home = str(tmp_path / "runs")
    assert main(["--home", home, "train", f"corpus={out}", "d_model=16", "seq_len=32", "batch_size=4",
                 "tokens=6400", "eval_tokens=256", "wandb=off", "run_id=bpe", "--quiet"]) == 0
    summary = json.load(open(os.path.join(home, "bpe", "summary.json")))
    val = meta["splits"]["val"]
    assert summary["eval_bpb"] == pytest.approx(summary["eval_loss"] * val["tokens"] / (math.log(2) * val["bytes"]),
                                                rel=1e-12)
    assert summary["corpus_fingerprint"] == meta["fingerprint"]
    table = runs_table(home)
    assert table.loc[0, "eval_bpb"] == summary["eval_bpb"]
    steps = runs_table(home, steps=True)
    np.testing.assert_allclose(steps["eval_bpb"] / steps["loss"], summary["eval_bpb"] / summary["eval_loss"])


@pytest.mark.slow
def test_a_sweep_over_a_byte_and_a_bpe_corpus_reports_on_bits_per_byte(tmp_path):
    """The study issue 12 asks for, end to end through the CLI: two corpora of the same text, one sweep,
    one report on bits per byte."""
    import yaml

    from scaling.cli import main
    from scaling.runs import runs_table

    src = _text_folder(tmp_path / "src", _docs(400, seed=6))
    corpora = [str(tmp_path / "bytes"), str(tmp_path / "bpe")]
    for out, tok in zip(corpora, ("bytes", "bpe:800")):
        assert main(["data", "prepare", src, "--out", out, "--tokenizer", tok, "--val-fraction", "0.1",
                     "--quiet"]) == 0
    spec = tmp_path / "two.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "two-corpora", "method": "grid", "program": "scaling/cli.py",
        "parameters": {"corpus": {"values": corpora}, "d_model": {"values": [16, 32]},
                       "tokens": {"values": [4096, 8192]}, "seq_len": {"value": 32}, "batch_size": {"value": 8},
                       "n_evals": {"value": 2}, "eval_tokens": {"value": 512}, "wandb": {"value": "off"}},
        "command": ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"]}))
    home = str(tmp_path / "runs")
    from scaling.agents import Agent
    from scaling.sweep import create_sweep

    sid = create_sweep(home, str(spec))["sweep_id"]
    assert {r.status for r in Agent(home, sid).run()} == {"complete"}
    table = runs_table(home, sid)
    assert len(table) == 8 and table["eval_bpb"].notna().all()
    on_bytes = table[table["corpus"] == corpora[0]]
    np.testing.assert_allclose(on_bytes["eval_bpb"], on_bytes["loss"] / math.log(2), rtol=1e-12)
    rspec = tmp_path / "report.yaml"
    rspec.write_text("laws: [kaplan-n]\nholdout: none\nbudgets: [1e12]\n")
    out = tmp_path / "report"
    assert main(["--home", home, "report", str(rspec), "--sweep", sid, "--out", str(out), "--bootstrap", "0",
                 "--wandb", "off", "--metric", "bpb"]) == 0
    assert "Loss: final eval loss in bits per byte (eval_bpb)" in (out / "report.md").read_text()
    assert json.loads((out / "fit.json").read_text())["metric"] == "bpb"
