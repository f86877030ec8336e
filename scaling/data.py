"""Corpora and tokens. Every corpus is a pair of 1-D token arrays (train, validation) plus a fingerprint.

The batch for step s is a pure function of (seed, step): the train tokens are cut into non-overlapping
windows of seq_len + 1; epoch e visits them in a permutation seeded by (seed, e), offset by an
epoch-dependent shift so repeated epochs see new window boundaries. Resuming needs no loader state,
and no window repeats before the whole corpus has been seen once.

Corpus specs (`corpus=`):
- `stdlib`        the running Python's standard library sources (*.py; no tests, no site-packages),
                  byte tokens (vocab 256), validation = files whose path hash falls in the val fraction;
- `DIR` or `GLOB` text files, byte tokens, split by file hash the same way;
- `FILE.bin`      uint16 token memmap (nanoGPT style); validation = the last `val_fraction` of it;
- `DIR` with a meta.json: a corpus written by `scaling data prepare` (train.bin, val.bin, tokenizer);
- `synthetic[:V[:SEED]]` a stationary order-1 Markov chain with a known entropy rate (for tests);
- `mix`           several of the above weighed by the config's `mixture` (scaling/mixture.py builds it:
                  its `mix` draws the windows, so the functions below hand a mixture's batches to it).
"""
from __future__ import annotations

import functools
import glob
import hashlib
import math
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from scaling.corpus_check import read_meta, verify
from scaling.errors import UsageError

VAL_FRACTION = 0.02
_EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


class MixSource(Protocol):
    """What a mixture corpus draws its windows with (scaling/mixture.py): the same three questions the
    functions below answer for a single corpus."""

    def windows_per_epoch(self, seq_len: int) -> int: ...

    def batch_windows(self, seed: int, step: int, batch_size: int, seq_len: int, rows: slice) -> np.ndarray: ...

    def eval_batches(self, n_tokens: int, batch_size: int, seq_len: int) -> Iterator: ...

    def describe(self) -> dict: ...


@dataclass(frozen=True)
class Corpus:
    name: str
    train: np.ndarray = field(repr=False)
    val: np.ndarray = field(repr=False)
    vocab_size: int
    fingerprint: str
    n_files: int = 0
    entropy_rate: float | None = None  # nats/token, known only for synthetic corpora
    # Bytes of validation text per validation token, for bits per byte (None when the text is unknown,
    # as for a bare token file or the synthetic chain).
    bytes_per_token: float | None = None
    unigram_counts: np.ndarray | None = field(default=None, repr=False)  # stored by `data prepare`
    mix: MixSource | None = field(default=None, repr=False)  # corpus=mix: its domains and weights

    @functools.cached_property
    def unigram_entropy(self) -> float:
        """Entropy (nats) of the train split's token frequencies: the loss of a model that ignores context."""
        counts = self.unigram_counts
        if counts is None:  # counted in slices: bincount of a whole large memmap would make int64 copies of it
            counts = np.zeros(self.vocab_size, dtype=np.int64)
            for lo in range(0, len(self.train), 1 << 24):
                counts += np.bincount(np.asarray(self.train[lo:lo + (1 << 24)]), minlength=self.vocab_size)
        counts = np.asarray(counts, dtype=np.float64)
        p = counts[counts > 0] / counts.sum()
        return float(-(p * np.log(p)).sum())

    def bits_per_byte(self, loss: float | None) -> float | None:
        """A validation loss in nats/token as bits per byte of text: comparable across tokenizers."""
        if loss is None or self.bytes_per_token is None or not math.isfinite(loss):
            return None
        return loss / (math.log(2) * self.bytes_per_token)

    def describe(self) -> dict:
        return {
            "corpus": self.name, "corpus_fingerprint": self.fingerprint, "vocab_size": self.vocab_size,
            "train_tokens": int(len(self.train)), "val_tokens": int(len(self.val)), "files": self.n_files,
            **(self.mix.describe() if self.mix is not None else {}),
        }


