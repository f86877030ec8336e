"""Figures of the laws over several evaluation domains, for the report's domains section: the loss-to-loss
law of every pair of domains (one panel each), the mixing law's predicted against observed losses per scale,
the accuracy sigmoid with its data; written as PNG and SVG like the report's other figures."""
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
    caption = (f"Loss-to-loss: each domain's loss against another's across runs, {len(fits)} pairs, with the "
               "fitted shifted power law L_y = E_y + K (L_x - E_x)^kappa (held-out runs hollow)")
    return _save(fig, fig_dir, name, caption)


def mixture_figure(result, out_dir: str, name: str = "mixture") -> Figure:
    """A `MixtureFit`: predicted against observed loss per evaluation domain, a panel per scale (held-out
    mixtures hollow), the optimum of each scale in its title."""
    fig_dir = os.path.join(out_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    n = len(result.scales)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.0), constrained_layout=True, squeeze=False)
    for i, (ax, scale) in enumerate(zip(axes.flat, result.scales)):
        result.plot(ax, scale=i)
        best = ", ".join(f"{k} {v:.2f}" for k, v in scale.optimum.proportions.items())
        ax.set_title(f"{scale.scale}\nbest mixture: {best}", fontsize=8)
    caption = ("Data mixing law: each evaluation domain's loss predicted by L_i(r) = c_i + k_i exp(sum_j t_ij r_j) "
               "against the loss observed, per scale (held-out mixtures hollow)")
    return _save(fig, fig_dir, name, caption)


def accuracy_figure(result, out_dir: str, name: str = "accuracy") -> Figure:
    """An `AccuracyFit`: the runs' accuracy against loss, the sigmoid, and the budgets it was carried to."""
    fig_dir = os.path.join(out_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4.2), constrained_layout=True)
    result.plot(ax)
    ax.set_title(f"{result.task}: accuracy as a sigmoid of {result.x}", fontsize=9)
    caption = (f"Accuracy on {result.task} against {result.x}, the fitted sigmoid, and the accuracy predicted at "
               "each budget through the loss law (bars: 95% intervals of both steps)")
    return _save(fig, fig_dir, name, caption)


def _save(fig, fig_dir: str, name: str, caption: str) -> Figure:
    png, svg = os.path.join(fig_dir, f"{name}.png"), os.path.join(fig_dir, f"{name}.svg")
    fig.savefig(png)
    fig.savefig(svg)
    plt.close(fig)
    return Figure(name, caption, png, svg)
