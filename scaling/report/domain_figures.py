"""Figures of the laws over several evaluation domains, for the report's domains section: the loss-to-loss
law of every pair of domains (one panel each), written as PNG and SVG like the report's other figures."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping

from scaling.report.figures import Figure, plt


def loss_to_loss_figure(fits: Mapping, out_dir: str, name: str = "loss_to_loss") -> Figure:
    """One panel per pair (x, y) of `fits` (`scaling.laws.fit_pairs`): the runs, held-out ones hollow, and
    the fitted L_y = E_y + K (L_x - E_x)^kappa; under out_dir/figures."""
    if not fits:
        raise ValueError("no loss-to-loss fit to draw")
    fig_dir = os.path.join(out_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    cols = min(3, len(fits))
    rows = math.ceil(len(fits) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), constrained_layout=True, squeeze=False)
    for ax, ((x, y), result) in zip(axes.flat, fits.items()):
        result.plot(ax, color="C0")
        ax.set_title(f"{y} from {x}", fontsize=9)
    for ax in list(axes.flat)[len(fits):]:
        ax.set_visible(False)
    png, svg = os.path.join(fig_dir, f"{name}.png"), os.path.join(fig_dir, f"{name}.svg")
    fig.savefig(png)
    fig.savefig(svg)
    plt.close(fig)
    caption = (f"Loss-to-loss: each domain's loss against another's across runs, {len(fits)} pairs, with the "
               "fitted shifted power law L_y = E_y + K (L_x - E_x)^kappa (held-out runs hollow)")
    return Figure(name, caption, png, svg)