# ---- loading -------------------------------------------------------------------------------------
def _is_val(relpath: str, val_fraction: float) -> bool:
    digest = hashlib.sha256(relpath.encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < val_fraction


def doc_is_val(text: str, val_fraction: float) -> bool:
    """Whether a document belongs to the validation split: by a hash of its text, so the split is the
    same whatever order or file the documents come in, and duplicates land on the same side."""
    return _is_val(text, val_fraction)


def _byte_corpus(name: str, root: str, paths: list[str], val_fraction: float) -> Corpus:
    """Byte-level tokens from text files; each file ends with a newline so files never run together."""
    if not paths:
        raise UsageError(f"corpus={name!r}: no text files found")
    hasher = hashlib.sha256(b"bytes-v1")
    train_parts, val_parts = [], []
    for path in sorted(paths):
        rel = os.path.relpath(path, root)
        with open(path, "rb") as fh:
            data = fh.read()
        if not data.endswith(b"\n"):
            data += b"\n"
        hasher.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        (val_parts if _is_val(rel, val_fraction) else train_parts).append(data)
    if not val_parts or not train_parts:  # too few files to split by file: split the bytes instead
        blob = b"".join(train_parts + val_parts)
        cut = int(len(blob) * (1 - val_fraction))
        train_parts, val_parts = [blob[:cut]], [blob[cut:]]
    train = np.frombuffer(b"".join(train_parts), dtype=np.uint8)
    val = np.frombuffer(b"".join(val_parts), dtype=np.uint8)
    hasher.update(f"val={val_fraction}".encode())
    return Corpus(name, train, val, 256, hasher.hexdigest()[:16], n_files=len(paths), bytes_per_token=1.0)


def stdlib_files() -> tuple[str, list[str]]:
    root = sysconfig.get_paths()["stdlib"]
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _EXCLUDED_DIRS)
        paths += [os.path.join(dirpath, f) for f in filenames if f.endswith(".py") and not f.startswith("test_")]
    return root, paths


