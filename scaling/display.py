"""How numbers and durations read on a terminal and in reports: one place, so they agree everywhere."""
from __future__ import annotations

import math


def number(x, digits: int = 4, missing: str = "–") -> str:
    """Significant digits, scientific notation outside [1e-3, 1e5); non-finite values as they are."""
    if x is None:
        return missing
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def duration(seconds) -> str:
    """h:mm:ss or m:ss; '?' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def short(x: float) -> str:
    """A count in three significant digits with a k/M/G/T/P/E suffix (run ids and names: no '+')."""
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}".replace("e+", "e")
    return f"{x:.3g}".replace("e+", "e")


def aligned(rows, header, indent: str = "") -> list[str]:
    """A plain-text table: the header and each row, columns padded to their widest cell; floats and None
    shown by `number`."""
    rows = [tuple(number(c) if isinstance(c, float) or c is None else str(c) for c in r) for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return [indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
