"""The scaling-law report: the Chinchilla paper's figures for the user's own runs, the fitted laws with
their uncertainty, the compute-optimal answer at the spec's budgets, as one self-contained HTML file,
Markdown, the fit JSON, the runs CSV and PNG/SVG figures; optionally logged to a W&B analysis run."""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from scaling.display import number as fmt
from scaling.errors import UsageError

PUBLISHED_PATH = Path(__file__).resolve().parent.parent / "analysis" / "published.yaml"
REFERENCE_LAW = "chinchilla_unrounded"


@dataclass(frozen=True)
class ReportSpec:
    """Which runs, which laws, which target budgets (a YAML file in analysis/, or defaults)."""

    title: str = "Scaling-law report"
    sweep: str | None = None
    runs: str | None = None
    laws: tuple[str, ...] = ("chinchilla", "isoflop", "envelope")
    budgets: tuple[float, ...] = (1e18, 1e21, 1e24)
    holdout: str | int = "largest-budget"
    bootstrap: int = 1000
    huber_delta: float = 1e-3
    seed: int = 0
    published: str | None = None

    @classmethod
    def load(cls, path: str | None, **overrides) -> "ReportSpec":
        from scaling.config import load_yaml

        values = load_yaml(path) if path else {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"{path}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(known))})")
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            if "budgets" in values:
                values["budgets"] = tuple(float(b) for b in values["budgets"])
            if "laws" in values:
                values["laws"] = tuple(str(x) for x in values["laws"])
            for key in ("bootstrap", "seed"):
                if key in values:
                    values[key] = int(values[key])
            if "huber_delta" in values:
                values["huber_delta"] = float(values["huber_delta"])
        except (TypeError, ValueError):
            raise UsageError(f"{path}: budgets must be numbers, bootstrap and seed integers") from None
        if any(not b > 0 for b in values.get("budgets", ())):
            raise UsageError(f"{path}: budgets must be positive FLOP counts")
        from scaling.laws import LAWS

        bad = [x for x in values.get("laws", ()) if x not in LAWS]
        if bad:
            raise UsageError(f"{path}: unknown law {bad[0]!r} (allowed: {', '.join(LAWS)})")
        return cls(**values)


@dataclass
class ReportData:
    runs: pd.DataFrame  # one row per finished run (the fit's input)
    steps: pd.DataFrame | None = None  # one row per evaluated checkpoint (training curves)
    excluded: list[dict] = field(default_factory=list)  # {"run_id", "status", "reason"}
    source: str = ""


def load_published(path: str | None = None) -> dict:
    path = path or PUBLISHED_PATH
    try:
        with open(path) as fh:
            return yaml.safe_load(fh) or {}
    except OSError:
        return {}


def gather(home, sweep: str | None = None, csv: str | None = None) -> ReportData:
    """The runs of a sweep from the run home (with per-step rows and exclusions), or a runs CSV."""
    if csv:
        from scaling.laws import load_runs

        load_runs(csv)  # validates the file with the fitter's own checks and messages
        frame = pd.read_csv(csv) if not csv.endswith(".parquet") else pd.read_parquet(csv)
        steps = frame if "step" in frame.columns else None
        if steps is not None:  # the final evaluation of each run is the fit's point
            frame = steps.sort_values("step").groupby(steps.get("run_id", steps.index), sort=False).tail(1)
        return ReportData(runs=frame.reset_index(drop=True), steps=steps, source=csv)
    from scaling.store import RunHome, runs_table

    home = home if isinstance(home, RunHome) else RunHome(home)
    if sweep is None:
        raise UsageError("give --sweep SWEEP or a RUNS.csv")
    try:
        runs = home.sweep_runs(sweep)
    except Exception:  # noqa: BLE001 - a missing DB or table is a user's wrong sweep/home
        runs = []
    if not runs:
        raise UsageError(f"sweep {sweep!r} not found in {home.root} (see `scaling sweep status`)")
    excluded = [{"run_id": r["run_id"], "status": r["status"], "reason": r.get("reason") or r["status"]}
                for r in runs if r["status"] != "complete"]
    table = runs_table(home, sweep)
    steps = runs_table(home, sweep, steps=True)
    if "flops_budget" not in table.columns:  # the isoFLOP grid's intended budget, from each run's config
        budget = {r["run_id"]: (json.loads(r["config"]) if isinstance(r["config"], str) else r["config"]).get(
            "flops_budget") for r in runs}
        for frame in (table, steps):
            frame["flops_budget"] = frame["run_id"].map(budget).astype(float)
    return ReportData(runs=table, steps=steps, excluded=excluded, source=f"sweep {sweep} in {home.root}")


