"""Checks of a prepared corpus folder (`scaling data prepare`) before a run trusts it.

On every open, cheap ones: meta.json names both splits and neither is empty, each .bin file is the size
meta.json records, the unigram counts cover the vocabulary and sum to the train tokens. On a corpus's
first use on a machine, the whole read: each .bin against the sha256 meta.json records, the fingerprint
against those hashes, and every token id below the vocabulary size. That verdict is cached by the
identity of the folder's files (path, size, mtime_ns, inode), in the folder when it is writable, else
in the user's cache folder: a file changed since (or copied to another machine) is read again.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from scaling.errors import UsageError

FORMAT = "scaling-corpus-v1"
SPLITS = ("train", "val")
CACHE_FILE = ".verified.json"
_KEEP = 64  # verdicts kept per cache file
_READ = 1 << 24  # bytes per read of the hash pass


def fingerprint(tokenizer_hash: str, train_sha256: str, val_sha256: str) -> str:
    """The corpus fingerprint runs record: the tokenizer and both splits' tokens."""
    return hashlib.sha256(f"{FORMAT}:{tokenizer_hash}:{train_sha256}:{val_sha256}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Split:
    documents: int
    tokens: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class PreparedMeta:
    dtype: np.dtype
    vocab_size: int
    tokenizer_kind: str
    fingerprint: str
    splits: dict[str, Split]
    unigram_counts: np.ndarray


def read_meta(path: str) -> PreparedMeta:
    """meta.json of the corpus folder `path`, after the checks that cost no read of the token files."""
    where = f"corpus={path!r}"
    try:
        with open(os.path.join(path, "meta.json")) as fh:
            meta = json.load(fh)
        dtype, vocab = np.dtype(meta["dtype"]), int(meta["tokenizer"]["vocab_size"])
        kind, fp, splits = str(meta["tokenizer"]["kind"]), str(meta["fingerprint"]), meta["splits"]
        counts = np.asarray(meta["unigram_counts"], dtype=np.int64)
        missing = [name for name in SPLITS if name not in splits]
        if missing:
            raise UsageError(f"{where}: meta.json has no {missing[0]} split; prepare the corpus again")
        parsed = {name: Split(int(splits[name]["documents"]), int(splits[name]["tokens"]),
                              int(splits[name]["bytes"]), str(splits[name]["sha256"])) for name in SPLITS}
    except UsageError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{where}: meta.json is not a prepared corpus's ({err!r})") from None
    if dtype not in (np.uint16, np.uint32) or vocab < 1:
        raise UsageError(f"{where}: meta.json records dtype {dtype} and vocabulary {vocab}; prepare the corpus again")
    for name, split in parsed.items():
        if split.tokens <= 0 or split.bytes <= 0:
            raise UsageError(f"{where}: meta.json's {name} split is empty ({split.tokens} tokens); prepare the "
                             "corpus again with more documents or another --val-fraction")
        file = os.path.join(path, f"{name}.bin")
        if not os.path.isfile(file) or os.path.getsize(file) != split.tokens * dtype.itemsize:
            raise UsageError(f"{where}: {name}.bin is missing or not the size meta.json records; "
                             "prepare the corpus again")
    if counts.shape != (vocab,) or counts.min() < 0 or counts.sum() != parsed["train"].tokens:
        raise UsageError(f"{where}: meta.json's unigram counts ({counts.size} of them, summing to {counts.sum()}) "
                         f"do not cover the vocabulary of {vocab} and the {parsed['train'].tokens} train tokens; "
                         "prepare the corpus again")
    return PreparedMeta(dtype, vocab, kind, fp, parsed, counts)


def verify(path: str, meta: PreparedMeta) -> None:
    """Read the token files whole, once per machine (see the module's docstring); a mismatch is a UsageError."""
    key = _identity(path)
    if any(key in _cached(file) for file in _cache_files(path)):
        return
    where = f"corpus={path!r}"
    digests = {}
    for name, split in meta.splits.items():
        digest, top = _hash_and_max(os.path.join(path, f"{name}.bin"), meta.dtype)
        if digest != split.sha256:
            raise UsageError(f"{where}: {name}.bin does not match the sha256 in meta.json (damaged or changed "
                             "since it was prepared); prepare the corpus again")
        if top >= meta.vocab_size:
            raise UsageError(f"{where}: {name}.bin holds token id {top}, not below the vocabulary size "
                             f"{meta.vocab_size} in meta.json; prepare the corpus again")
        digests[name] = digest
    tokenizer = os.path.join(path, "tokenizer.json")
    if meta.tokenizer_kind == "bytes":
        tok_hash = "bytes"
    else:
        try:
            with open(tokenizer, "rb") as fh:
                tok_hash = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as err:
            raise UsageError(f"{where}: cannot read its tokenizer.json ({err.strerror})") from None
    if fingerprint(tok_hash, digests["train"], digests["val"]) != meta.fingerprint:
        raise UsageError(f"{where}: the fingerprint in meta.json is not that of its tokenizer and token files; "
                         "prepare the corpus again")
    for file in _cache_files(path):
        if _remember(file, key):
            return


def _hash_and_max(file: str, dtype: np.dtype) -> tuple[str, int]:
    digest, top = hashlib.sha256(), -1
    with open(file, "rb") as fh:
        while chunk := fh.read(_READ - _READ % dtype.itemsize):
            digest.update(chunk)
            top = max(top, int(np.frombuffer(chunk, dtype=dtype).max()))
    return digest.hexdigest(), top


def _identity(path: str) -> str:
    parts = []
    for name in ("meta.json", "train.bin", "val.bin", "tokenizer.json"):
        file = os.path.realpath(os.path.join(path, name))
        try:
            st = os.stat(file)
        except FileNotFoundError:
            continue
        parts.append(f"{file}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _cache_files(path: str) -> list[str]:
    user = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [os.path.join(path, CACHE_FILE), os.path.join(user, "scaling", "verified-corpora.json")]


def _cached(file: str) -> list[str]:
    try:
        with open(file) as fh:
            keys = json.load(fh)["verified"]
        return keys if isinstance(keys, list) else []
    except (OSError, ValueError, KeyError, TypeError):
        return []  # no cache, or a damaged one: the corpus is read again, which is only slower


def _remember(file: str, key: str) -> bool:
    """Add `key` to the cache `file` (atomically); False when it cannot be written there."""
    keys = [k for k in _cached(file) if k != key][-(_KEEP - 1):] + [key]
    tmp = f"{file}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(file), exist_ok=True)
        with open(tmp, "w") as fh:
            json.dump({"verified": keys}, fh)
        os.replace(tmp, file)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
