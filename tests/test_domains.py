"""The built-in domains (`scaling data prepare domain:python|prose|c`): each holds its kind of text, code
domains stay under their cap, and one tokenizer trained on all three prepares each of them."""
import ast
import os
import re

import pytest

from scaling import domains
from scaling.cli import main
from scaling.mixture import tokenizer_of
from scaling.prepare import prepare
from scaling.sources import find_source


def _documents(spec: str, n: int) -> list[str]:
    out = []
    for doc in find_source(spec).documents():
        out.append(doc)
        if len(out) == n:
            break
    return out


def test_each_domain_holds_its_kind_of_text():
    python = _documents("domain:python", 20)
    assert all(isinstance(ast.parse(doc), ast.Module) for doc in python)  # the stdlib's sources parse
    headers = _documents("domain:c", 20)
    assert all(re.search(r"^\s*#\s*(define|include|ifndef|if|pragma)\b", doc, re.M) for doc in headers)
    prose = _documents("domain:prose", 40)
    words = [w.lower() for doc in prose for w in re.findall(r"[A-Za-z]+", doc)]
    assert words.count("the") / len(words) > 0.03  # English: "the" is about 5% of its words
    code_marks = sum(doc.count(c) for doc in prose for c in ";{}") / sum(len(d) for d in prose)
    assert code_marks < 0.01
    assert all(len(doc) < 3 * domains.PROSE_DOC_CHARS for doc in prose)  # cut at paragraphs
    every = list(find_source("domain:prose").documents())
    assert not any(re.search(r"^(Metadata-Version|Requires-Dist): ", doc, re.M) for doc in every)  # bodies only


def test_code_domains_stay_under_their_cap_and_are_the_same_files_each_time():
    for name in ("python", "c"):
        files = domains.files(name)
        assert 0 < sum(os.path.getsize(p) for p in files) <= domains.CAP_BYTES
        assert files == domains.files(name)
    assert not any("/c++/" in p for p in domains.files("c"))


def test_joined_domains_are_the_domains_one_after_the_other():
    assert domains.parse("domain:python+prose+c") == ("python", "prose", "c")
    assert len(find_source("domain:python+c").paths) == len(domains.files("python")) + len(domains.files("c"))


@pytest.mark.parametrize("spec, message", [
    ("domain:java", "unknown domain 'java'"),
    ("domain:python+python", "named twice"),
])
def test_an_unknown_domain_is_one_line_and_exit_2(tmp_path, capsys, spec, message):
    assert main(["data", "prepare", spec, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not os.path.exists(tmp_path / "x")


def test_one_tokenizer_trained_on_all_three_prepares_each_for_a_mixture(tmp_path, monkeypatch):
    monkeypatch.setattr(domains, "CAP_BYTES", 150_000)  # small domains: a quick test
    monkeypatch.setattr(domains, "_metadata_files", lambda: [])
    everything = str(tmp_path / "all")
    prepare("domain:python+prose+c", everything, tokenizer="bpe:600", val_fraction=0.1)
    tokenizer = os.path.join(everything, "tokenizer.json")
    made = {}
    for name in domains.NAMES:
        made[name] = str(tmp_path / name)
        meta = prepare(f"domain:{name}", made[name], tokenizer=tokenizer, val_fraction=0.1)
        assert meta["tokenizer"]["vocab_size"] == 600
    assert len({tokenizer_of(path) for path in made.values()}) == 1