# ---- fitting -----------------------------------------------------------------------------------
@dataclass
class Fits:
    results: dict  # law -> fit result
    errors: dict  # law -> why it could not be fitted
    holdout: object | None = None  # chinchilla fitted without the largest budget
    holdout_rows: pd.DataFrame | None = None


def fit_all(data: ReportData, spec: ReportSpec, progress=print) -> Fits:
    from scaling.laws import fit, holdout_split, load_runs

    table = load_runs(data.runs)
    results, errors = {}, {}
    for law in spec.laws:
        source = table
        if law == "envelope":
            if data.steps is None or "step" not in data.steps.columns:
                errors[law] = "needs per-step evaluation rows"
                continue
            source = load_runs(data.steps)
        progress(f"fitting {law} ({spec.bootstrap} bootstrap resamples)")
        try:
            results[law] = fit(source, law, huber_delta=spec.huber_delta, bootstrap=spec.bootstrap, seed=spec.seed,
                               budgets=spec.budgets)
        except UsageError as err:
            errors[law] = str(err)
    fits = Fits(results, errors)
    k = _holdout_runs(data.runs, spec.holdout)
    if "chinchilla" in results and k:
        try:
            fits.holdout = fit(table, "chinchilla", huber_delta=spec.huber_delta, bootstrap=0, seed=spec.seed,
                               holdout=k)
            _, held = holdout_split(table, k)
            rows = held.frame.copy()
            rows["predicted"] = fits.holdout.predict(params=rows["params"].to_numpy(), tokens=rows["tokens"].to_numpy())
            fits.holdout_rows = rows
        except UsageError as err:
            errors["holdout"] = str(err)
    return fits