def _synthetic(spec: str, n_tokens: int = 2_000_000) -> Corpus:
    parts = spec.split(":")
    try:
        vocab = int(parts[1]) if len(parts) > 1 else 16
        seed = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise UsageError(f"corpus={spec!r}: expected synthetic[:VOCAB[:SEED]]") from None
    if not 2 <= vocab <= 65536:
        raise UsageError(f"corpus={spec!r}: vocab must be in [2, 65536]")
    rng = np.random.default_rng(seed)
    # Peaked rows (Dirichlet 0.3) give an entropy rate well below log(V), so learning is visible.
    trans = rng.dirichlet(np.full(vocab, 0.3), size=vocab)
    evals, evecs = np.linalg.eig(trans.T)
    stationary = np.real(evecs[:, np.argmin(np.abs(evals - 1))])
    stationary /= stationary.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        row_entropy = -np.nansum(np.where(trans > 0, trans * np.log(trans), 0.0), axis=1)
    entropy_rate = float(stationary @ row_entropy)
    cdf = np.cumsum(trans, axis=1)
    # Many independent chains, each started from the stationary law, advanced together: vectorized,
    # and still stationary everywhere, so the entropy rate holds for the concatenation (up to one
    # boundary token per chain).
    n_chains, length = 1000, -(-n_tokens // 1000)
    states = rng.choice(vocab, size=n_chains, p=stationary)
    chains = np.empty((n_chains, length), dtype=np.uint16)
    for t in range(length):
        chains[:, t] = states
        u = rng.random(n_chains)[:, None]
        states = np.minimum((cdf[states] < u).sum(axis=1), vocab - 1)
    tokens = chains.reshape(-1)[:n_tokens]
    cut = int(n_tokens * (1 - VAL_FRACTION))
    fp = hashlib.sha256(f"synthetic-v1:{vocab}:{seed}:{n_tokens}".encode()).hexdigest()[:16]
    return Corpus(spec, tokens[:cut], tokens[cut:], vocab, fp, entropy_rate=entropy_rate)


def _token_file(path: str, vocab_size: int | None, val_fraction: float) -> Corpus:
    try:
        tokens = np.memmap(path, dtype=np.uint16, mode="r")
    except (OSError, ValueError) as err:
        raise UsageError(f"corpus={path!r}: cannot read as uint16 tokens ({err})") from None
    if len(tokens) < 1024:
        raise UsageError(f"corpus={path!r}: only {len(tokens)} tokens")
    top = int(tokens.max()) + 1
    if vocab_size is None:
        vocab_size = -(-top // 64) * 64  # round up to a multiple of 64 for the embedding matmul
    elif top > vocab_size:
        raise UsageError(f"corpus={path!r} holds token id {top - 1} >= vocab_size={vocab_size}")
    # The whole file is hashed (tokens.max() above has read it all anyway): a file edited anywhere must
    # not keep its fingerprint, or its runs would pass as comparable with the old ones.
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    fp = hashlib.sha256(f"bin-v2:{digest}:val={val_fraction}".encode()).hexdigest()[:16]
    cut = int(len(tokens) * (1 - val_fraction))
    return Corpus(path, tokens[:cut], tokens[cut:], vocab_size, fp)


def _prepared(path: str) -> Corpus:
    """A corpus directory written by `scaling data prepare` (see scaling/prepare.py for its layout), after
    the checks of scaling/corpus_check.py: a damaged or inconsistent one is a UsageError, not a run."""
    meta = read_meta(path)
    verify(path, meta)
    train, val = (np.memmap(os.path.join(path, f"{name}.bin"), dtype=meta.dtype, mode="r") for name in ("train", "val"))
    splits = meta.splits
    return Corpus(path, train, val, meta.vocab_size, meta.fingerprint,
                  n_files=splits["train"].documents + splits["val"].documents,
                  bytes_per_token=splits["val"].bytes / splits["val"].tokens, unigram_counts=meta.unigram_counts)


@functools.lru_cache(maxsize=4)
def load_corpus(spec: str = "stdlib", vocab_size: int | None = None, val_fraction: float = VAL_FRACTION) -> Corpus:
    if spec == "stdlib":
        root, paths = stdlib_files()
        return _byte_corpus("stdlib", root, paths, val_fraction)
    if spec == "mix":
        raise UsageError("corpus=mix needs mixture=NAME:WEIGHT,... and domains=NAME:DIR,... (a run config)")
    if spec == "synthetic" or spec.startswith("synthetic:"):
        return _synthetic(spec)
    if spec.endswith(".bin"):
        if not os.path.isfile(spec):
            raise UsageError(f"corpus={spec!r}: no such file")
        return _token_file(spec, vocab_size, val_fraction)
    if os.path.isfile(os.path.join(spec, "meta.json")):
        return _prepared(spec)
    if os.path.isdir(spec):
        paths = [os.path.join(d, f) for d, _, fs in os.walk(spec) for f in fs]
        return _byte_corpus(spec, spec, [p for p in paths if _looks_like_text(p)], val_fraction)
    matches = [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
    if not matches:
        raise UsageError(f"corpus={spec!r}: no such directory, file or glob match "
                         "(allowed: stdlib, synthetic[:V[:SEED]], DIR, GLOB, FILE.bin)")
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in matches])
    return _byte_corpus(spec, root, [os.path.abspath(p) for p in matches], val_fraction)


def _looks_like_text(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return b"\0" not in fh.read(4096)
    except OSError:
        return False


# ---- batches ---------------------------------------------------------------------------------------
def windows_per_epoch(corpus: Corpus, seq_len: int) -> int:
    if corpus.mix is not None:
        return corpus.mix.windows_per_epoch(seq_len)
    return (len(corpus.train) - 1) // (seq_len + 1) - 1  # -1: room for the epoch shift


@functools.lru_cache(maxsize=8)
def _epoch_order(n_windows: int, seed: int, epoch: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng([seed, epoch, 0x5CA1E])
    return rng.permutation(n_windows), int(rng.integers(0, 1 << 30))


def batch(corpus: Corpus, seed: int, step: int, batch_size: int, seq_len: int,
          rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets (rows, seq_len) int32 for optimizer step `step` (0-based).

    `rows` selects a slice of the step's batch: a process (or a device) builds only its own rows, and
    they are the rows the whole batch would have there, so any split of the batch trains the same."""
    windows = batch_windows(corpus, seed, step, batch_size, seq_len, rows)
    return windows[:, :-1], windows[:, 1:]


def batch_windows(corpus: Corpus, seed: int, step: int, batch_size: int, seq_len: int,
                  rows: slice = slice(None)) -> np.ndarray:
    """The (rows, seq_len + 1) token windows of step `step`'s batch: inputs and, shifted by one, targets."""
    if corpus.mix is not None:
        return corpus.mix.batch_windows(seed, step, batch_size, seq_len, rows)
    n_windows = windows_per_epoch(corpus, seq_len)
    if n_windows < 1:
        raise UsageError(f"corpus {corpus.name!r} is shorter than one sequence of {seq_len + 1} tokens")
    width = seq_len + 1
    picked = range(batch_size)[rows]
    out = np.empty((len(picked), width), dtype=np.int32)
    first = step * batch_size
    for out_row, i in enumerate(picked):
        epoch, pos = divmod(first + i, n_windows)
        order, shift_seed = _epoch_order(n_windows, seed, epoch)
        start = int(order[pos]) * width + shift_seed % width
        out[out_row] = corpus.train[start:start + width]
    return out


def eval_batches(corpus: Corpus, n_tokens: int, batch_size: int, seq_len: int):
    """Fixed validation batches: windows spread evenly over the validation split, the same every call."""
    if corpus.mix is not None:
        yield from corpus.mix.eval_batches(n_tokens, batch_size, seq_len)
        return
    n_seq = max(1, n_tokens // seq_len)
    span = len(corpus.val) - seq_len - 1
    if span < 0:
        raise UsageError(f"validation split of {corpus.name!r} is shorter than one sequence")
    starts = np.linspace(0, span, n_seq).astype(np.int64)
    for lo in range(0, n_seq, batch_size):
        rows = np.stack([np.asarray(corpus.val[s:s + seq_len + 1], dtype=np.int32) for s in starts[lo:lo + batch_size]])
        yield rows[:, :-1], rows[:, 1:]
