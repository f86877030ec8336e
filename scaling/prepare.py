"""`scaling data prepare`: a source of documents tokenized into a prepared corpus directory.

Sources: a folder or glob of text files (one document per file), `.jsonl`/`.json`/`.parquet` files with
a text field (read in record batches with pyarrow), or a Hugging Face `datasets` folder written by
`save_to_disk` (read by scaling/sources.py). Tokenizers: `bytes` (vocabulary 256, each document ends
with a newline), `bpe:VOCAB` (a byte-level BPE trained on the source with Hugging Face `tokenizers`,
saved beside the tokens), or the path of a saved `tokenizer.json`.

The directory (docs/contracts.md "Prepared corpora"):
    meta.json       format, tokenizer, dtype, per split documents / tokens / bytes, the train split's
                    unigram counts, the fingerprint; for text files, the bytes their encoding could
                    not decode (replaced by U+FFFD)
    train.bin       token ids of the training documents, uint16 when the vocabulary fits, else uint32
    val.bin         the same for the validation documents (chosen by a hash of each document's text)
    tokenizer.json  the tokenizer, for BPE

It is written as DIR.partial and renamed into place when complete, so an interrupted prepare leaves
nothing that `corpus=DIR` would accept, and a rerun starts clean. The staging folder holds a marker file,
locked while a prepare writes: only a marked folder whose writer is gone is removed (never a user's own
folder of that name), and a second prepare into the same DIR is refused while the first runs.
scaling/corpus_check.py checks the folder when a run opens it.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator

import numpy as np

from scaling.corpus_check import FORMAT, fingerprint
from scaling.data import VAL_FRACTION, doc_is_val
from scaling.errors import UsageError
from scaling.sources import Decoding, Source, find_source

EOS = "<|endoftext|>"
MARKER = ".scaling-prepare"  # in a staging folder: made by `data prepare`, and locked while one writes it
CHUNK_BYTES = 4 << 20  # text tokenized per call: bounds memory, and large enough for the tokenizer's threads


# ---- tokenizers ----------------------------------------------------------------------------------
class ByteTokens:
    """Byte-level tokens: id = byte. A document without a final newline gets one, so documents never
    run together (as for `corpus=DIR` read directly)."""
    kind, vocab_size, eos = "bytes", 256, None

    def encode(self, docs: list[str]) -> list[np.ndarray]:
        out = []
        for doc in docs:
            data = doc.encode("utf-8")
            out.append(np.frombuffer(data if data.endswith(b"\n") else data + b"\n", dtype=np.uint8))
        return out

    def describe(self) -> dict:
        return {"kind": "bytes", "vocab_size": 256}


class HFTokens:
    """A Hugging Face `tokenizers` tokenizer; each document is followed by its end-of-text token."""
    kind = "bpe"

    def __init__(self, tokenizer, origin: str):
        self.tokenizer, self.origin = tokenizer, origin
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        found = (tokenizer.token_to_id(t) for t in (EOS, "</s>", "<eos>"))
        self.eos = next((i for i in found if i is not None), None)
        encode = getattr(tokenizer, "encode_batch_fast", None) or tokenizer.encode_batch  # fast: no offsets
        self._encode = lambda docs: encode(docs, add_special_tokens=False)

    def encode(self, docs: list[str]) -> list[np.ndarray]:
        tail = [self.eos] if self.eos is not None else []
        return [np.asarray(e.ids + tail, dtype=np.int64) for e in self._encode(docs)]

    def describe(self) -> dict:
        return {"kind": "bpe", "vocab_size": self.vocab_size, "file": "tokenizer.json", "origin": self.origin,
                "eos_id": self.eos}


def _hf():
    try:
        import tokenizers
    except ImportError:
        raise UsageError("BPE tokenizers need the data extra: pip install 'scaling-workbench[data]'") from None
    return tokenizers


def make_tokenizer(spec: str, source: Source) -> ByteTokens | HFTokens:
    """`bytes`, `bpe:VOCAB` (trained on `source` now) or the path of a saved tokenizer.json."""
    if spec == "bytes":
        return ByteTokens()
    tokenizers = _hf()
    if spec.startswith("bpe:"):
        try:
            vocab = int(spec[4:])
        except ValueError:
            raise UsageError(f"--tokenizer {spec}: expected bpe:VOCAB with an integer vocabulary size") from None
        if not 512 <= vocab <= 1 << 20:
            raise UsageError(f"--tokenizer {spec}: the vocabulary must be in [512, 1048576]")
        tok = tokenizers.Tokenizer(tokenizers.models.BPE())
        tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = tokenizers.decoders.ByteLevel()
        trainer = tokenizers.trainers.BpeTrainer(
            vocab_size=vocab, special_tokens=[EOS], show_progress=False,
            initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(source.documents(), trainer=trainer)
        return HFTokens(tok, f"trained on {source.spec}")
    if not os.path.isfile(spec):
        raise UsageError(f"--tokenizer {spec!r}: expected bytes, bpe:VOCAB or the path of a tokenizer.json")
    try:
        return HFTokens(tokenizers.Tokenizer.from_file(spec), os.path.abspath(spec))
    except Exception as err:  # the Rust side raises a bare Exception with a one-line message
        raise UsageError(f"--tokenizer {spec!r}: not a tokenizer.json ({str(err).splitlines()[0]})") from None


# ---- preparing -----------------------------------------------------------------------------------
class _Split:
    def __init__(self, path: str, dtype):
        self.fh, self.dtype = open(path, "wb"), dtype
        self.hash = hashlib.sha256()
        self.documents = self.tokens = self.bytes = 0

    def write(self, docs: list[np.ndarray], n_bytes: int) -> np.ndarray:
        ids = np.concatenate(docs) if docs else np.zeros(0, dtype=np.int64)
        data = ids.astype(self.dtype).tobytes()
        self.fh.write(data)
        self.hash.update(data)
        self.documents += len(docs)
        self.tokens += len(ids)
        self.bytes += n_bytes
        return ids

    def abandon(self) -> None:
        """Close without keeping: the buffer's unwritten tail (on a full disk) must not be flushed at exit."""
        try:
            self.fh.close()
        except OSError:
            pass

    def close(self) -> dict:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        return {"documents": self.documents, "tokens": self.tokens, "bytes": self.bytes,
                "sha256": self.hash.hexdigest()}


