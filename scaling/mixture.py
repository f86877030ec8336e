"""corpus=mix: training on several corpora of one tokenizer, each step's windows drawn by domain in
proportion to the config's weights (the keys: scaling/mixspec.py; docs/contracts.md "Data mixtures").

The domain of row i of step s is a pure function of (seed, global row g = s * batch_size + i): a hash of
(seed, g) read as a uniform number in [0, 1) and placed among the cumulative weights, so each row is an
independent draw and a domain's share of the rows is binomial about its weight. Within a domain the rows
walk that domain's own window order exactly as a single corpus's batches walk its windows
(scaling/data.py): the r-th row drawn from a domain takes the r-th window of its epoch permutations, so no
window of a domain repeats before that domain has been seen whole. r is the number of rows that domain
got before g, counted from the hashes (cached, so training counts each row once and a resumed run counts
its past once): batches stay a pure function of (seed, step), and resume and packing are unchanged.

Evaluation: the mixture's validation loss is its domains' validation losses weighed by the same
proportions: each domain gets its weight's share of the `eval_tokens` sequences (rounded to whole
sequences), spread evenly over its validation split.
"""
from __future__ import annotations

import functools
import hashlib
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from scaling import data as data_lib
from scaling import mixspec
from scaling.corpus_check import read_meta
from scaling.errors import UsageError

_MARK = 1 << 16  # rows between the cached counts of each domain's earlier rows
_MASK = (1 << 64) - 1


def corpus_for(corpus: str, mixture: str | None, domains: str | None, vocab_size: int | None = None
               ) -> data_lib.Corpus:
    """The run's corpus: a mixture when corpus=mix, else the single corpus `corpus` names."""
    mix = mixspec.parse(corpus, mixture, domains)
    return load(mix) if mix is not None else data_lib.load_corpus(corpus, vocab_size)


def tokenizer_of(spec: str) -> str:
    """What tokenized a domain, to compare across a mixture: `bytes` for text read byte by byte, else
    `bpe:<sha256 of its tokenizer.json>`. Token files and synthetic chains carry no tokenizer: refused."""
    if os.path.isfile(os.path.join(spec, "meta.json")):
        if read_meta(spec).tokenizer_kind == "bytes":
            return "bytes"
        try:
            with open(os.path.join(spec, "tokenizer.json"), "rb") as fh:
                return "bpe:" + hashlib.file_digest(fh, "sha256").hexdigest()[:16]
        except OSError as err:
            raise UsageError(f"domains: corpus={spec!r}: cannot read its tokenizer.json ({err.strerror})") from None
    if spec.endswith(".bin") or spec == "synthetic" or spec.startswith("synthetic:"):
        raise UsageError(f"domains: {spec!r} carries no tokenizer to compare with the other domains; a mixture's "
                         "domains are prepared corpus folders (scaling data prepare) or text read as bytes")
    return "bytes"


@functools.lru_cache(maxsize=8)
def load(mix: mixspec.Mixture) -> data_lib.Corpus:
    """The mixture as a Corpus whose batches and validation windows its MixDraw draws from the domains."""
    tokenizers = {name: tokenizer_of(spec) for name, spec in zip(mix.names, mix.corpora)}
    if len(set(tokenizers.values())) > 1:
        shown = ", ".join(f"{name} ({tok})" for name, tok in tokenizers.items())
        raise UsageError(f"mixture: the domains are tokenized differently: {shown}; prepare them with one tokenizer "
                         "(scaling data prepare SOURCE --out DIR --tokenizer OTHER/tokenizer.json)")
    parts = tuple(data_lib.load_corpus(spec) for spec in mix.corpora)
    draw = MixDraw(mix, parts)
    live = [(w, c) for w, c in zip(mix.weights, parts) if w > 0]
    # Epochs of a mixture are those of its most repeated domain: D x w_i / |train_i| at its largest.
    effective = int(min(len(c.train) / w for w, c in live))
    counts = sum(w * _unigram(c) for w, c in live)
    per_token = [c.bytes_per_token for _, c in live]
    bytes_per_token = None if None in per_token else float(sum(w * b for (w, _), b in zip(live, per_token)))
    shown = ",".join(f"{n}:{w:.3g}" for n, w in zip(mix.names, mix.weights) if w > 0)
    fp = hashlib.sha256(("mix-v1:" + ";".join(f"{n}={w!r}={c.fingerprint}" for n, w, c in
                                              zip(mix.names, mix.weights, parts))).encode()).hexdigest()[:16]
    # train and val are stand-ins of the right length (the accounting's epochs; describe() overrides the
    # token counts): every read of a mixture's tokens goes through its MixDraw.
    stand_in = np.zeros(1, dtype=np.uint16)
    return data_lib.Corpus(f"mix:{shown}" if len(shown) <= 60 else f"mix:{fp}",
                           np.broadcast_to(stand_in, (effective,)),
                           np.broadcast_to(stand_in, (sum(len(c.val) for c in parts),)),
                           parts[0].vocab_size, fp, n_files=sum(c.n_files for c in parts),
                           bytes_per_token=bytes_per_token, unigram_counts=counts, mix=draw)


def _unigram(corpus: data_lib.Corpus) -> np.ndarray:
    """The train split's token frequencies (summing to 1)."""
    counts = corpus.unigram_counts
    if counts is None:
        counts = np.bincount(np.asarray(corpus.train), minlength=corpus.vocab_size)
    counts = np.asarray(counts, dtype=np.float64)
    return counts / counts.sum()