def _holdout_runs(runs: pd.DataFrame, setting) -> int:
    """'largest-budget': every run of the largest isoFLOP budget; an integer: that many runs."""
    if setting in (None, 0, "none", False):
        return 0
    if setting == "largest-budget":
        if "flops_budget" in runs.columns and runs["flops_budget"].notna().all():
            budgets = runs["flops_budget"]
            if budgets.nunique() < 2:
                return 0
            return int((budgets == budgets.max()).sum())
        return max(1, len(runs) // 5)
    return int(setting)


# ---- figures -----------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "font.size": 9})
    return plt


def _size_colors(params: np.ndarray):
    from matplotlib import cm, colors

    norm = colors.LogNorm(vmin=float(np.min(params)), vmax=float(np.max(params)) * 1.0001)
    return cm.ScalarMappable(norm=norm, cmap="viridis")


def _chinchilla_line(published: dict):
    ref = published.get(REFERENCE_LAW)
    if not ref:
        return None
    p = ref["params"]
    a = p["beta"] / (p["alpha"] + p["beta"])
    b = p["alpha"] / (p["alpha"] + p["beta"])
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    return (lambda c: G * (np.asarray(c) / 6) ** a), (lambda c: (np.asarray(c) / 6) ** b / G), ref["title"]


def fig_training_curves(data: ReportData, fits: Fits, published: dict, ax):
    steps = data.steps
    mapper = _size_colors(data.runs["params"].to_numpy())
    for run_id, rows in steps.groupby("run_id"):
        rows = rows.sort_values("step")
        ax.plot(rows["flops"], rows["loss"], "-", lw=1.2, alpha=0.85, color=mapper.to_rgba(rows["params"].iloc[0]))
    env = fits.results.get("envelope")
    if env is not None:
        ax.plot(env.flops, env.loss, "k--", lw=1.6, label="compute frontier (min over runs)")
        ax.legend(loc="upper right")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs C = 6ND at each evaluation")
    ax.set_ylabel("eval loss (nats/token)")
    ax.set_title("Training curves by model size, with the compute frontier")
    ax.figure.colorbar(mapper, ax=ax, label="parameters N")


def fig_isoflop(data: ReportData, fits: Fits, published: dict, ax):
    iso = fits.results.get("isoflop")
    runs = data.runs
    budgets = sorted(runs["flops_budget"].dropna().unique()) if "flops_budget" in runs.columns else []
    cmap = _plt().get_cmap("plasma")
    for i, c in enumerate(budgets):
        color = cmap(0.1 + 0.8 * i / max(1, len(budgets) - 1))
        rows = runs[runs["flops_budget"] == c].sort_values("params")
        ax.plot(rows["params"], rows["loss"], "o", color=color, label=f"C = {c:.2g}")
        prof = next((b for b in iso.budgets if math.isclose(b.flops, c, rel_tol=1e-6)), None) if iso else None
        if prof is not None and getattr(prof, "parabola", None) is not None:
            c0, c1, c2, centre = prof.parabola
            x = np.linspace(np.log(rows["params"].min()) - 0.2, np.log(rows["params"].max()) + 0.2, 100) - centre
            ax.plot(np.exp(x + centre), c0 + c1 * x + c2 * x**2, "-", color=color, lw=1)
        if prof is not None and prof.n_opt is not None:
            ax.plot([prof.n_opt], [prof.loss_opt], "*" if prof.interior else "x", ms=12, color=color, mec="k")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final eval loss (nats/token)")
    ax.set_title("IsoFLOP profiles: parabolas in log N and their minima (x: outside the sampled sizes)")
    ax.legend(fontsize=7)


def fig_optimal(data: ReportData, fits: Fits, published: dict, axes):
    """N_opt(C) and D_opt(C): every approach's fitted power law with its 95% band, Chinchilla's line."""
    runs = data.runs
    lo, hi = float(runs["flops"].min()) / 3, max(float(runs["flops"].max()) * 3, max(data_budgets(fits) or [1]))
    grid = np.geomspace(lo, hi, 80)
    ref = _chinchilla_line(published)
    styles = {"chinchilla": ("C0", "Approach 3 (parametric)"), "isoflop": ("C1", "Approach 2 (isoFLOP)"),
              "envelope": ("C2", "Approach 1 (envelope)")}
    for which, ax in zip(("params", "tokens"), axes):
        for law, (color, label) in styles.items():
            res = fits.results.get(law)
            if res is None:
                continue
            mid, band = _optimal_curve(res, grid, which)
            if mid is None:
                continue
            ax.plot(grid, mid, "-", color=color, label=label)
            if band is not None:
                ax.fill_between(grid, band[0], band[1], color=color, alpha=0.15)
        iso = fits.results.get("isoflop")
        if iso is not None:
            pts = [(b.flops, b.n_opt if which == "params" else b.d_opt) for b in iso.budgets if b.interior]
            if pts:
                ax.plot(*zip(*pts), "o", color="C1", mec="k", label="isoFLOP minima")
        if ref is not None:
            ax.plot(grid, ref[0](grid) if which == "params" else ref[1](grid), "k:", label=ref[2])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel("N_opt (parameters)" if which == "params" else "D_opt (tokens)")
        ax.set_title(f"Compute-optimal {'model size' if which == 'params' else 'training tokens'}")
        ax.legend(fontsize=7)


def data_budgets(fits: Fits) -> list[float]:
    for res in fits.results.values():
        if getattr(res, "optimal", None) is not None:
            return [p.flops for p in res.optimal.at]
    return []


def _optimal_curve(res, grid, which):
    if res.law == "chinchilla":
        alloc = res.allocate(grid)
        mid = np.array([getattr(p, which) for p in alloc.at])
        if res.samples is not None and len(res.samples) > 2:
            ci = [p.ci95.get(which) for p in alloc.at]
            if all(c is not None for c in ci):
                return mid, np.array(ci).T
        return mid, None
    law = res.n_opt if which == "params" else res.d_opt
    if law is None or not np.isfinite(law.exponent):
        return None, None
    mid = np.asarray(law(grid), dtype=float)
    band = None
    if law.samples is not None:
        ci = [law.interval_at(c) for c in grid]
        if all(c is not None for c in ci):
            band = np.array(ci).T
    return mid, band


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
    ax.set_xlabel("observed eval loss")
    ax.set_ylabel("predicted by fitted L(N, D)")
    ax.set_title("Predicted against observed")
    ax = axes[1]
    ax.scatter(runs["flops"], 100 * (pred - obs) / obs, c=mapper.to_rgba(runs["params"].to_numpy()), edgecolors="k", s=30)
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
    ax.set_ylabel("final eval loss (nats/token)")
    ax.set_title(f"Held-out largest budget: mean |error| {100 * h.mean_abs_rel_error:.2f}% over {h.n} runs")
    ax.legend(fontsize=7)


FIGURES = [
    ("training_curves", "Loss against FLOPs by model size, with the compute frontier", (7, 4.2), 1,
     lambda d, f, p: d.steps is not None and len(d.steps) > 0, fig_training_curves),
    ("isoflop_profiles", "IsoFLOP profiles with parabolas and minima", (7, 4.2), 1,
     lambda d, f, p: "flops_budget" in d.runs.columns and "isoflop" in f.results, fig_isoflop),
    ("compute_optimal", "N_opt(C) and D_opt(C) with fitted power laws, 95% bands and Chinchilla's line",
     (11, 4.2), 2, lambda d, f, p: bool(f.results), fig_optimal),
    ("loss_contours", "L(N, D) contours with the efficient frontier and the runs", (7, 5), 1,
     lambda d, f, p: "chinchilla" in f.results, fig_contours),
    ("predicted_vs_observed", "Predicted against observed loss, with residuals", (11, 4.2), 2,
     lambda d, f, p: "chinchilla" in f.results, fig_residuals),
    ("holdout", "The held-out largest budget predicted against observed", (7, 4.2), 1,
     lambda d, f, p: f.holdout_rows is not None and len(f.holdout_rows) > 0, fig_holdout),
]


def draw_figures(data: ReportData, fits: Fits, published: dict, out_dir: str) -> list[dict]:
    plt = _plt()
    fig_dir = os.path.join(out_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    made = []
    for name, caption, size, n_axes, applies, draw in FIGURES:
        if not applies(data, fits, published):
            continue
        fig, axes = plt.subplots(1, n_axes, figsize=size, constrained_layout=True)
        draw(data, fits, published, axes)
        png, svg = os.path.join(fig_dir, f"{name}.png"), os.path.join(fig_dir, f"{name}.svg")
        fig.savefig(png)
        fig.savefig(svg)
        plt.close(fig)
        made.append({"name": name, "caption": caption, "png": png, "svg": svg})
    return made


# ---- tables ------------------------------------------------------------------------------------
def fmt_ci(ci) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "–"


def with_ci(value, ci) -> str:
    return fmt(value) + (f" {fmt_ci(ci)}" if ci else "")


def parameter_table(fits: Fits, published: dict) -> tuple[list[str], list[list[str]]]:
    """Our Chinchilla-form parameters with intervals beside the published fits."""
    names = ["E", "A", "B", "alpha", "beta", "a", "b"]
    header = ["source"] + names
    rows = []
    res = fits.results.get("chinchilla")
    if res is not None:
        p = dict(res.params)
        ci = dict(res.ci95)
        if res.optimal is not None:
            p.update(a=res.optimal.a, b=res.optimal.b)
            ci.update({k: v for k, v in res.optimal.ci95.items() if k in ("a", "b")})
        rows.append(["this study (Approach 3)"] + [f"{fmt(p.get(k))} {fmt_ci(ci.get(k))}" for k in names])
    for key, ref in published.items():
        if ref.get("form") != "chinchilla":
            continue
        q = dict(ref["params"])
        q["a"] = q["beta"] / (q["alpha"] + q["beta"])
        q["b"] = q["alpha"] / (q["alpha"] + q["beta"])
        cis = ref.get("ci95", {})
        rows.append([ref["title"]] + [fmt(q[k]) + (f" {fmt_ci(cis[k])}" if k in cis else "") for k in names])
    return header, rows


def exponent_table(fits: Fits, published: dict) -> tuple[list[str], list[list[str]]]:
    header = ["approach", "N_opt ∝ C^a: a [95%]", "D_opt ∝ C^b: b [95%]"]
    rows = []
    res = fits.results.get("chinchilla")
    if res is not None and res.optimal is not None:
        rows.append(["Approach 3 (parametric)", f"{fmt(res.optimal.a)} {fmt_ci(res.optimal.ci95.get('a'))}",
                     f"{fmt(res.optimal.b)} {fmt_ci(res.optimal.ci95.get('b'))}"])
    for law, label in (("isoflop", "Approach 2 (isoFLOP)"), ("envelope", "Approach 1 (envelope)")):
        r = fits.results.get(law)
        if r is not None and r.n_opt is not None:
            rows.append([label, f"{fmt(r.n_opt.exponent)} {fmt_ci(r.n_opt.ci95)}",
                         f"{fmt(r.d_opt.exponent)} {fmt_ci(r.d_opt.ci95)}"])
    iso = published.get("isoflop_exponents", {})
    if iso:
        rows.append(["Hoffmann et al. 2022, Approaches 1 / 2", f"{iso.get('chinchilla_approach1_a')} / "
                     f"{iso.get('chinchilla_approach2_a')}", "–"])
    k = published.get("kaplan2020")
    if k:
        rows.append([k["title"], str(k.get("n_opt_exponent")), "–"])
    return header, rows


def allocation_table(fits: Fits) -> tuple[list[str], list[list[str]]]:
    header = ["approach", "C (FLOPs)", "N_opt [95%]", "D_opt [95%]", "D/N [95%]", "loss [95%]"]
    rows = []
    for law, label in (("chinchilla", "Approach 3"), ("isoflop", "Approach 2"), ("envelope", "Approach 1")):
        r = fits.results.get(law)
        if r is None or r.optimal is None:
            continue
        for p in r.optimal.at:
            rows.append([label, fmt(p.flops, 3)] + [with_ci(getattr(p, k), p.ci95.get(k))
                                                     for k in ("params", "tokens", "tokens_per_param", "loss")])
    return header, rows


def runs_tables(data: ReportData, fits: Fits) -> tuple[tuple, tuple]:
    used_header = ["run", "N", "D", "C", "loss", "budget"]
    held = set(fits.holdout_rows["run_id"]) if fits.holdout_rows is not None and "run_id" in fits.holdout_rows else set()
    used = []
    for _, r in data.runs.sort_values(["flops", "params"]).iterrows():
        tag = fmt(r.get("flops_budget"), 3) if "flops_budget" in data.runs.columns else "–"
        name = str(r.get("run_id", "")) + (" (held out in the holdout check)" if r.get("run_id") in held else "")
        used.append([name, fmt(r["params"]), fmt(r["tokens"]), fmt(r["flops"]), fmt(r["loss"]), tag])
    excluded = [[e["run_id"], e["status"], e["reason"]] for e in data.excluded]
    iso = fits.results.get("isoflop")
    if iso is not None:
        for b in iso.budgets:
            if not b.interior:
                excluded.append([f"budget {fmt(b.flops, 3)}", "off-profile",
                                 "the parabola's minimum lies outside the sampled sizes: not used for N_opt(C)"])
    return (used_header, used), (["run", "status", "reason"], excluded)


# ---- writing -----------------------------------------------------------------------------------
def md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font:14px/1.45 system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:13px}.headline{background:#f3f8ff;border-left:4px solid #2b6cb0;padding:.6em 1em}
.note{color:#666;font-size:12px}"""


def headline(fits: Fits) -> list[str]:
    lines = []
    res = fits.results.get("chinchilla")
    if res is not None:
        p, ci = res.params, res.ci95
        lines.append(f"L(N, D) = {fmt(p['E'])} + {fmt(p['A'])}/N^{fmt(p['alpha'], 3)} + {fmt(p['B'])}/D^{fmt(p['beta'], 3)}"
                     f"  (alpha {fmt_ci(ci.get('alpha'))}, beta {fmt_ci(ci.get('beta'))})")
        if res.optimal is not None:
            lines.append(f"N_opt ∝ C^{fmt(res.optimal.a, 3)} {fmt_ci(res.optimal.ci95.get('a'))}, "
                         f"D_opt ∝ C^{fmt(res.optimal.b, 3)} {fmt_ci(res.optimal.ci95.get('b'))}  (Approach 3)")
    iso = fits.results.get("isoflop")
    if iso is not None:
        lines.append(f"N_opt ∝ C^{fmt(iso.n_opt.exponent, 3)} {fmt_ci(iso.n_opt.ci95)}  (Approach 2, isoFLOP)")
    best = res if res is not None and res.optimal is not None else iso
    if best is not None and best.optimal is not None:
        for pt in best.optimal.at:
            lines.append(f"C = {fmt(pt.flops, 3)}: N_opt {fmt(pt.params, 3)} {fmt_ci(pt.ci95.get('params'))}, "
                         f"D_opt {fmt(pt.tokens, 3)}, D/N {fmt(pt.tokens_per_param, 3)}"
                         + (f", loss {fmt(pt.loss)}" if pt.loss is not None else ""))
    if fits.holdout is not None and fits.holdout.holdout is not None:
        h = fits.holdout.holdout
        lines.append(f"held-out largest budget: mean |relative error| {100 * h.mean_abs_rel_error:.2f}% "
                     f"(max {100 * h.max_abs_rel_error:.2f}%) over {h.n} runs")
    return lines


def fit_json(fits: Fits) -> dict:
    out = {law: res.to_json() for law, res in fits.results.items()}
    if fits.holdout is not None:
        out["holdout_check"] = fits.holdout.to_json()
    if fits.errors:
        out["not_fitted"] = dict(fits.errors)
    return out


def write_report(data: ReportData, fits: Fits, spec: ReportSpec, out_dir: str, published: dict | None = None) -> dict:
    """Write index.html, report.md, fit.json, runs.csv and figures/ into out_dir; returns their paths."""
    from scaling.track import write_atomic

    published = load_published(spec.published) if published is None else published
    os.makedirs(out_dir, exist_ok=True)
    figures = draw_figures(data, fits, published, out_dir)
    data.runs.to_csv(os.path.join(out_dir, "runs.csv"), index=False)
    write_atomic(os.path.join(out_dir, "fit.json"), json.dumps(fit_json(fits), indent=2) + "\n")

    tables = [
        ("Fitted parameters, beside published laws", parameter_table(fits, published),
         "Chinchilla form L = E + A/N^alpha + B/D^beta; 95% bootstrap intervals in brackets (whole runs resampled)."),
        ("Compute-optimal exponents", exponent_table(fits, published), ""),
        ("Compute-optimal allocation at the target budgets", allocation_table(fits),
         "Extrapolations far beyond the sampled compute: read the intervals, and the holdout check below."),
    ]
    (used_h, used), (excl_h, excl) = runs_tables(data, fits)
    tables.append((f"Runs used ({len(used)})", (used_h, used), ""))
    tables.append((f"Runs and budgets excluded ({len(excl)})", (excl_h, excl), ""))
    head = headline(fits)
    errors = [f"{law}: {why}" for law, why in fits.errors.items()]

    md = [f"# {spec.title}", "", f"Source: {data.source}. Laws: {', '.join(spec.laws)}.", ""]
    md += ["## Headline", ""] + [f"- {line}" for line in head] + [""]
    if errors:
        md += ["Not fitted: " + "; ".join(errors), ""]
    for title, (h, rows), note in tables:
        md += [f"## {title}", "", note, "", md_table(h, rows) if rows else "(none)", ""]
    md += ["## Figures", ""]
    for f in figures:
        md += [f"![{f['caption']}](figures/{f['name']}.png)", f"*{f['caption']}*", ""]
    write_atomic(os.path.join(out_dir, "report.md"), "\n".join(md))

    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(spec.title)}</title>",
             f"<style>{CSS}</style></head><body><h1>{html.escape(spec.title)}</h1>",
             f"<p class='note'>Source: {html.escape(data.source)}. Laws: {html.escape(', '.join(spec.laws))}. "
             f"Bootstrap: {spec.bootstrap} resamples of whole runs, seed {spec.seed}.</p>",
             "<div class='headline'><b>Headline</b><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in head)
             + "</ul></div>"]
    if errors:
        parts.append("<p class='note'>Not fitted: " + html.escape("; ".join(errors)) + "</p>")
    figs_html = []
    for f in figures:
        with open(f["png"], "rb") as fh:
            b64 = base64.b64encode(fh.read()).decode()
        figs_html.append(f"<figure id='{f['name']}'><img alt='{html.escape(f['caption'])}' "
                         f"src='data:image/png;base64,{b64}'><figcaption>{html.escape(f['caption'])}</figcaption></figure>")
    parts += ["<h2>Figures</h2>"] + figs_html
    for title, (h, rows), note in tables:
        parts.append(f"<h2>{html.escape(title)}</h2>" + (f"<p class='note'>{html.escape(note)}</p>" if note else "")
                     + (html_table(h, rows) if rows else "<p>(none)</p>"))
    # Marks how many figures the browser decoded: what a person sees, checkable headlessly.
    parts.append("<script>window.addEventListener('load',function(){var n=0;for(var i of document.images)"
                 "{if(i.complete&&i.naturalWidth>0)n++;}document.body.dataset.figuresLoaded=n;});</script>")
    parts.append("</body></html>")
    write_atomic(os.path.join(out_dir, "index.html"), "\n".join(parts))
    return {"html": os.path.join(out_dir, "index.html"), "markdown": os.path.join(out_dir, "report.md"),
            "fit_json": os.path.join(out_dir, "fit.json"), "runs_csv": os.path.join(out_dir, "runs.csv"),
            "figures": figures, "headline": head, "tables": tables}


def log_to_wandb(written: dict, spec: ReportSpec, sweep: str | None, out_dir: str, mode: str, project: str = "scaling"):
    """The report's figures and tables as a W&B run of job type `analysis` in the sweep's group."""
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project=project, group=sweep, job_type="analysis", name=f"report-{sweep or 'runs'}",
                     dir=out_dir, mode=mode, config=dataclasses.asdict(spec),
                     settings=wandb.Settings(console="off", x_disable_stats=True))
    for f in written["figures"]:
        run.log({f"figures/{f['name']}": wandb.Image(f["png"], caption=f["caption"])})
    for title, (header, rows), _ in written["tables"]:
        key = "tables/" + "".join(ch if ch.isalnum() else "_" for ch in title.lower()).strip("_")[:40]
        run.log({key: wandb.Table(columns=list(header), data=[list(map(str, r)) for r in rows])})
    with open(written["fit_json"]) as fh:
        fits = json.load(fh)
    for law, res in fits.items():
        if isinstance(res, dict):
            for k, v in (res.get("params") or {}).items():
                run.summary[f"{law}/{k}"] = v
            opt = res.get("optimal") or {}
            for k in ("a", "b"):
                if opt.get(k) is not None:
                    run.summary[f"{law}/{k}"] = opt[k]
    run.summary["headline"] = "\n".join(written["headline"])
    path = run.dir
    run.finish()
    return path
