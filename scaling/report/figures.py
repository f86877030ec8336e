"""The report's figures (the Chinchilla paper's, for the user's own runs), drawn with matplotlib into
PNG and SVG files."""
from __future__ import annotations

import os
from dataclasses import dataclass

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display, and the same output on every machine
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import cm, colors  # noqa: E402

from scaling.laws import chinchilla_allocation
from scaling.report.fitting import Fits
from scaling.report.gather import ReportData
from scaling.report.spec import REFERENCE_LAW

plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "font.size": 9})


@dataclass(frozen=True)
class Figure:
    name: str
    caption: str
    png: str
    svg: str


def _size_colors(params: np.ndarray):
    norm = colors.LogNorm(vmin=float(np.min(params)), vmax=float(np.max(params)) * 1.0001)
    return cm.ScalarMappable(norm=norm, cmap="viridis")


def _chinchilla_line(published: dict):
    ref = published.get(REFERENCE_LAW)
    if not ref:
        return None
    p = ref["params"]
    alloc = chinchilla_allocation(p["A"], p["B"], p["alpha"], p["beta"])
    a, b, G = float(alloc["a"]), float(alloc["b"]), float(alloc["G"])
    return (lambda c: G * (np.asarray(c) / 6) ** a), (lambda c: (np.asarray(c) / 6) ** b / G), ref["title"]


def fig_training_curves(data: ReportData, fits: Fits, published: dict, ax):
    steps = data.steps
    mapper = _size_colors(data.runs["params"].to_numpy())
    for _run_id, rows in steps.groupby("run_id"):
        rows = rows.sort_values("step")
        ax.plot(rows["flops"], rows["loss"], "-", lw=1.2, alpha=0.85, color=mapper.to_rgba(rows["params"].iloc[0]))
    env = fits.results.get("envelope")
    if env is not None:
        order = np.argsort(env.flops)
        # the lowest loss any run reached at or below each C: spending more compute never makes it worse
        frontier = np.minimum.accumulate(np.asarray(env.loss, dtype=float)[order])
        ax.plot(np.asarray(env.flops)[order], frontier, "k--", lw=1.6,
                label="compute frontier (lowest loss at or below C)")
        ax.legend(loc="upper right")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs C = 6ND at each evaluation")
    ax.set_ylabel(f"eval loss ({data.loss_unit})")
    ax.set_title("Training curves by model size, with the compute frontier")
    ax.figure.colorbar(mapper, ax=ax, label="parameters N")


def fig_isoflop(data: ReportData, fits: Fits, published: dict, ax):
    """The isoFLOP fit draws itself (IsoflopFit.plot): runs go to budgets by their flops_budget, else by
    their FLOPs, so a runs table from a paper gets the figure too."""
    iso = fits.results["isoflop"]
    iso.plot(ax, data.runs)
    ax.set_ylabel(f"final eval loss ({data.loss_unit})")
    ax.set_title("IsoFLOP profiles: parabolas in log N and their minima (markers in the legend)")
    noise = getattr(iso, "noise", None) if iso is not None else None
    if noise is not None and noise.pooled.sd is not None:
        shallow = [b for b in iso.budgets if b.resolved is False]
        ax.text(0.01, 0.01, f"noise floor (seed SD) {noise.pooled.sd:.3g}; bars: standard error of a point's mean"
                + (f"; minimum not resolved at C = {', '.join(f'{b.flops:.2g}' for b in shallow)}" if shallow else ""),
                transform=ax.transAxes, fontsize=7, va="bottom")
    ax.legend(fontsize=7)


