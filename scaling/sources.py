"""The documents of a `scaling data prepare` source: text files, table files, or a saved `datasets` folder.

Text files are decoded with the source's encoding (UTF-8 unless `--encoding` says otherwise); a byte that
is not valid in it becomes U+FFFD, one per byte, and is counted, so a Latin-1 file read as UTF-8 is
reported instead of silently skewing bits per byte. A file that looks binary (many control bytes, or
mostly bytes the encoding rejects) is refused by name. Files with a NUL byte near the start are skipped.

JSON Lines are read with pyarrow in record batches; what pyarrow cannot read (a record longer than its
block, a text field that is not a string) is read again line by line from where pyarrow stopped, so a
record of any size is prepared and a bad one is named by file, line and field.
"""
from __future__ import annotations

import codecs
import glob
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from scaling import domains
from scaling.errors import UsageError

TABLE_SUFFIXES = (".jsonl", ".json", ".parquet")
# Bytes 0-8, 14-31 and 127: rare in text of any encoding (tab, newlines, form feed and ESC are not counted).
_CONTROL = np.zeros(256, dtype=bool)
_CONTROL[[*range(0, 9), *range(14, 27), *range(28, 32), 127]] = True
MAX_CONTROL_SHARE = 0.05
MAX_REPLACED_SHARE = 0.25  # Latin-1 prose read as UTF-8 has a few percent; a binary file has most
_SLICE = 1 << 24  # bytes counted at a time: the lookup's temporary stays small
_ESCAPED = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of each undecodable byte


@dataclass
class Decoding:
    """What decoding a text source replaced: bytes not valid in the encoding, and the files that had some."""
    encoding: str = "utf-8"
    replaced_bytes: int = 0
    files: int = 0
    first_file: str | None = None

    def record(self) -> dict:
        return {"encoding": self.encoding, "replaced_bytes": self.replaced_bytes, "files": self.files,
                "first_file": self.first_file}


def decode_text(path: str, data: bytes, decoding: Decoding) -> str:
    """`data` as text, its undecodable bytes replaced and counted in `decoding`; a binary file is refused."""
    if data:
        every = np.frombuffer(data, dtype=np.uint8)
        control = sum(int(np.count_nonzero(_CONTROL[every[lo:lo + _SLICE]])) for lo in range(0, len(every), _SLICE))
        control /= len(data)
        if control > MAX_CONTROL_SHARE:
            raise UsageError(f"{path}: looks binary ({control:.0%} of its bytes are control characters); "
                             "remove it from the source")
    try:
        return data.decode(decoding.encoding)
    except UnicodeDecodeError:
        pass
    text = data.decode(decoding.encoding, errors="surrogateescape")
    text, replaced = _ESCAPED.subn("\ufffd", text)
    if replaced > MAX_REPLACED_SHARE * len(data):
        raise UsageError(f"{path}: looks binary ({replaced / len(data):.0%} of its bytes are not valid "
                         f"{decoding.encoding}); remove it from the source, or name its encoding with --encoding")
    decoding.replaced_bytes += replaced
    decoding.files += 1
    decoding.first_file = decoding.first_file or path
    return text


