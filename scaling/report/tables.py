"""The report's tables and headline as rows of display text (rounding happens here, never in fit.json)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scaling.display import number as fmt
from scaling.laws import chinchilla_allocation
from scaling.report.fitting import Fits
from scaling.report.gather import ReportData


def fmt_exp(x) -> str:
    """An exponent to 3 significant figures, trailing zeros kept (1.00, not 1)."""
    return f"{x:#.3g}" if isinstance(x, (int, float)) and math.isfinite(x) else fmt(x)


def fmt_ci(ci, show=fmt) -> str:
    return f"[{show(ci[0])}, {show(ci[1])}]" if ci else "–"


def exp_ci(ci) -> str:
    return fmt_ci(ci, fmt_exp)


def fig3(x) -> str:
    return fmt(x, 3)


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
    for _key, ref in published.items():
        if ref.get("form") != "chinchilla":
            continue
        q = dict(ref["params"])
        alloc = chinchilla_allocation(q["A"], q["B"], q["alpha"], q["beta"])
        q.update(a=float(alloc["a"]), b=float(alloc["b"]))
        cis = ref.get("ci95", {})
        rows.append([ref["title"]] + [fmt(q[k]) + (f" {fmt_ci(cis[k])}" if k in cis else "") for k in names])
    return header, rows


def exponent_table(fits: Fits, published: dict) -> tuple[list[str], list[list[str]]]:
    """a and b of every law that has them, beside the published approaches'."""
    header = ["approach", "N_opt ∝ C^a: a [95%]", "D_opt ∝ C^b: b [95%]"]
    rows = []
    for res in fits.results.values():
        ex = res.exponents()
        if ex is not None:
            one_size = res.law == "envelope" and envelope_flag(fits)
            flag = " (frontier is one size: not in the headline)" if one_size else ""
            rows.append([res.label + flag] + [with_ci(e.value, e.ci95) for e in ex])
    iso = published.get("isoflop_exponents", {})
    if iso:
        rows.append(["Hoffmann et al. 2022, Approaches 1 / 2", f"{iso.get('chinchilla_approach1_a')} / "
                     f"{iso.get('chinchilla_approach2_a')}", "–"])
    k = published.get("kaplan2020")
    if k:
        rows.append([k["title"], str(k.get("n_opt_exponent")), "–"])
    return header, rows


def allocation_table(fits: Fits) -> tuple[list[str], list[list[str]]]:
    """Every law's compute-optimal choice at the spec's budgets, with intervals."""
    header = ["approach", "C (FLOPs)", "N_opt [95%]", "D_opt [95%]", "D/N [95%]", "loss [95%]"]
    rows = []
    for res in fits.results.values():
        if res.optimal is None:
            continue
        for p in res.optimal.at:
            rows.append([res.label, fmt(p.flops, 3)] + [with_ci(getattr(p, k), p.ci95.get(k))
                                                         for k in ("params", "tokens", "tokens_per_param", "loss")])
    return header, rows


def runs_tables(data: ReportData, fits: Fits) -> tuple[tuple, tuple]:
    used_header = ["run", "N", "D", "C", "loss", "budget"]
    rows = fits.holdout_rows
    held = set(rows["run_id"]) if rows is not None and "run_id" in rows else set()
    used = []
    for _, r in data.runs.sort_values(["flops", "params"]).iterrows():
        budget = r.get("flops_budget")
        tag = fmt(budget, 3) if budget is not None and budget == budget else "–"  # NaN: a run with no budget
        name = str(r.get("run_id", "")) + (" (held out in the holdout check)" if r.get("run_id") in held else "")
        used.append([name, fmt(r["params"]), fmt(r["tokens"]), fmt(r["flops"]), fmt(r["loss"]), tag])
    excluded = [[e.run_id, e.status, e.reason] for e in data.excluded]
    iso = fits.results.get("isoflop")
    if iso is not None:
        for b in iso.budgets:
            if not b.interior:
                excluded.append([f"budget {fmt(b.flops, 3)}", "off-profile",
                                 "the parabola's minimum lies outside the sampled sizes: not used for N_opt(C)"])
            elif not b.used:
                excluded.append([f"budget {fmt(b.flops, 3)}", "unresolved",
                                 f"the curve's depth {fmt(b.depth, 3)} is under 2 x the noise SD "
                                 f"{fmt(b.noise_sd, 3)}: its minimum could be one seed's luck; not used for "
                                 "N_opt(C); add seeds or widen the sizes there (keep_unresolved: true keeps it)"])
    return (used_header, used), (["run", "status", "reason"], excluded)


