"""`scaling data prepare`: a source of documents tokenized into a prepared corpus directory.

Sources: a folder or glob of text files (one document per file), `.jsonl`/`.json`/`.parquet` files with
a text field (read in record batches with pyarrow), or a Hugging Face `datasets` folder written by
`save_to_disk`. Tokenizers: `bytes` (vocabulary 256, each document ends with a newline), `bpe:VOCAB`
(a byte-level BPE trained on the source with Hugging Face `tokenizers`, saved beside the tokens), or
the path of a saved `tokenizer.json`.

The directory (docs/contracts.md "Prepared corpora"):
    meta.json       format, tokenizer, dtype, per split documents / tokens / bytes, the train split's
                    unigram counts, the fingerprint
    train.bin       token ids of the training documents, uint16 when the vocabulary fits, else uint32
    val.bin         the same for the validation documents (chosen by a hash of each document's text)
    tokenizer.json  the tokenizer, for BPE

It is written as DIR.partial and renamed into place when complete, so an interrupted prepare leaves
nothing that `corpus=DIR` would accept, and a rerun starts clean.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from scaling.data import VAL_FRACTION, doc_is_val
from scaling.errors import UsageError

FORMAT = "scaling-corpus-v1"
EOS = "<|endoftext|>"
TABLE_SUFFIXES = (".jsonl", ".json", ".parquet")
CHUNK_BYTES = 4 << 20  # text tokenized per call: bounds memory, and large enough for the tokenizer's threads


@dataclass(frozen=True)
class Source:
    spec: str
    kind: str  # "text", "table" or "datasets"
    paths: tuple[str, ...]
    text_field: str = "text"

    def documents(self) -> Iterator[str]:
        if self.kind == "text":
            for path in self.paths:
                with open(path, "rb") as fh:
                    yield fh.read().decode("utf-8", errors="replace")
        elif self.kind == "table":
            yield from self._table_documents()
        else:
            yield from self._datasets_documents()

    def total_bytes(self) -> int:
        """The source's size on disk, for the progress bar (compressed Parquet reads as more text)."""
        return sum(os.path.getsize(p) for p in self.paths)

    def _table_documents(self) -> Iterator[str]:
        import pyarrow.dataset as ds

        for path in self.paths:
            fmt = "parquet" if path.endswith(".parquet") else "json"
            try:
                dataset = ds.dataset(path, format=fmt)
                if self.text_field not in dataset.schema.names:
                    raise UsageError(f"{path}: no field {self.text_field!r} (fields: "
                                     f"{', '.join(dataset.schema.names)}); choose one with --text-field")
                for batch in dataset.to_batches(columns=[self.text_field], batch_size=1024):
                    yield from (t for t in batch.column(0).to_pylist() if t)
            except UsageError:
                raise
            except Exception as err:  # pyarrow's parse errors name the line; one line is enough
                raise UsageError(f"{path}: cannot read as {fmt}: {str(err).splitlines()[0]}") from None

    def _datasets_documents(self) -> Iterator[str]:
        try:
            import datasets
        except ImportError:
            raise UsageError("reading a `datasets` folder needs the data extra: pip install "
                             "'scaling-workbench[data]'") from None
        loaded = datasets.load_from_disk(self.paths[0])
        if isinstance(loaded, datasets.DatasetDict):
            loaded = datasets.concatenate_datasets(list(loaded.values()))
        if self.text_field not in loaded.column_names:
            raise UsageError(f"{self.spec}: no field {self.text_field!r} (fields: {', '.join(loaded.column_names)});"
                             " choose one with --text-field")
        for batch in loaded.select_columns([self.text_field]).iter(batch_size=1024):
            yield from (t for t in batch[self.text_field] if t)


def find_source(spec: str, text_field: str = "text") -> Source:
    """The documents `spec` names: a datasets folder, a folder of text files, a table file, or a glob."""
    if os.path.isdir(spec):
        if any(os.path.exists(os.path.join(spec, f)) for f in ("dataset_info.json", "dataset_dict.json")):
            return Source(spec, "datasets", (spec,), text_field)
        paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(spec) for f in fs)
    else:
        paths = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
    if not paths:
        raise UsageError(f"{spec!r}: no such folder, file or glob match")
    tables = [p for p in paths if p.endswith(TABLE_SUFFIXES)]
    if tables and len(tables) != len(paths):
        raise UsageError(f"{spec!r} mixes table files ({', '.join(TABLE_SUFFIXES)}) with other files; "
                         "name one kind with a glob")
    if tables:
        return Source(spec, "table", tuple(tables), text_field)
    texts = tuple(p for p in paths if _looks_like_text(p))
    if not texts:
        raise UsageError(f"{spec!r}: no text files (binary files are skipped)")
    return Source(spec, "text", texts, text_field)


def _looks_like_text(path: str) -> bool:
    with open(path, "rb") as fh:
        return b"\0" not in fh.read(4096)


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


def prepare(source_spec: str, out: str, tokenizer: str = "bytes", text_field: str = "text",
            val_fraction: float = VAL_FRACTION, on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Tokenize `source_spec` into the corpus directory `out`; returns its meta.json.

    `on_progress(done_bytes, total_bytes)` is called after each chunk (sizes of the source text)."""
    if not 0 < val_fraction < 1:
        raise UsageError(f"--val-fraction {val_fraction}: must be in (0, 1)")
    out = os.path.abspath(out)
    if os.path.exists(out):
        raise UsageError(f"--out {out}: already exists; remove it or choose another folder")
    source = find_source(source_spec, text_field)
    tok = make_tokenizer(tokenizer, source)
    dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.uint32
    partial = out + ".partial"
    shutil.rmtree(partial, ignore_errors=True)  # an earlier prepare that was interrupted
    os.makedirs(partial)
    if isinstance(tok, HFTokens):
        tok.tokenizer.save(os.path.join(partial, "tokenizer.json"))
    splits = {"train": _Split(os.path.join(partial, "train.bin"), dtype),
              "val": _Split(os.path.join(partial, "val.bin"), dtype)}
    counts = np.zeros(tok.vocab_size, dtype=np.int64)
    total, done = source.total_bytes(), 0
    for chunk in _chunks(source.documents(), CHUNK_BYTES):
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
    stats = {name: s.close() for name, s in splits.items()}
    for name, s in stats.items():
        if s["tokens"] == 0:
            shutil.rmtree(partial, ignore_errors=True)
            n_docs = stats["train"]["documents"] + stats["val"]["documents"]
            raise UsageError(f"{source_spec!r}: no document fell in the {name} split ({n_docs} documents, "
                             f"val fraction {val_fraction}); add documents or change --val-fraction")
    tok_hash = (hashlib.sha256(open(os.path.join(partial, "tokenizer.json"), "rb").read()).hexdigest()
                if isinstance(tok, HFTokens) else "bytes")
    fingerprint = hashlib.sha256(
        f"{FORMAT}:{tok_hash}:{stats['train']['sha256']}:{stats['val']['sha256']}".encode()).hexdigest()[:16]
    meta = {"format": FORMAT, "source": source_spec, "tokenizer": tok.describe(), "dtype": np.dtype(dtype).name,
            "val_fraction": val_fraction, "splits": stats, "fingerprint": fingerprint,
            "unigram_counts": counts.tolist()}
    with open(os.path.join(partial, "meta.json"), "w") as fh:
        json.dump(meta, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(partial, out)  # the corpus exists only once it is complete
    return meta