def check_encoding(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise UsageError(f"--encoding {encoding!r}: no such encoding (e.g. utf-8, latin-1, cp1252)") from None


@dataclass(frozen=True)
class Source:
    spec: str
    kind: str  # "text", "table", "datasets" or "domain" (scaling/domains.py)
    paths: tuple[str, ...]
    text_field: str = "text"
    encoding: str = "utf-8"

    def documents(self, decoding: Decoding | None = None) -> Iterator[str]:
        """The documents in order; `decoding` (when given) counts the bytes text files could not decode."""
        if self.kind == "text":
            decoding = decoding or Decoding(self.encoding)
            for path in self.paths:
                with open(path, "rb") as fh:
                    yield decode_text(path, fh.read(), decoding)
        elif self.kind == "domain":  # scaling/domains.py
            decoding = decoding or Decoding(self.encoding)
            yield from domains.documents(self.spec, lambda path: _read(path, decoding))
        elif self.kind == "table":
            yield from self._table_documents()
        else:
            yield from self._datasets_documents()

    def total_bytes(self) -> int:
        """The source's size on disk, for the progress bar (compressed Parquet reads as more text)."""
        return sum(os.path.getsize(p) for p in self.paths)

    def _table_documents(self) -> Iterator[str]:
        import pyarrow as pa
        import pyarrow.dataset as ds

        for path in self.paths:
            fmt = "parquet" if path.endswith(".parquet") else "json"
            rows = 0  # rows read so far: where a line-by-line reread of a JSON file picks up
            try:
                dataset = ds.dataset(path, format=fmt)
                if self.text_field not in dataset.schema.names:
                    raise UsageError(f"{path}: no field {self.text_field!r} (fields: "
                                     f"{', '.join(dataset.schema.names)}); choose one with --text-field")
                kind = dataset.schema.field(self.text_field).type
                if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
                    if fmt == "json":
                        yield from _json_lines(path, self.text_field, rows)
                        continue
                    raise UsageError(f"{path}: field {self.text_field!r} holds {kind}, not text")
                for batch in dataset.to_batches(columns=[self.text_field], batch_size=1024):
                    yield from (t for t in batch.column(0).to_pylist() if t)
                    rows += batch.num_rows
            except UsageError:
                raise
            except Exception as err:  # pyarrow's parse errors name the line; one line is enough
                if fmt == "json":  # a record longer than pyarrow's block, or a field whose type changes
                    yield from _json_lines(path, self.text_field, rows)
                    continue
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


_JSON_KINDS = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object",
               str: "a string", type(None): "null"}


def _json_lines(path: str, field: str, skip: int) -> Iterator[str]:
    """The `field` of each record of a JSON Lines file after its first `skip` records (blank lines are not
    records, as for pyarrow); a record that is not an object, or whose field is not a string, is refused
    by line number."""
    rows = 0
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            rows += 1
            if rows <= skip:
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                raise UsageError(f"{path}:{number}: not a JSON record ({err})") from None
            if not isinstance(record, dict):
                raise UsageError(f"{path}:{number}: {_JSON_KINDS[type(record)]}, not a JSON object")
            text = record.get(field)
            if text is not None and not isinstance(text, str):
                raise UsageError(f"{path}:{number}: field {field!r} is {_JSON_KINDS[type(text)]}, not a string")
            if text:
                yield text


def find_source(spec: str, text_field: str = "text", encoding: str = "utf-8") -> Source:
    """The documents `spec` names: a datasets folder, a folder of text files, a table file, or a glob."""
    encoding = check_encoding(encoding)
    if spec.startswith(domains.PREFIX):
        return Source(spec, "domain", tuple(domains.check(spec)), text_field, encoding)
    if os.path.isdir(spec):
        if any(os.path.exists(os.path.join(spec, f)) for f in ("dataset_info.json", "dataset_dict.json")):
            if encoding != "utf-8":
                raise UsageError(f"--encoding {encoding}: applies to text files; a datasets folder holds text")
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
        if encoding != "utf-8":
            raise UsageError(f"--encoding {encoding}: applies to text files; table files are read as UTF-8")
        return Source(spec, "table", tuple(tables), text_field)
    texts = tuple(p for p in paths if _looks_like_text(p))
    if not texts:
        raise UsageError(f"{spec!r}: no text files (binary files are skipped)")
    return Source(spec, "text", texts, text_field, encoding)


def _read(path: str, decoding: Decoding) -> str:
    with open(path, "rb") as fh:
        return decode_text(path, fh.read(), decoding)


def _looks_like_text(path: str) -> bool:
    with open(path, "rb") as fh:
        return b"\0" not in fh.read(4096)