def noise_source(fits: Fits):
    """The noise floor of the fits (the isoFLOP fit's, else the parametric one's) and the isoFLOP budgets."""
    iso = fits.results.get("isoflop")
    for res in (iso, fits.results.get("chinchilla")):
        if res is not None and getattr(res, "noise", None) is not None:
            return res.noise, (iso.budgets if iso is not None else ())
    return None, ()


def noise_table(fits: Fits) -> tuple[list[str], list[list[str]]]:
    """Per isoFLOP budget: the noise SD, the curve's depth, and whether the depth resolves the minimum."""
    header = ["budget (FLOPs)", "points with seeds", "noise SD (dof)", "depth", "depth / noise", "resolves minimum"]
    noise, budgets = noise_source(fits)
    if noise is None:
        return header, []
    own = {c: est for c, est in noise.budgets}
    rows = []
    for b in budgets:
        est = next((e for c, e in own.items() if abs(c - b.flops) <= 1e-6 * b.flops), None)
        sd = (f"{fmt(est.sd, 3)} ({est.dof})" if est is not None else
              f"{fmt(noise.pooled.sd, 3)} pooled" if noise.pooled.sd is not None else "–")
        ratio = fmt(b.depth / b.noise_sd, 3) if b.noise_sd and b.depth is not None else "–"
        verdict = "–" if b.resolved is None else "yes" if b.resolved else "NO: depth < 2 x noise"
        rows.append([fmt(b.flops, 3), str(b.replicated), sd, fmt(b.depth, 3), ratio, verdict])
    return header, rows


def noise_headline(fits: Fits) -> list[str]:
    noise, budgets = noise_source(fits)
    if noise is None:
        return []
    if noise.pooled.sd is None:
        return ["noise floor: not measured (no seed replicates; add `seeds:` to the sweep spec)"]
    line = (f"noise floor: run-to-run SD of the final loss {fmt(noise.pooled.sd, 3)} "
            f"({noise.pooled.points} points with seed replicates)")
    shallow = [b for b in budgets if b.resolved is False]
    if shallow:
        line += "; minimum not resolved (depth < 2 x noise) at C = " + ", ".join(fmt(b.flops, 3) for b in shallow)
    elif any(b.resolved for b in budgets):
        line += "; every isoFLOP curve is deeper than 2 x noise"
    return [line]


@dataclass(frozen=True)
class Reach:
    """What the runs measured, which the headline's extrapolations are stated against."""

    largest_flops: float  # the largest C of a run
    largest_params: float  # the largest N trained


def reach_of(runs) -> Reach | None:
    if not len(runs):
        return None
    return Reach(float(runs["flops"].max()), float(runs["params"].max()))


def default_budgets(res, reach: Reach) -> list[float]:
    """The largest measured C x10 and x100, and the C at which the fit's N_opt reaches the largest size
    trained (when the fit gets there within 1e12 x the largest C)."""
    out = [reach.largest_flops * 10, reach.largest_flops * 100]
    grid = np.geomspace(reach.largest_flops / 1e3, reach.largest_flops * 1e12, 600)
    mid, _ = res.frontier(grid, "params")
    if mid is not None:
        mid = np.asarray(mid, dtype=float)
        above = np.nonzero(np.isfinite(mid) & (mid >= reach.largest_params))[0]
        if len(above) and above[0] > 0 and np.all(np.isfinite(mid[above[0] - 1:above[0] + 1])):
            i = above[0]  # interpolate in log-log between the grid points either side of the crossing
            t = math.log(reach.largest_params / mid[i - 1]) / math.log(mid[i] / mid[i - 1])
            out.append(float(grid[i - 1] * (grid[i] / grid[i - 1]) ** t))
    return sorted(out)


