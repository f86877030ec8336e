"""Issue 23 items 2, 3 and 5 and its corpus cases: `data prepare` never removes a folder it did not make,
refuses a second prepare into one --out, survives a full disk in one line, names a bad JSON Lines
record, prepares records of several MB, counts the bytes it could not decode and refuses binary files;
a damaged or inconsistent prepared corpus is refused in one line before a run trains on it."""
import errno
import hashlib
import json
import os
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from faultlib import ROOT, env, tree

from scaling import corpus_check, data
from scaling import prepare as prep
from scaling.cli import main
from scaling.errors import UsageError

WORDS = "the of and to in a is that for it as with was on be by this are from or at an which".split()


def _docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 200))) + "\n" for _ in range(n)]


def _folder(path, docs) -> str:
    os.makedirs(path)
    for i, doc in enumerate(docs):
        (path / f"d{i:03d}.txt").write_text(doc)
    return str(path)


def _cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaling.cli", *args], capture_output=True, text=True, env=env(),
                          cwd=ROOT, timeout=timeout)


def _one_line(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr


def _refused_in_process(capsys, args: list[str], message: str) -> None:
    """`_one_line` without a process of its own (a second or so each): for the cases that vary the input
    rather than the CLI's process."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err


# ---- item 2: the staging folder ----------------------------------------------------------------------
def test_prepare_never_removes_a_folder_named_out_partial_that_it_did_not_make(tmp_path):
    src = _folder(tmp_path / "src", _docs(20))
    mine = tmp_path / "corpus.partial"
    os.makedirs(mine)
    for i in range(30):
        (mine / f"notes{i}.txt").write_text(f"my own file {i}\n")
    before = tree(tmp_path)
    _one_line(_cli("data", "prepare", src, "--out", str(tmp_path / "corpus"), "--quiet"),
              "is not a staging folder of `scaling data prepare`")
    assert tree(tmp_path) == before
    # a source named X.partial, prepared into X: the same refusal, and the source intact
    _one_line(_cli("data", "prepare", str(mine), "--out", str(tmp_path / "corpus"), "--quiet"), "not a staging folder")
    assert tree(tmp_path) == before


def test_a_staging_folder_left_by_a_dead_prepare_is_removed_and_the_prepare_completes(tmp_path):
    src = _folder(tmp_path / "src", _docs(40))
    stale = tmp_path / "corpus.partial"
    os.makedirs(stale)
    (stale / prep.MARKER).write_text("12345\n")  # its writer is gone: nothing holds the lock
    (stale / "train.bin").write_bytes(b"\1" * 1000)
    meta = prep.prepare(src, str(tmp_path / "corpus"), val_fraction=0.2)
    assert sorted(os.listdir(tmp_path)) == ["corpus", "src"]
    assert sorted(os.listdir(tmp_path / "corpus")) == ["meta.json", "train.bin", "val.bin"]
    assert data.load_corpus(str(tmp_path / "corpus")).fingerprint == meta["fingerprint"]


def test_a_second_prepare_into_one_out_is_refused_while_the_first_writes(tmp_path, monkeypatch):
    src = _folder(tmp_path / "src", _docs(60))
    out = str(tmp_path / "corpus")
    monkeypatch.setattr(prep, "CHUNK_BYTES", 2000)  # several chunks: the second prepare starts mid-way
    seconds = []

    def second(done, total):
        if not seconds:
            seconds.append(_cli("data", "prepare", src, "--out", out, "--quiet"))
            with pytest.raises(UsageError, match="another `scaling data prepare` is writing it"):
                prep.prepare(src, out)

    meta = prep.prepare(src, out, val_fraction=0.2, on_progress=second)
    _one_line(seconds[0], "another `scaling data prepare` is writing it")
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == 60  # the first is whole
    assert not os.path.exists(out + ".partial") and data.load_corpus(out).fingerprint == meta["fingerprint"]


# ---- a full disk ---------------------------------------------------------------------------------------
def test_a_full_disk_during_prepare_is_one_line_and_leaves_no_staging_folder(tmp_path, monkeypatch, capsys):
    src = _folder(tmp_path / "src", _docs(60))
    write = prep._Split.write

    def fill_up(self, docs, n_bytes):
        write(self, docs, n_bytes)  # some tokens reach the disk, then it is full
        self.fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(prep._Split, "write", fill_up)
    assert main(["data", "prepare", src, "--out", str(tmp_path / "corpus"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no space left on device" in err and "nothing was kept" in err, err
    assert sorted(os.listdir(tmp_path)) == ["src"]


@pytest.fixture
def small_disk(tmp_path):
    from faultlib import tmpfs

    with tmpfs(tmp_path / "disk", "256k") as disk:
        yield disk


def test_a_really_full_disk_is_one_line_and_frees_what_the_prepare_wrote(tmp_path, small_disk):
    src = _folder(tmp_path / "src", _docs(400))  # ~0.5 MB of tokens for a 256 kB disk
    done = _cli("data", "prepare", src, "--out", os.path.join(small_disk, "corpus"))
    _one_line(done, "no space left on device")
    assert os.listdir(small_disk) == []


# ---- JSON Lines ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,kind", [(7, "a number"), (2.5, "a number"), ([1, 2], "a list"),
                                        ({"a": "b"}, "an object"), (True, "a boolean")])
def test_a_jsonl_text_field_that_is_not_a_string_is_named_by_file_line_and_field(tmp_path, value, kind, capsys):
    def one_line(path, message):  # in-process: the CLI's own process is checked by the tests above
        _refused_in_process(capsys, ["data", "prepare", str(path), "--out", str(tmp_path / "out"), "--quiet"], message)

    lines = [json.dumps({"text": d}) for d in _docs(5)]
    lines.insert(3, json.dumps({"text": value}))
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    one_line(tmp_path / "a.jsonl", f"a.jsonl:4: field 'text' is {kind}, not a string")
    # a whole column of numbers too (pyarrow reads it without complaint, as int64)
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"text": value}) + "\n" for _ in range(3)))
    one_line(tmp_path / "b.jsonl", f"b.jsonl:1: field 'text' is {kind}, not a string")
    assert sorted(os.listdir(tmp_path)) == ["a.jsonl", "b.jsonl"]


def test_a_json_file_that_is_not_json_lines_and_a_parquet_column_that_is_not_text_are_one_line(tmp_path):
    (tmp_path / "array.json").write_text(json.dumps([{"text": d} for d in _docs(3)]))
    with pytest.raises(UsageError, match=r"array.json:1: a list, not a JSON object"):
        prep.prepare(str(tmp_path / "array.json"), str(tmp_path / "out"))
    pd.DataFrame({"text": [1, 2, 3]}).to_parquet(tmp_path / "n.parquet")
    with pytest.raises(UsageError, match=r"n.parquet: field 'text' holds int64, not text"):
        prep.prepare(str(tmp_path / "n.parquet"), str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["array.json", "n.parquet"]


def test_a_jsonl_record_of_several_megabytes_is_prepared_like_the_same_documents_in_parquet(tmp_path):
    docs = _docs(3000, seed=1)  # ~2 MB before the big record: pyarrow has yielded batches when it fails
    docs.insert(2900, " ".join(_docs(1, seed=2)) * 30000)  # one record of ~4 MB
    rows = [json.dumps({"text": d}) for d in docs]
    rows.insert(10, "")  # a blank line is no record, for pyarrow and for the line reader
    (tmp_path / "big.jsonl").write_text("\n".join(rows) + "\n")
    assert max(len(r) for r in rows) > 3_000_000
    pd.DataFrame({"text": docs}).to_parquet(tmp_path / "same.parquet")
    a = prep.prepare(str(tmp_path / "big.jsonl"), str(tmp_path / "a"), val_fraction=0.1)
    b = prep.prepare(str(tmp_path / "same.parquet"), str(tmp_path / "b"), val_fraction=0.1)
    assert a["fingerprint"] == b["fingerprint"]
    assert a["splits"]["train"]["documents"] + a["splits"]["val"]["documents"] == len(docs)


# ---- item 5: decoding ------------------------------------------------------------------------------------
def test_latin1_text_is_counted_as_replaced_bytes_and_prepared_exactly_with_its_encoding(tmp_path):
    docs = [d.replace("the", "thé").replace("and", "ünd") for d in _docs(30, seed=3)]
    src = tmp_path / "src"
    os.makedirs(src)
    for i, doc in enumerate(docs):
        (src / f"d{i:02d}.txt").write_bytes(doc.encode("latin-1"))
    high = sum(sum(b >= 0x80 for b in d.encode("latin-1")) for d in docs)
    assert high > 0
    done = _cli("data", "prepare", str(src), "--out", str(tmp_path / "utf8"), "--quiet", "--val-fraction", "0.2")
    assert done.returncode == 0, done.stderr
    decoding = json.load(open(tmp_path / "utf8" / "meta.json"))["decoding"]
    assert decoding["replaced_bytes"] == high and decoding["files"] == 30 and decoding["encoding"] == "utf-8"
    assert f"warning: {high:,} bytes in 30 files were not valid utf-8" in done.stderr
    done = _cli("data", "prepare", str(src), "--out", str(tmp_path / "latin"), "--quiet", "--val-fraction", "0.2",
                "--encoding", "latin-1")
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    meta = json.load(open(tmp_path / "latin" / "meta.json"))
    assert meta["decoding"]["replaced_bytes"] == 0
    text = b"".join((tmp_path / "latin" / f"{s}.bin").read_bytes()[::2] for s in ("train", "val")).decode()
    assert sorted(text.splitlines()) == sorted(d.rstrip("\n") for d in docs)  # é and ü, not U+FFFD


def test_a_binary_file_without_nul_bytes_is_refused_by_name(tmp_path, capsys):
    src = _folder(tmp_path / "src", _docs(5))
    rng = np.random.default_rng(0)
    (tmp_path / "src" / "blob.dat").write_bytes(rng.integers(1, 256, 20_000, dtype=np.uint8).tobytes())
    _one_line(_cli("data", "prepare", src, "--out", str(tmp_path / "out"), "--quiet"), "blob.dat: looks binary")
    prepare = ["data", "prepare", src, "--out", str(tmp_path / "out")]
    _refused_in_process(capsys, [*prepare, "--quiet", "--encoding", "latin-1"], "blob.dat: looks binary")
    _refused_in_process(capsys, [*prepare, "--encoding", "klingon"], "no such encoding")
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_a_refused_prepare_draws_no_progress_bar_before_its_line(tmp_path):
    src = _folder(tmp_path / "src", _docs(5))
    for args in (["--tokenizer", "nope.json"], ["--val-fraction", "0.0001"]):
        done = _cli("data", "prepare", src, "--out", str(tmp_path / "out"), *args)
        assert done.returncode == 2 and "tokenizing" not in done.stderr and len(done.stderr.splitlines()) == 1, \
            done.stderr


# ---- item 3: a damaged prepared corpus -----------------------------------------------------------------
@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data.load_corpus.cache_clear()
    out = str(tmp_path / "corpus")
    prep.prepare(_folder(tmp_path / "src", _docs(120, seed=4)), out, val_fraction=0.2)
    yield out
    data.load_corpus.cache_clear()


def _meta(out):
    return json.load(open(os.path.join(out, "meta.json")))


def _rewrite(out, **changes):
    meta = {**_meta(out), **changes}
    with open(os.path.join(out, "meta.json"), "w") as fh:
        json.dump(meta, fh)


def _refused(out, message):
    data.load_corpus.cache_clear()
    with pytest.raises(UsageError, match=message):
        data.load_corpus(out)


def _train_refused(corpus, tmp_path, capsys, message):
    """`scaling train corpus=DIR` on it: exit 2, one line, and no run directory."""
    data.load_corpus.cache_clear()
    home = str(tmp_path / "runs")
    assert main(["--home", home, "train", f"corpus={corpus}", "d_model=16", "seq_len=32", "batch_size=4",
                 "tokens=2000", "wandb=off", "run_id=r", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert not os.path.exists(os.path.join(home, "r"))


def test_a_train_split_with_a_third_zeroed_is_refused_and_a_run_on_it_is_one_line(corpus, tmp_path, capsys):
    path = os.path.join(corpus, "train.bin")
    tokens = np.fromfile(path, dtype=np.uint16)
    tokens[: len(tokens) * 3 // 10] = 0
    tokens.tofile(path)
    _refused(corpus, "train.bin does not match the sha256 in meta.json")
    _train_refused(corpus, tmp_path, capsys, "train.bin does not match the sha256")


def test_token_ids_past_the_vocabulary_are_a_corpus_error_not_a_diverged_run(corpus):
    path = os.path.join(corpus, "train.bin")
    tokens = np.fromfile(path, dtype=np.uint16)
    tokens[5] = 300  # a tokenizer that wrote past its vocabulary of 256, hashes and all
    tokens.tofile(path)
    meta = _meta(corpus)
    meta["splits"]["train"]["sha256"] = hashlib.sha256(tokens.tobytes()).hexdigest()
    fp = corpus_check.fingerprint("bytes", meta["splits"]["train"]["sha256"], meta["splits"]["val"]["sha256"])
    _rewrite(corpus, splits=meta["splits"], fingerprint=fp)
    _refused(corpus, "train.bin holds token id 300, not below the vocabulary size 256")


def test_an_edited_fingerprint_is_refused(corpus):
    _rewrite(corpus, fingerprint="0123456789abcdef")
    _refused(corpus, "fingerprint in meta.json is not that of its tokenizer and token files")


@pytest.mark.parametrize("edit,message", [
    (lambda m: {"unigram_counts": m["unigram_counts"][:200]}, "unigram counts .200 of them"),
    (lambda m: {"unigram_counts": [c * 2 for c in m["unigram_counts"]]}, "unigram counts"),
    (lambda m: {"splits": {"train": m["splits"]["train"]}}, "meta.json has no val split"),
    (lambda m: {"splits": {k: v for k, v in m["splits"].items() if k != "train"}}, "meta.json has no train split"),
    (lambda m: {"splits": {**m["splits"], "val": {**m["splits"]["val"], "tokens": 0, "bytes": 0}}},
     "meta.json's val split is empty"),
    (lambda m: {"splits": 5}, "meta.json is not a prepared corpus's"),
])
def test_an_inconsistent_meta_json_is_a_one_line_corpus_error(corpus, tmp_path, capsys, edit, message):
    _rewrite(corpus, **edit(_meta(corpus)))
    _refused(corpus, message)
    _train_refused(corpus, tmp_path, capsys, f"corpus={corpus!r}")


def test_the_hash_verdict_is_cached_by_file_identity_and_a_changed_file_is_read_again(corpus, monkeypatch):
    data.load_corpus(corpus)  # the first use hashes
    assert os.path.isfile(os.path.join(corpus, corpus_check.CACHE_FILE))
    reads = []
    hash_and_max = corpus_check._hash_and_max
    monkeypatch.setattr(corpus_check, "_hash_and_max", lambda *a: reads.append(a) or hash_and_max(*a))
    data.load_corpus.cache_clear()
    data.load_corpus(corpus)
    assert reads == []  # the second use does not read the token files
    path = os.path.join(corpus, "val.bin")
    tokens = np.fromfile(path, dtype=np.uint16)
    tokens[0] ^= 1  # the same size: only the hash can tell
    tokens.tofile(path)
    _refused(corpus, "val.bin does not match the sha256")


def test_the_verdict_goes_to_the_user_cache_when_the_corpus_folder_cannot_take_it(corpus, tmp_path, monkeypatch):
    os.makedirs(os.path.join(corpus, corpus_check.CACHE_FILE))  # no file can be written in its place (even by root)
    data.load_corpus(corpus)
    user = tmp_path / "cache" / "scaling" / "verified-corpora.json"
    assert len(json.loads(user.read_text())["verified"]) == 1
    monkeypatch.setattr(corpus_check, "_hash_and_max", lambda *a: pytest.fail("hashed again"))
    data.load_corpus.cache_clear()
    assert data.load_corpus(corpus).vocab_size == 256