def fig_optimal(data: ReportData, fits: Fits, published: dict, axes):
    """N_opt(C) and D_opt(C): every approach's fitted power law with its 95% band, Chinchilla's line."""
    runs = data.runs
    lo, hi = float(runs["flops"].min()) / 3, max(float(runs["flops"].max()) * 3, max(data_budgets(fits) or [1]))
    grid = np.geomspace(lo, hi, 80)
    ref = _chinchilla_line(published)
    colors_by_law = {law: f"C{i}" for i, law in enumerate(fits.results)}
    for which, ax in zip(("params", "tokens"), axes):
        shown = list(runs[which].to_numpy(float))  # the sizes (tokens) trained set the axis with the lines
        for law, res in fits.results.items():
            mid, band = res.frontier(grid, which)
            if mid is None:
                continue
            color = colors_by_law[law]
            shown += list(mid)
            ax.plot(grid, mid, "-", color=color, label=res.label)
            if band is not None:
                ax.fill_between(grid, band[0], band[1], color=color, alpha=0.15)
        iso = fits.results.get("isoflop")
        if iso is not None:
            pts = [(b.flops, b.n_opt if which == "params" else b.d_opt) for b in iso.budgets if b.used]
            if pts:
                ax.plot(*zip(*pts), "o", color=colors_by_law["isoflop"], mec="k", label="isoFLOP minima")
        if ref is not None:
            ax.plot(grid, ref[0](grid) if which == "params" else ref[1](grid), "k:", label=ref[2])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(grid[0], grid[-1])
        clip_axis(ax, shown)
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel("N_opt (parameters)" if which == "params" else "D_opt (tokens)")
        ax.set_title(f"Compute-optimal {'model size' if which == 'params' else 'training tokens'}")
        ax.legend(fontsize=7)


def fig_by_corpus(data: ReportData, fits: Fits, published: dict, axes):
    """N_opt(C) and D_opt(C) of every law fitted per group (corpus, or the spec's `by:`), each with its 95%
    band: where bands of two groups part, their allocations differ."""
    runs = data.runs
    grid = np.geomspace(float(runs["flops"].min()) / 3, float(runs["flops"].max()) * 3, 80)
    styles = ["-", "--", ":", "-."]
    for which, ax in zip(("params", "tokens"), axes):
        k = 0
        for li, gf in enumerate(fits.by_group.values()):
            for group, res in gf.results.items():
                mid, band = res.frontier(grid, which)
                if mid is None:
                    continue
                color = f"C{k % 10}"
                k += 1
                ax.plot(grid, mid, styles[li % 4], color=color, label=f"{group}: {res.label}")
                if band is not None:
                    ax.fill_between(grid, band[0], band[1], color=color, alpha=0.15)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel("N_opt (parameters)" if which == "params" else "D_opt (tokens)")
        column = next(iter(fits.by_group.values())).column
        ax.set_title(f"Compute-optimal {'model size' if which == 'params' else 'tokens'} by {column}")
        ax.legend(fontsize=7)


def data_budgets(fits: Fits) -> list[float]:
    for res in fits.results.values():
        if res.optimal is not None:
            return [p.flops for p in res.optimal.at]
    return []