def _chunks(docs: Iterator[str], limit: int) -> Iterator[list[str]]:
    chunk, size = [], 0
    for doc in docs:
        chunk.append(doc)
        size += len(doc)
        if size >= limit:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _claim_staging(partial: str, out: str) -> int:
    """Make the staging folder `partial`, removing one a dead prepare left, and lock it; returns the locked
    marker's descriptor. A folder of that name the tool did not make (no marker) is never removed, and one
    a live prepare holds (its marker locked) is refused: two prepares into one --out would interleave."""
    busy = f"--out {out}: another `scaling data prepare` is writing it ({partial}); wait for it or choose another --out"
    if os.path.lexists(partial):
        marker = os.path.join(partial, MARKER)
        if os.path.islink(partial) or not os.path.isfile(marker):
            raise UsageError(f"--out {out}: {partial} exists and is not a staging folder of `scaling data prepare` "
                             f"(no {MARKER} in it); move it away or choose another --out")
        fd = os.open(marker, os.O_RDONLY)
        try:
            if not _lock(fd):
                raise UsageError(busy)
            shutil.rmtree(partial)  # an interrupted prepare's
        finally:
            os.close(fd)
    try:
        os.mkdir(partial)
    except FileExistsError:
        raise UsageError(busy) from None
    fd = os.open(os.path.join(partial, MARKER), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    _lock(fd)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def prepare(source_spec: str, out: str, tokenizer: str = "bytes", text_field: str = "text",
            val_fraction: float = VAL_FRACTION, on_progress: Callable[[int, int], None] | None = None,
            encoding: str = "utf-8") -> dict:
    """Tokenize `source_spec` into the corpus directory `out`; returns its meta.json.

    `on_progress(done_bytes, total_bytes)` is called after each chunk (sizes of the source text). Bad input
    and a failed write (a full disk) are one-line UsageErrors that leave neither `out` nor its staging."""
    if not 0 < val_fraction < 1:
        raise UsageError(f"--val-fraction {val_fraction}: must be in (0, 1)")
    out = os.path.abspath(out)
    if os.path.lexists(out):
        raise UsageError(f"--out {out}: already exists; remove it or choose another folder")
    source = find_source(source_spec, text_field, encoding)
    partial = out + ".partial"
    try:
        fd = _claim_staging(partial, out)
    except OSError as err:  # a full disk or a read-only parent: the folder holds no marker yet, so remove it
        if os.path.isdir(partial) and not os.listdir(partial):
            os.rmdir(partial)
        raise UsageError(f"--out {out}: cannot make {partial} ({err.strerror or err})") from None
    try:
        meta = _write(source, partial, tokenizer, val_fraction, on_progress)
        os.rename(partial, out)  # the corpus exists only once it is complete
    except BaseException as err:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(err, OSError):
            what = "no space left on device" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror or err
            raise UsageError(f"--out {out}: {what}{f' ({err.filename})' if err.filename else ''}; "
                             f"nothing was kept") from None
        raise
    finally:
        os.close(fd)
    try:
        os.unlink(os.path.join(out, MARKER))
    except OSError:
        pass  # a leftover marker in a finished corpus is harmless: nothing removes a corpus folder
    return meta


def _tokenize(documents: Iterator[str], total: int, tok: ByteTokens | HFTokens, splits: dict[str, _Split],
              val_fraction: float, on_progress: Callable[[int, int], None] | None) -> np.ndarray:
    """Tokenize `documents` into the split files; returns the train split's unigram counts."""
    counts = np.zeros(tok.vocab_size, dtype=np.int64)
    done = 0
    for chunk in _chunks(documents, CHUNK_BYTES):
        docs, sizes = {"train": [], "val": []}, {"train": 0, "val": 0}
        for doc, ids in zip(chunk, tok.encode(chunk)):
            name = "val" if doc_is_val(doc, val_fraction) else "train"
            # bytes of text per split, for bits per byte; the byte tokenizer's added newlines count too
            n_bytes = len(ids) if tok.kind == "bytes" else len(doc.encode("utf-8"))
            docs[name].append(ids)
            sizes[name] += n_bytes
            done += n_bytes
        for name in splits:
            ids = splits[name].write(docs[name], sizes[name])
            if name == "train" and len(ids):
                counts += np.bincount(ids, minlength=tok.vocab_size)[: tok.vocab_size]
        if on_progress is not None:
            on_progress(min(done, total), total)
    return counts


def _write(source: Source, partial: str, tokenizer: str, val_fraction: float,
           on_progress: Callable[[int, int], None] | None) -> dict:
    """Tokenize `source` into the staging folder `partial`; returns the meta.json written there."""
    tok = make_tokenizer(tokenizer, source)
    dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32
    if isinstance(tok, HFTokens):
        try:
            tok.tokenizer.save(os.path.join(partial, "tokenizer.json"))
        except Exception as err:  # the Rust side raises a bare Exception, a full disk included
            raise UsageError(f"cannot write {partial}/tokenizer.json: {str(err).splitlines()[0]}") from None
    splits = {"train": _Split(os.path.join(partial, "train.bin"), dtype),
              "val": _Split(os.path.join(partial, "val.bin"), dtype)}
    decoding = Decoding(source.encoding)
    try:
        counts = _tokenize(source.documents(decoding), source.total_bytes(), tok, splits, val_fraction, on_progress)
    except BaseException:
        for split in splits.values():
            split.abandon()
        raise
    stats = {name: s.close() for name, s in splits.items()}
    for name, s in stats.items():
        if s["tokens"] == 0:
            n_docs = stats["train"]["documents"] + stats["val"]["documents"]
            raise UsageError(f"{source.spec!r}: no document fell in the {name} split ({n_docs} documents, "
                             f"val fraction {val_fraction}); add documents or change --val-fraction")
    tok_hash = (hashlib.sha256(open(os.path.join(partial, "tokenizer.json"), "rb").read()).hexdigest()
                if isinstance(tok, HFTokens) else "bytes")
    meta = {"format": FORMAT, "source": source.spec, "tokenizer": tok.describe(), "dtype": np.dtype(dtype).name,
            "val_fraction": val_fraction, "splits": stats,
            "fingerprint": fingerprint(tok_hash, stats["train"]["sha256"], stats["val"]["sha256"]),
            "unigram_counts": counts.tolist()}
    if source.kind == "text":
        meta["decoding"] = decoding.record()
    with open(os.path.join(partial, "meta.json"), "w") as fh:
        json.dump(meta, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return meta
