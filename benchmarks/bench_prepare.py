"""How fast `scaling data prepare` tokenizes, and how much memory it takes, on a large generated corpus.

    python benchmarks/bench_prepare.py --gb 2 --work /tmp/prep

Writes GB of text (Python standard library sources, shuffled into 1 MB documents, each made unique by
a header line), trains a byte-level BPE (vocabulary 8192) on a 20 MB sample of it, then runs `scaling
data prepare` over the whole corpus with that tokenizer in a child process and reports wall time, MB/s
and the child's peak resident memory (getrusage). Nothing here is a pass/fail target.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time

from scaling.data import stdlib_files


def generate(folder: str, total_bytes: int, doc_bytes: int = 1 << 20, seed: int = 0) -> int:
    root, paths = stdlib_files()
    texts = []
    for p in sorted(paths):
        with open(p, "rb") as fh:
            texts.append(fh.read().decode("utf-8", errors="replace"))
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    written, i = 0, 0
    while written < total_bytes:
        parts, size = [f"# document {i}\n"], 0
        while size < doc_bytes:
            t = rng.choice(texts)
            parts.append(t)
            size += len(t)
        doc = "".join(parts)
        with open(os.path.join(folder, f"doc{i:06d}.txt"), "w", encoding="utf-8") as fh:
            fh.write(doc)
        written += len(doc.encode("utf-8"))
        i += 1
    return written


def prepare(source: str, out: str, tokenizer: str) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of `scaling data prepare` in a child process."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scaling.cli", "data", "prepare", source, "--out", out,
                    "--tokenizer", tokenizer, "--quiet"], check=True)
    wall = time.perf_counter() - t0
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--work", default="/tmp/bench-prepare")
    args = ap.parse_args()
    big, sample = os.path.join(args.work, "text"), os.path.join(args.work, "sample")
    if not os.path.isdir(big):
        print(f"generating {args.gb} GB of text in {big} ...", flush=True)
        generate(big, int(args.gb * 1e9))
        generate(sample, 20 << 20, doc_bytes=64 << 10, seed=1)
    size = sum(os.path.getsize(os.path.join(big, f)) for f in os.listdir(big))
    for name in ("bpe", "corpus"):
        subprocess.run(["rm", "-rf", os.path.join(args.work, name)], check=True)
    wall, rss = prepare(sample, os.path.join(args.work, "bpe"), "bpe:8192")
    print(f"BPE 8192 trained on {20} MB: {wall:.1f} s, peak RSS {rss:.0f} MB", flush=True)
    wall, rss = prepare(big, os.path.join(args.work, "corpus"), os.path.join(args.work, "bpe", "tokenizer.json"))
    print(f"prepare {size / 1e9:.2f} GB with it: {wall:.0f} s, {size / 1e6 / wall:.1f} MB/s, "
          f"peak RSS {rss:.0f} MB (the largest child so far)", flush=True)


if __name__ == "__main__":
    main()
