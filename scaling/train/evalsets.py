"""Evaluation sets besides the training corpus's own validation split: `eval=NAME:DIR,NAME:DIR`
(docs/contracts.md "Config keys").

A DIR is a prepared corpus (`scaling data prepare`; its validation split is evaluated) or a folder of
text files (all of it is evaluated, tokenized here with the training corpus's tokenizer). A prepared set
must have been tokenized by the training corpus's tokenizer: the identity compared is the one the
corpus fingerprint is made of (`bytes`, or the sha256 of tokenizer.json), so a loss on another
vocabulary is never recorded under the run's name. Each set yields `eval/<name>/loss` (nats/token) and
`eval/<name>/bpb` (bits per byte) at every evaluation point.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scaling import data as data_lib
from scaling.corpus_check import read_meta
from scaling.errors import UsageError
from scaling.sources import find_source

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Tokenizer:
    """A corpus's tokenizer: `hash` is its identity ("bytes", or tokenizer.json's sha256)."""

    hash: str
    kind: str  # "bytes" or "bpe"
    file: str | None = None  # tokenizer.json, for BPE

    def describe(self) -> str:
        return "bytes" if self.kind == "bytes" else f"BPE {self.hash[:12]} ({self.file})"

    @functools.cached_property
    def _hf(self):
        try:
            import tokenizers
        except ImportError:
            raise UsageError("BPE tokenizers need the data extra: pip install 'scaling-workbench[data]'") from None
        return tokenizers.Tokenizer.from_file(self.file)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text` as it stands: no end-of-text token, no newline added."""
        if self.kind == "bytes":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        return np.asarray(self._hf.encode(text, add_special_tokens=False).ids, dtype=np.int64)


def corpus_tokenizer(corpus: data_lib.Corpus) -> Tokenizer | None:
    """The tokenizer of a loaded corpus: a prepared folder's, bytes for text read directly (stdlib, DIR,
    GLOB), None when unknown (a bare token file, the synthetic chain). A mixture's domains share one
    tokenizer (scaling/mixture.py refuses others), so its first domain's is the mixture's."""
    if corpus.mix is not None:
        return corpus_tokenizer(corpus.mix.parts[0])
    if os.path.isfile(os.path.join(corpus.name, "meta.json")):
        return folder_tokenizer(corpus.name)
    if corpus.vocab_size == 256 and corpus.bytes_per_token == 1.0:
        return Tokenizer("bytes", "bytes")
    return None


def folder_tokenizer(path: str) -> Tokenizer:
    meta = read_meta(path)
    if meta.tokenizer_kind == "bytes":
        return Tokenizer("bytes", "bytes")
    file = os.path.join(path, "tokenizer.json")
    try:
        with open(file, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as err:
        raise UsageError(f"corpus={path!r}: cannot read its tokenizer.json ({err.strerror})") from None
    return Tokenizer(digest, meta.tokenizer_kind, file)


@dataclass(frozen=True)
class EvalSet:
    name: str
    source: str  # the DIR as given
    corpus: data_lib.Corpus  # its evaluated tokens are `corpus.val`

    @property
    def keys(self) -> tuple[str, str]:
        return f"eval/{self.name}/loss", f"eval/{self.name}/bpb"


def parse_eval(spec: str | None, key: str = "eval") -> list[tuple[str, str]]:
    """[(NAME, DIR), ...] from `NAME:DIR,NAME:DIR`; a malformed or repeated name is one line."""
    if not spec:
        return []
    pairs = []
    for part in (p.strip() for p in spec.split(",")):
        name, sep, path = part.partition(":")
        if not sep or not path.strip() or not NAME.fullmatch(name.strip()):
            raise UsageError(f"{key}={spec}: expected NAME:DIR[,NAME:DIR...] with names of letters, digits, "
                             f"'-', '_', '.' (got {part!r})")
        pairs.append((name.strip(), path.strip()))
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise UsageError(f"{key}={spec}: the name {next(n for n in names if names.count(n) > 1)!r} is given twice")
    return pairs


def load_eval_sets(spec: str | None, train: data_lib.Corpus, seq_len: int, key: str = "eval") -> tuple[EvalSet, ...]:
    """The sets `spec` names, checked against the training corpus; every refusal is one line."""
    return tuple(load_eval_set(name, path, train, seq_len, key) for name, path in parse_eval(spec, key))


def load_eval_set(name: str, path: str, train: data_lib.Corpus, seq_len: int, key: str = "eval") -> EvalSet:
    where = f"{key}={name}:{path}"
    ours = corpus_tokenizer(train)
    if ours is None:
        raise UsageError(f"{where}: the training corpus {train.name!r} records no tokenizer (a token file or the "
                         "synthetic chain); evaluation sets need a prepared corpus or text")
    if os.path.isfile(os.path.join(path, "meta.json")):
        theirs = folder_tokenizer(path)
        if theirs.hash != ours.hash:
            raise UsageError(f"{where}: tokenized by another tokenizer ({theirs.describe()}) than the training "
                             f"corpus ({ours.describe()}); prepare it with --tokenizer "
                             f"{ours.file or 'bytes'}")
        corpus = data_lib.load_corpus(path)
    elif os.path.isdir(path):
        corpus = _text_folder(os.path.abspath(path), ours)
    else:
        raise UsageError(f"{where}: no such folder (a prepared corpus or a folder of text files)")
    if len(corpus.val) < seq_len + 1:
        raise UsageError(f"{where}: {len(corpus.val)} tokens to evaluate, fewer than one sequence of {seq_len + 1}")
    return EvalSet(name, path, corpus)


@functools.lru_cache(maxsize=8)
def _text_folder(path: str, tok: Tokenizer) -> data_lib.Corpus:
    """Every text file of the folder, tokenized as `scaling data prepare` would with the training corpus's
    tokenizer (a newline closes each byte document, an end-of-text token each BPE one)."""
    from scaling.prepare import ByteTokens, HFTokens

    encoder = ByteTokens() if tok.kind == "bytes" else HFTokens(tok._hf, tok.file)
    docs = list(find_source(path).documents())
    ids = encoder.encode(docs)
    n_bytes = sum(len(i) for i in ids) if tok.kind == "bytes" else sum(len(d.encode("utf-8")) for d in docs)
    tokens = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    tokens = tokens.astype(np.uint16 if encoder.vocab_size <= 1 << 16 else np.uint32)
    fp = hashlib.sha256(f"evalset-v1:{tok.hash}:".encode() + tokens.tobytes()).hexdigest()[:16]
    return data_lib.Corpus(path, tokens[:0], tokens, encoder.vocab_size, fp, n_files=len(docs),
                           bytes_per_token=n_bytes / max(1, len(tokens)))


def set_metrics(sets: tuple[EvalSet, ...], mean_loss: Callable[[data_lib.Corpus], float]) -> dict[str, float | None]:
    """{eval/<name>/loss, eval/<name>/bpb} for each set, `mean_loss(corpus)` being the loss over its
    fixed validation batches (data.eval_batches)."""
    out: dict[str, float | None] = {}
    for s in sets:
        loss = mean_loss(s.corpus)
        out[s.keys[0]] = loss
        out[s.keys[1]] = s.corpus.bits_per_byte(loss) if math.isfinite(loss) else None
    return out