def allocation_lines(res, points, reach: Reach | None) -> list[str]:
    """One line per BudgetPoint: N_opt, D_opt and the loss, each with its 95% interval, and how far C
    lies beyond the largest measured."""
    lines = []
    for pt in points:
        ci = pt.ci95
        factor = f"; {fmt(pt.flops / reach.largest_flops, 3)}x the largest C measured" if reach else ""
        lines.append(f"C = {fmt(pt.flops, 3)}{factor}: N_opt {fmt(pt.params, 3)} {fmt_ci(ci.get('params'), fig3)}, "
                     f"D_opt {fmt(pt.tokens, 3)} {fmt_ci(ci.get('tokens'), fig3)}, D/N {fmt(pt.tokens_per_param, 3)}"
                     + (f", loss {fmt(pt.loss, 4)} {fmt_ci(ci.get('loss'))}" if pt.loss is not None else "")
                     + f" ({res.label})")
    return lines


def envelope_flag(fits: Fits) -> list[str]:
    """Approach 1 whose frontier is one size has no exponent to speak of: said, and kept out."""
    env = fits.results.get("envelope")
    sizes = sorted(set(getattr(env, "frontier_sizes", ()) or ()))
    if env is not None and len(sizes) == 1:  # () is a fit that did not record its sizes
        return [f"Approach 1 (envelope) left out: its frontier is one size ({fmt(sizes[0], 3)}), "
                "so its exponents say nothing; train sizes that win at different C"]
    return []


# A change of the held-out error from the smallest to the largest size under this many percentage
# points is not called a trend (seed noise alone moves a final loss by a few tenths of a percent).
TREND_POINTS = 1.0


def holdout_trend(rows) -> str:
    """The held-out error per size, smallest N first, when the held-out runs have two sizes or more."""
    if rows is None or not len(rows) or rows["params"].nunique() < 2:
        return ""
    err = 100 * (rows["predicted"] - rows["loss"]) / rows["loss"]
    by = err.groupby(rows["params"]).mean().sort_index()
    slope = np.polyfit(np.log(by.index.to_numpy(float)), by.to_numpy(float), 1)[0]
    change = by.iloc[-1] - by.iloc[0]
    if abs(change) < TREND_POINTS or slope * change <= 0:
        trend = f"no trend across N beyond {TREND_POINTS:g} point"
    else:
        trend = f"{'growing' if change > 0 else 'falling'} with N: the mean over sizes hides it"
    return f"; by N: {', '.join(f'{fmt(n, 3)} {e:+.1f}%' for n, e in by.items())} ({trend})"


