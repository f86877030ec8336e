"""The effective-compute multiplier k(C) of each pair of groups, with its 95% band: one figure that
`scaling compare --figure` writes and a report with a `by:` comparison can place beside its laws."""
from __future__ import annotations

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display, and the same output on every machine
import matplotlib.pyplot as plt  # noqa: E402


def plot_multipliers(comparison, ax, points: int = 120):
    """k(C) from the data's smallest compute to the largest budget asked (or 100x the data), one line per
    pair, its bootstrap band shaded, the budgets marked, k = 1 (no difference) dashed, crossovers dotted."""
    lo, hi = comparison.data_flops
    top = max(hi * 100.0, *comparison.budgets)
    flops = np.geomspace(lo, top, points)
    for i, pair in enumerate(comparison.pairs):
        color = f"C{i}"
        k, band = comparison.curve(pair.a, pair.b, flops)
        ax.plot(flops, k, "-", color=color, label=f"{pair.b} over {pair.a}")
        if band is not None:
            ax.fill_between(flops, np.where(np.isfinite(band[0]), band[0], np.nan),
                            np.where(np.isfinite(band[1]), band[1], np.nan), color=color, alpha=0.2, lw=0)
        ax.plot([m.flops for m in pair.separate], [m.k for m in pair.separate], "o", color=color, mec="k")
        if pair.crossover.flops is not None and pair.crossover.flops <= top:
            ax.axvline(pair.crossover.flops, color=color, ls=":", lw=1)
    ax.axhline(1.0, color="k", ls="--", lw=1)
    ax.axvspan(lo, hi, color="0.9", zorder=0, label="compute of the runs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("k(C): B at C matches A at k C")
    ax.legend(fontsize=7)
    return ax


def save_multiplier_figure(comparison, path: str) -> str:
    """Draw `plot_multipliers` into `path` (its extension picks the format: .png, .svg, .pdf)."""
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    try:
        plot_multipliers(comparison, ax)
        ax.set_title(f"effective-compute multiplier by {comparison.column}")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