def domain_of_rows(seed: int, cumulative: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The domain index of global rows lo..hi-1: splitmix64 of (seed, row) as a uniform in [0, 1), placed
    among the cumulative weights."""
    base = np.uint64((seed * 0xD1B54A32D192ED03 + 0x5CA1E) & _MASK)
    z = np.arange(lo, hi, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + base
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    u = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return np.searchsorted(cumulative, u, side="right")


@functools.lru_cache(maxsize=32)
def _domain_order(n_windows: int, seed: int, domain: int, epoch: int) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng([seed, domain, epoch, 0x313C5])
    return rng.permutation(n_windows), int(rng.integers(0, 1 << 30))


@dataclass(eq=False)
class MixDraw:
    """The windows of a mixture (scaling/data.py's MixSource)."""

    mix: mixspec.Mixture
    parts: tuple[data_lib.Corpus, ...]
    # per seed: each domain's rows before rows 0, _MARK, 2 _MARK, ... (so a question about any row costs
    # at most _MARK hashes), and the last answer (so training step after step hashes each row once)
    _marks: dict = field(default_factory=dict, repr=False)
    _last: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @functools.cached_property
    def cumulative(self) -> np.ndarray:
        cum = np.cumsum(self.mix.weights)
        last = max(i for i, w in enumerate(self.mix.weights) if w > 0)
        cum[last:] = 1.0  # rounding must not leave a sliver for trailing zero-weight domains
        return cum

    def _count(self, seed: int, lo: int, hi: int) -> np.ndarray:
        return np.bincount(domain_of_rows(seed, self.cumulative, lo, hi), minlength=len(self.parts))

    def rows_before(self, seed: int, row: int) -> np.ndarray:
        """How many of the global rows 0..row-1 each domain got."""
        with self._lock:
            marks = self._marks.setdefault(seed, [np.zeros(len(self.parts), np.int64)])
            while len(marks) <= row // _MARK:
                lo = (len(marks) - 1) * _MARK
                marks.append(marks[-1] + self._count(seed, lo, lo + _MARK))
            start, base = (row // _MARK) * _MARK, marks[row // _MARK]
            last_row, last = self._last.get(seed, (-1, None))
            if start <= last_row <= row:
                start, base = last_row, last
            counts = base + self._count(seed, start, row)
            self._last[seed] = (row, counts)
            return counts

    def windows_per_epoch(self, seq_len: int) -> int:
        return min(data_lib.windows_per_epoch(c, seq_len) for c, w in zip(self.parts, self.mix.weights) if w > 0)

    def batch_windows(self, seed: int, step: int, batch_size: int, seq_len: int, rows: slice) -> np.ndarray:
        first = step * batch_size
        domains = domain_of_rows(seed, self.cumulative, first, first + batch_size)
        rank = self.rows_before(seed, first)[domains]
        for d in np.unique(domains):  # earlier rows of the same domain within this batch
            mine = domains == d
            rank[mine] += np.arange(int(mine.sum()))
        width = seq_len + 1
        picked = range(batch_size)[rows]
        out = np.empty((len(picked), width), dtype=np.int32)
        for out_row, i in enumerate(picked):
            d = int(domains[i])
            part = self.parts[d]
            n_windows = data_lib.windows_per_epoch(part, seq_len)
            if n_windows < 1:
                raise UsageError(f"domain {self.mix.names[d]!r} is shorter than one sequence of {width} tokens")
            epoch, pos = divmod(int(rank[i]), n_windows)
            order, shift = _domain_order(n_windows, seed, d, epoch)
            start = int(order[pos]) * width + shift % width
            out[out_row] = part.train[start:start + width]
        return out

    def tokens_drawn(self, seed: int, step: int, batch_size: int, seq_len: int) -> dict[str, int]:
        """`tokens/<name>`: the training tokens each domain gave the first `step` steps."""
        counts = self.rows_before(seed, step * batch_size)
        return {f"tokens/{name}": int(n) * seq_len for name, n in zip(self.mix.names, counts)}

    def eval_shares(self, n_seq: int) -> list[int]:
        """Validation sequences per domain: the weights' shares of n_seq, rounded by largest remainder."""
        exact = np.asarray(self.mix.weights) * n_seq
        shares = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - shares), kind="stable")[: n_seq - int(shares.sum())]:
            shares[i] += 1
        return [int(s) for s in shares]

    def eval_batches(self, n_tokens: int, batch_size: int, seq_len: int):
        windows = []
        for name, part, k in zip(self.mix.names, self.parts, self.eval_shares(max(1, n_tokens // seq_len))):
            span = len(part.val) - seq_len - 1
            if k and span < 0:
                raise UsageError(f"validation split of domain {name!r} is shorter than one sequence")
            windows += [np.asarray(part.val[s:s + seq_len + 1], dtype=np.int32)
                        for s in np.linspace(0, max(span, 0), k).astype(np.int64)]
        for lo in range(0, len(windows), batch_size):
            rows = np.stack(windows[lo:lo + batch_size])
            yield rows[:, :-1], rows[:, 1:]

    def describe(self) -> dict:
        return {
            "train_tokens": sum(int(len(c.train)) for c in self.parts),
            "val_tokens": sum(int(len(c.val)) for c in self.parts),
            "mixture": {name: {"weight": w, "corpus": spec, "corpus_fingerprint": c.fingerprint,
                               "train_tokens": int(len(c.train)), "val_tokens": int(len(c.val))}
                        for name, w, spec, c in zip(self.mix.names, self.mix.weights, self.mix.corpora, self.parts)},
        }


def tokens_drawn(corpus: data_lib.Corpus, seed: int, step: int, batch_size: int, seq_len: int) -> dict[str, int]:
    """The summary's `tokens/<name>` for a mixture; nothing for a single corpus."""
    if not isinstance(corpus.mix, MixDraw):
        return {}
    return corpus.mix.tokens_drawn(seed, step, batch_size, seq_len)
