"""Three text domains every machine with python3 and a C toolchain has, as `scaling data prepare` sources
(`domain:python`, `domain:prose`, `domain:c`, or several joined by `+`, e.g. `domain:python+prose+c` to
train one tokenizer on all three):

- `python`: the running Python's standard library sources (as `corpus=stdlib` reads them: no tests, no
  site-packages), one document per file;
- `prose`:  English prose: the language reference's topics (`pydoc_data/topics.py`, what `help()` shows)
  and the long descriptions of the installed packages (the body of each `*.dist-info/METADATA`), cut at
  paragraph breaks into documents of about PROSE_DOC_CHARS characters;
- `c`:      C headers under /usr/include (`*.h`; the C++ library's folders left out), one per file.

Code domains are capped at CAP_BYTES each, taking files in the order of a hash of their relative path (a
spread over the tree, the same on every machine that has the same files), so a prepare stays quick and
the domains stay within a few times each other's size. What each holds differs between machines (the
Python version, the packages installed, the -dev packages behind /usr/include): a corpus's fingerprint
says which text it was.
"""
from __future__ import annotations

import glob
import hashlib
import os
import sysconfig
from collections.abc import Callable, Iterator

from scaling.data import stdlib_files
from scaling.errors import UsageError

PREFIX = "domain:"
NAMES = ("python", "prose", "c")
CAP_BYTES = 4 << 20
PROSE_DOC_CHARS = 4000
MIN_DESCRIPTION_CHARS = 200  # shorter METADATA bodies are a line or a link, not prose
INCLUDE = "/usr/include"


def parse(spec: str) -> tuple[str, ...]:
    """`domain:a+b` -> ("a", "b"); an unknown or repeated name is refused."""
    names = tuple(n.strip() for n in spec[len(PREFIX):].split("+"))
    for name in names:
        if name not in NAMES:
            raise UsageError(f"{spec!r}: unknown domain {name!r} (domains: {', '.join(NAMES)}; join them with +)")
    if len(set(names)) != len(names):
        raise UsageError(f"{spec!r}: a domain is named twice")
    return names


def _by_hash(root: str, paths: list[str], cap: int) -> list[str]:
    """Files in the order of their relative path's hash, up to `cap` bytes (at least one)."""
    ordered = sorted(paths, key=lambda p: hashlib.sha256(os.path.relpath(p, root).encode()).digest())
    out, size = [], 0
    for path in ordered:
        n = os.path.getsize(path)
        if out and size + n > cap:
            continue  # a smaller file further on may still fit
        out.append(path)
        size += n
    return sorted(out)


def _topics() -> str | None:
    try:
        import pydoc_data.topics as topics
    except ImportError:
        return None
    return topics.__file__


def _metadata_files() -> list[str]:
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    return sorted({p for root in roots for p in glob.glob(os.path.join(root, "*.dist-info", "METADATA"))})


def files(name: str) -> list[str]:
    """The files a domain reads (for the size of the source; prose also reads them differently)."""
    if name == "python":
        root, paths = stdlib_files()
        return _by_hash(root, paths, CAP_BYTES)
    if name == "prose":
        topics = _topics()
        return ([topics] if topics else []) + _metadata_files()
    paths = [p for p in glob.glob(os.path.join(INCLUDE, "**", "*.h"), recursive=True)
             if "c++" not in os.path.relpath(p, INCLUDE).split(os.sep) and os.path.isfile(p)]
    return _by_hash(INCLUDE, paths, CAP_BYTES)


def _paragraphs(text: str) -> Iterator[str]:
    """`text` cut at blank lines into pieces of about PROSE_DOC_CHARS characters."""
    piece = []
    size = 0
    for para in text.split("\n\n"):
        piece.append(para)
        size += len(para) + 2
        if size >= PROSE_DOC_CHARS:
            yield "\n\n".join(piece).strip() + "\n"
            piece, size = [], 0
    if "".join(piece).strip():
        yield "\n\n".join(piece).strip() + "\n"


def _prose(read: Callable[[str], str]) -> Iterator[str]:
    topics = _topics()
    if topics:
        import pydoc_data.topics as module

        for key in sorted(module.topics):
            yield from _paragraphs(module.topics[key])
    seen = set()
    for path in _metadata_files():
        _, _, body = read(path).partition("\n\n")  # the headers end at the first blank line
        if len(body.strip()) >= MIN_DESCRIPTION_CHARS and body not in seen:
            seen.add(body)  # a package installed twice describes itself twice
            yield from _paragraphs(body)


def documents(spec: str, read: Callable[[str], str]) -> Iterator[str]:
    """The documents of `domain:...`, domain after domain; `read(path)` decodes a file (counting what
    its encoding could not decode)."""
    for name in parse(spec):
        if name == "prose":
            yield from _prose(read)
        else:
            for path in files(name):
                yield read(path)


def check(spec: str) -> list[str]:
    """The files of `domain:...`; a domain this machine lacks is refused in one line."""
    out = []
    for name in parse(spec):
        found = files(name)
        if not found:
            where = {"python": "the standard library's sources", "prose": "pydoc_data or installed packages",
                     "c": f"{INCLUDE}/**/*.h (install a C toolchain's headers, e.g. libc6-dev)"}[name]
            raise UsageError(f"{spec!r}: this machine has no {name} text ({where})")
        out += found
    return out
