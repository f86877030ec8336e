"""`scaling data prepare`: text, JSONL/Parquet or a saved `datasets` folder -> a token corpus folder."""
from __future__ import annotations

import argparse
import sys
import time

from scaling.display import duration


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="prepare corpora: tokenize a source into a corpus folder",
                       description="Corpora for `corpus=DIR`.")
    cmds = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = cmds.add_parser(
        "prepare", help="tokenize text files, JSONL/JSON/Parquet or a saved datasets folder into DIR",
        description="Tokenize SOURCE into the corpus folder DIR (train.bin, val.bin, meta.json, tokenizer.json): "
                    "validation documents are chosen by a hash of their text; tokens are uint16 when the "
                    "vocabulary fits, else uint32. DIR appears only when complete. Then train with corpus=DIR.",
        epilog="examples:\n"
               "  scaling data prepare 'docs/**/*.md' --out corpora/docs-bytes\n"
               "  scaling data prepare dump.jsonl --out corpora/dump-bpe --tokenizer bpe:8192 --text-field body\n"
               "  scaling data prepare big/*.parquet --out corpora/big --tokenizer corpora/dump-bpe/tokenizer.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("source", metavar="SOURCE",
                   help="a folder or glob of text files, .jsonl/.json/.parquet files, or a `save_to_disk` folder")
    q.add_argument("--out", required=True, metavar="DIR", help="the corpus folder to create (must not exist)")
    q.add_argument("--tokenizer", default="bytes", metavar="bytes|bpe:VOCAB|PATH",
                   help="bytes (vocab 256; default), bpe:VOCAB (byte-level BPE trained on SOURCE), or a "
                        "tokenizer.json to load")
    q.add_argument("--text-field", default="text", metavar="F", help="the text column of table sources (default text)")
    q.add_argument("--val-fraction", type=float, default=None, metavar="F",
                   help="share of documents held out for validation (default 0.02)")
    q.add_argument("--encoding", default="utf-8", metavar="E",
                   help="the encoding of text files (default utf-8; e.g. latin-1): bytes not valid in it become "
                        "U+FFFD and are counted")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


class _Bar:
    """The progress bar, on a terminal only, drawn from the first chunk on and erased when done: a refused
    input shows only its line, and a finished prepare its summary line (a log gets no bar drawings)."""

    def __init__(self):
        self.bar = self.task = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

            self.bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task("tokenizing", total=total)
        self.bar.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run(args) -> int:
    from scaling.data import VAL_FRACTION
    from scaling.prepare import prepare

    t0 = time.perf_counter()
    bar = None if args.quiet or not sys.stderr.isatty() else _Bar()
    try:
        meta = prepare(args.source, args.out, tokenizer=args.tokenizer, text_field=args.text_field,
                       val_fraction=VAL_FRACTION if args.val_fraction is None else args.val_fraction,
                       encoding=args.encoding, on_progress=bar)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    size = train["bytes"] + val["bytes"]
    print(f"{args.out}: {meta['tokenizer']['kind']} vocab {meta['tokenizer']['vocab_size']:,} ({meta['dtype']}); "
          f"train {train['documents']:,} docs {train['tokens']:,} tokens, val {val['documents']:,} docs "
          f"{val['tokens']:,} tokens; {size / max(train['tokens'] + val['tokens'], 1):.2f} bytes/token; "
          f"{size / 1e6 / wall:.1f} MB/s in {duration(wall)}; fingerprint {meta['fingerprint']}")
    decoding = meta.get("decoding") or {}
    if decoding.get("replaced_bytes"):
        print(f"warning: {decoding['replaced_bytes']:,} bytes in {decoding['files']:,} files were not valid "
              f"{decoding['encoding']} and became U+FFFD (first: {decoding['first_file']}); if the source is in "
              "another encoding, prepare it again with --encoding", file=sys.stderr)
    print(f"train on it: scaling train corpus={args.out}", file=sys.stderr)
    return 0