def fig_contours(data: ReportData, fits: Fits, published: dict, ax):
    res = fits.results["chinchilla"]
    runs = data.runs
    n = np.geomspace(runs["params"].min() / 3, runs["params"].max() * 3, 120)
    d = np.geomspace(runs["tokens"].min() / 3, runs["tokens"].max() * 3, 120)
    N, D = np.meshgrid(n, d)
    L = res.predict(params=N.ravel(), tokens=D.ravel()).reshape(N.shape)
    cs = ax.contourf(N, D, L, levels=20, cmap="viridis_r", alpha=0.85)
    ax.figure.colorbar(cs, ax=ax, label="predicted loss L(N, D)")
    c = np.geomspace(float((6 * N * D).min()), float((6 * N * D).max()), 60)
    alloc = res.allocate(c)
    ax.plot([p.params for p in alloc.at], [p.tokens for p in alloc.at], "w--", lw=2, label="efficient frontier")
    ax.scatter(runs["params"], runs["tokens"], c="white", edgecolors="k", s=28, label="runs", zorder=3)
    for budget in sorted(runs["flops"].round(-6).unique())[:: max(1, runs["flops"].nunique() // 4)]:
        ax.plot(n, budget / (6 * n), color="w", lw=0.5, alpha=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(n[0], n[-1])
    ax.set_ylim(d[0], d[-1])
    ax.set_xlabel("parameters N")
    ax.set_ylabel("tokens D")
    ax.set_title("Fitted L(N, D) with the compute-efficient frontier")
    ax.legend(loc="lower left", fontsize=7)


def fig_residuals(data: ReportData, fits: Fits, published: dict, axes):
    res = fits.results["chinchilla"]
    runs = data.runs
    pred = res.predict(params=runs["params"].to_numpy(), tokens=runs["tokens"].to_numpy())
    obs = runs["loss"].to_numpy()
    mapper = _size_colors(runs["params"].to_numpy())
    ax = axes[0]
    ax.scatter(obs, pred, c=mapper.to_rgba(runs["params"].to_numpy()), edgecolors="k", s=30)
    lims = [min(obs.min(), pred.min()) * 0.98, max(obs.max(), pred.max()) * 1.02]
    ax.plot(lims, lims, "k:", lw=1)
    ax.set_xlabel(f"observed eval loss ({data.loss_unit})")
    ax.set_ylabel("predicted by fitted L(N, D)")
    ax.set_title("Predicted against observed")
    ax = axes[1]
    ax.scatter(runs["flops"], 100 * (pred - obs) / obs, c=mapper.to_rgba(runs["params"].to_numpy()),
               edgecolors="k", s=30)
    ax.axhline(0, color="k", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("residual (predicted - observed), %")
    ax.set_title("Residuals")


def fig_holdout(data: ReportData, fits: Fits, published: dict, ax):
    rows = fits.holdout_rows
    ax.scatter(rows["params"], rows["loss"], color="k", label="observed (held out)", zorder=3)
    ax.scatter(rows["params"], rows["predicted"], marker="x", color="C3", s=60,
               label="predicted from the smaller budgets", zorder=4)
    for _, r in rows.iterrows():
        ax.plot([r["params"], r["params"]], [r["loss"], r["predicted"]], color="C3", lw=0.8)
    h = fits.holdout.holdout
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel(f"final eval loss ({data.loss_unit})")
    budget = _holdout_budget(rows)
    ax.set_title(f"Held-out budget{budget}: mean |error| {100 * h.mean_abs_rel_error:.2f}% over {h.n} runs")
    ax.legend(fontsize=7)


def _holdout_budget(rows) -> str:
    """' C = ...' when the held-out runs share one budget, else ''."""
    if "flops_budget" in rows.columns and rows["flops_budget"].nunique() == 1:
        return f" C = {float(rows['flops_budget'].iloc[0]):.3g}"
    return f" C ≈ {float(rows['flops'].median()):.3g}" if "flops" in rows.columns else ""


# Figures of fitted laws show the data's range of y times this factor either way, not wherever an
# extrapolated interval band goes (1e-15 to 1e38 from a poorly constrained exponent).
AXIS_MARGIN = 10.0


def clip_axis(ax, values) -> None:
    """Limit the y axis to [min / AXIS_MARGIN, max * AXIS_MARGIN] of the positive finite values."""
    v = np.asarray([x for x in np.ravel(values) if x is not None], dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v):
        ax.set_ylim(v.min() / AXIS_MARGIN, v.max() * AXIS_MARGIN)


MIN_TRANSFER_WIDTHS = 3  # widths, each swept over at least two learning rates, for an LR-transfer figure


@dataclass(frozen=True)
class TransferPanel:
    title: str
    curves: dict  # d_model -> (learning rates ascending, mean final loss at each)


def lr_transfer_panels(runs) -> list[TransferPanel]:
    """What the LR-transfer figure draws: per parametrization (when the runs say; standard first), each
    width's mean final loss (over seeds) at each learning rate, for the widths swept over two or more rates;
    a panel only where MIN_TRANSFER_WIDTHS widths are. A sweep over several budgets is drawn at the largest
    that qualifies (the figure is about the optimum's drift with width; budgets would add one of their own)."""
    if not {"lr", "d_model", "loss"} <= set(runs.columns):
        return []
    runs = runs.dropna(subset=["lr", "d_model", "loss"])
    kinds = runs["parametrization"].fillna("standard") if "parametrization" in runs.columns else None
    panels = []
    for kind in [None] if kinds is None else sorted(kinds.unique(), key=lambda k: (k != "standard", k)):
        mine = runs if kind is None else runs[kinds == kind]
        budgets = sorted(mine["flops_budget"].dropna().unique(), reverse=True) if "flops_budget" in mine else []
        for budget in budgets or [None]:
            rows = mine if budget is None else mine[mine["flops_budget"] == budget]
            means = rows.groupby(["d_model", "lr"])["loss"].mean()
            curves = {int(w): (means[w].index.to_numpy(float), means[w].to_numpy(float))
                      for w in means.index.get_level_values(0).unique() if len(means[w]) >= 2}
            if len(curves) >= MIN_TRANSFER_WIDTHS:
                name = {"mup": "muP", "standard": "Standard parametrization", None: "Learning rate by width"}
                where = f", C = {budget:.2g}" if len(budgets) > 1 else ""
                panels.append(TransferPanel(f"{name.get(kind, kind)}{where}", curves))
                break
    return panels


def fig_lr_transfer(data: ReportData, fits: Fits, published: dict, axes):
    """Final loss against peak lr, one line per width: under muP the best lr should not move with width."""
    panels = lr_transfer_panels(data.runs)
    for panel, ax in zip(panels, np.atleast_1d(axes)):
        mapper = cm.ScalarMappable(norm=colors.LogNorm(min(panel.curves) / 1.5, max(panel.curves)), cmap="viridis")
        for width, (lrs, loss) in sorted(panel.curves.items()):
            best = lrs[int(np.argmin(loss))]
            ax.plot(lrs, loss, "o-", color=mapper.to_rgba(width), label=f"d_model {width} (best lr {best:.2g})")
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate")
        ax.set_ylabel(f"final eval loss ({data.loss_unit})")
        ax.set_title(panel.title)
        ax.legend(fontsize=7)


FIGURES = [
    ("training_curves", "Loss against FLOPs by model size, with the compute frontier", (7, 4.2), 1,
     lambda d, f, p: d.steps is not None and len(d.steps) > 0, fig_training_curves),
    ("isoflop_profiles", "IsoFLOP profiles with parabolas and minima; points with seed replicates as their mean "
     "with its standard error", (7, 4.2), 1,
     lambda d, f, p: "isoflop" in f.results, fig_isoflop),
    ("compute_optimal", "N_opt(C) and D_opt(C) with fitted power laws, 95% bands and Chinchilla's line; "
     f"C from a third of the smallest run to the largest target budget, y within {AXIS_MARGIN:g}x of the "
     "sizes (tokens) trained and the fitted lines",
     (11, 4.2), 2, lambda d, f, p: bool(f.results), fig_optimal),
    ("by_corpus", "N_opt(C) and D_opt(C) fitted per corpus (or per group of the spec's by:), each with its 95% "
     "band", (11, 4.2), 2,
     lambda d, f, p: bool(f.by_group), fig_by_corpus),
    ("loss_contours", "L(N, D) contours with the efficient frontier and the runs", (7, 5), 1,
     lambda d, f, p: "chinchilla" in f.results, fig_contours),
    ("predicted_vs_observed", "Predicted against observed loss, with residuals", (11, 4.2), 2,
     lambda d, f, p: "chinchilla" in f.results, fig_residuals),
    ("holdout", "The held-out largest budget (named in the title) predicted against observed", (7, 4.2), 1,
     lambda d, f, p: f.holdout_rows is not None and len(f.holdout_rows) > 0, fig_holdout),
    # a panel per parametrization: n_axes (and the width, one panel's here) from the runs
    ("lr_transfer", "Learning-rate transfer: final loss against peak learning rate, one line per width (mean over "
     "seeds); with muP the best rate should stay put as the width grows", (5.5, 4.2),
     lambda d: len(lr_transfer_panels(d.runs)), lambda d, f, p: bool(lr_transfer_panels(d.runs)), fig_lr_transfer),
]


def draw_figures(data: ReportData, fits: Fits, published: dict, out_dir: str) -> list[Figure]:
    """Every figure that applies to these runs and fits, as PNG and SVG under out_dir/figures."""
    fig_dir = os.path.join(out_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    made = []
    for name, caption, size, n_axes, applies, draw in FIGURES:
        if not applies(data, fits, published):
            continue
        if callable(n_axes):  # as many panels as the runs call for, each `size` large
            n_axes = n_axes(data)
            size = (size[0] * n_axes, size[1])
        fig, axes = plt.subplots(1, n_axes, figsize=size, constrained_layout=True)
        draw(data, fits, published, axes)
        png, svg = os.path.join(fig_dir, f"{name}.png"), os.path.join(fig_dir, f"{name}.svg")
        fig.savefig(png)
        fig.savefig(svg)
        plt.close(fig)
        made.append(Figure(name, caption, png, svg))
    return made