def headline(fits: Fits, reach: Reach | None = None) -> list[str]:
    """The report's headline: laws, then the compute-optimal choice at the fit's target budgets, each
    number with its interval and, given `reach`, how far its C lies past the largest measured."""
    lines = []
    if fits.by_group:
        for gf in fits.by_group.values():
            for group, res in gf.results.items():
                ex = res.exponents()
                if ex is not None:
                    a, b = ex
                    lines.append(f"{gf.column} {group}: N_opt ∝ C^{fmt_exp(a.value)} {exp_ci(a.ci95)}, D_opt ∝ "
                                 f"C^{fmt_exp(b.value)} {exp_ci(b.ci95)}  ({res.label})")
        found = difference_lines(fits)
        column = next(iter(fits.by_group.values())).column
        lines += found or [f"no exponent or N_opt differs between groups of {column} beyond the 95% intervals "
                           "(overlap is not evidence of equality)"]
    res = fits.results.get("chinchilla")
    if res is not None:
        p, ci = res.params, res.ci95
        lines.append(f"L(N, D) = {fmt(p['E'], 4)} + {fmt(p['A'], 4)}/N^{fmt_exp(p['alpha'])} + "
                     f"{fmt(p['B'], 4)}/D^{fmt_exp(p['beta'])}"
                     f"  (alpha {exp_ci(ci.get('alpha'))}, beta {exp_ci(ci.get('beta'))})")
    for other in fits.results.values():
        ex = other.exponents()
        if ex is not None and other.law != "envelope":  # Approach 1 is too coarse with few sizes to headline
            a, b = ex
            lines.append(f"N_opt ∝ C^{fmt_exp(a.value)} {exp_ci(a.ci95)}, D_opt ∝ C^{fmt_exp(b.value)} "
                         f"{exp_ci(b.ci95)}  ({other.label})")
    lines += envelope_flag(fits)
    iso = fits.results.get("isoflop")
    best = res if res is not None and res.optimal is not None else iso
    if best is not None and best.optimal is not None:
        lines += allocation_lines(best, best.optimal.at, reach)
    lines += noise_headline(fits)
    if fits.holdout is not None and fits.holdout.holdout is not None:
        h = fits.holdout.holdout
        lines.append(f"held-out largest budget: mean |relative error| {100 * h.mean_abs_rel_error:.2f}% "
                     f"(max {100 * h.max_abs_rel_error:.2f}%) over {h.n} runs" + holdout_trend(fits.holdout_rows))
    return lines


def by_group_table(fits: Fits) -> tuple[list[str], list[list[str]]]:
    """Each law's exponents and N_opt per group (corpus, or the spec's `by:`), side by side, with intervals."""
    grouped = fits.by_group or {}
    groups = list(dict.fromkeys(g for gf in grouped.values() for g in gf.results))
    column = next(iter(grouped.values())).column if grouped else "corpus"
    header = ["law", "quantity"] + [f"{column} {g}" for g in groups]
    rows = []
    for law, gf in grouped.items():
        for name, by in gf.quantities().items():
            rows.append([law, name] + [with_ci(by[g][0], by[g][1]) if g in by and by[g][0] is not None else "–"
                                       for g in groups])
    return header, rows


def difference_lines(fits: Fits) -> list[str]:
    """One line per quantity on which two groups differ beyond their 95% intervals."""
    out = []
    for law, gf in (fits.by_group or {}).items():
        out += [f"{law}: {d.describe(gf.column)}" for d in gf.differences()]
    return out


def study_cost(runs) -> dict:
    """What the report's runs cost in 6ND FLOPs: `spent` counts each cooldown branch from the step it
    branched at (its stable phase was its parent's), `separate` what training every run from scratch costs."""
    separate = float(runs["flops"].sum()) if len(runs) else 0.0
    shared = 0.0
    if "branch_step" in runs.columns:
        branched = runs[runs["branch_step"].notna() & (runs["steps"] > 0)]
        shared = float((branched["flops"] * branched["branch_step"] / branched["steps"]).sum())
    n_branches = int(runs["branch_step"].notna().sum()) if "branch_step" in runs.columns else 0
    return {"runs": len(runs), "branches": n_branches, "spent": separate - shared, "separate": separate}


def cost_table(data: ReportData) -> tuple[list[str], list[list[str]]]:
    """The study's compute: spent, and what separate runs would have cost (they differ with branches)."""
    cost = study_cost(data.runs)
    saving = cost["separate"] / cost["spent"] if cost["spent"] > 0 else None
    return (["runs", "of them cooldown branches", "FLOPs spent (6ND)", "FLOPs as separate runs", "saving"],
            [[str(cost["runs"]), str(cost["branches"]), fmt(cost["spent"]), fmt(cost["separate"]),
              f"{saving:.2f}x" if saving else "–"]])
