"""The isoFLOP planner: sizes centred on each budget's predicted optimum, and refinement past the edges.

A product grid gives every budget the same sizes, so the smallest budget's minimum sits near the top of
the range and the largest's near the bottom, or outside it. The planner instead spreads K sizes
log-evenly over [N_opt / R, N_opt * R] around each budget's predicted N_opt (a prior: this family's law
as the demo measured it, Chinchilla's published law, or a fit JSON of earlier runs; scaling.sweep.prior),
and writes them as a list of points (the `points:` key of
the sweep spec). After the runs, `refine` reads the isoFLOP fit of the sweep and, for each budget whose
minimum fell outside its sizes, lists K more sizes beyond that edge at the budget's own spacing.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import yaml

from scaling.errors import UsageError
from scaling.laws import fit_isoflop, load_runs
from scaling.runs import RunHome, runs_table
from scaling.sweep.prior import DEFAULT_PRIOR, Prior, chinchilla_prior, family_prior, prior_from  # noqa: F401
from scaling.sweep.spec import parse_spec

# Keys that fix a run's size or length: the plan sets params and flops_budget, so a base spec's own are dropped.
SIZE_KEYS = ("params", "d_model", "tokens", "flops_budget", "steps")
DEFAULT_COMMAND = ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"]


def sizes_around(n_opt: float, per_budget: int, span: float) -> list[float]:
    """K sizes log-evenly from n_opt / span to n_opt * span (n_opt itself in the middle when K is odd)."""
    if per_budget == 1:
        return [n_opt]
    return [n_opt * span ** (2.0 * i / (per_budget - 1) - 1.0) for i in range(per_budget)]


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def plan_points(budgets: Sequence[float], per_budget: int, span: float, prior: Prior,
                shapes: Sequence[int] | None = None) -> list[dict]:
    """{flops_budget, params} for each budget and each of its K sizes around the prior's N_opt, each
    snapped to a distinct model of `shapes` (the recipe's parameter counts) when given; a budget whose
    sizes would fall outside the recipe's reach is refused (`check_reach`), and one whose N_opt/R lies
    below the smallest model starts at that model instead (`low_edge`: an asymmetric span)."""
    check_design(per_budget, span)
    if shapes:
        check_reach(budgets, span, prior, shapes)
    points = []
    for c in budgets:
        n_opt = prior.n_opt(c)
        low = low_edge(n_opt, span, shapes)
        targets = sizes_around(n_opt, per_budget, span) if low is None else [
            low * (n_opt * span / low) ** (i / (per_budget - 1)) for i in range(per_budget)]
        try:
            sizes = snap(targets, shapes) if shapes else [_round(n) for n in targets]
        except UsageError as err:
            raise UsageError(f"--budgets {c:.3g}: {err}") from None
        points += [{"flops_budget": float(c), "params": n} for n in sizes]
    return points


def low_edge(n_opt: float, span: float, shapes: Sequence[int] | None) -> int | None:
    """The recipe's smallest model when N_opt/R lies below it (the plan's sizes then run from that model
    to N_opt*R, an asymmetric span), else None."""
    return min(shapes) if shapes and n_opt / span < min(shapes) else None


def check_reach(budgets: Sequence[float], span: float, prior: Prior, shapes: Sequence[int]) -> None:
    """Refuse budgets whose sizes [N_opt/R, N_opt*R] leave the recipe's sizes. Below the smallest model
    the plan may start at that model (an asymmetric span) only while N_opt stays sqrt(R) above it: closer,
    every size but the smallest lies past N_opt, the smallest wins, and the curve has no left side.
    `shapes` runs up to the first count past the largest target, so a last shape below N_opt*R is the
    recipe's largest."""
    shapes = sorted(shapes)
    smallest, largest, floor = shapes[0], shapes[-1], math.sqrt(span)
    low = [c for c in budgets if prior.n_opt(c) < smallest * floor]
    if low:
        least = _ceil3(prior.budget_for(smallest * floor))
        raise UsageError(
            f"--budgets {_list(low)}: N_opt {_list(prior.n_opt(c) for c in low)} lies below what --span {span:g} "
            f"can sample around: the smallest model the recipe builds for this corpus and seq_len is "
            f"{smallest:,} params, and N_opt must be sqrt({span:g}) = {floor:.3g}x above it; the smallest "
            f"budget that works is {least:.3g} (N_opt {smallest * floor:,.0f})")
    high = [c for c in budgets if prior.n_opt(c) * span > largest]
    if high:
        most = _floor3(prior.budget_for(largest / span))
        raise UsageError(
            f"--budgets {_list(high)}: N_opt {_list(prior.n_opt(c) for c in high)} lies above what --span {span:g} "
            f"can sample around: the largest model the recipe builds is {largest:,} params; the largest "
            f"budget that works is {most:.3g}")


def _list(values) -> str:
    return ",".join(f"{v:.3g}" for v in values)


def _ceil3(x: float) -> float:
    """x rounded up to 3 significant figures (so the budget named passes the check)."""
    scale = 10.0 ** (math.floor(math.log10(x)) - 2)
    return math.ceil(x / scale * (1 - 1e-12)) * scale


def _floor3(x: float) -> float:
    scale = 10.0 ** (math.floor(math.log10(x)) - 2)
    return math.floor(x / scale * (1 + 1e-12)) * scale


def as_branches(points: Sequence[dict]) -> list[dict]:
    """The same (size, budget) points as cooldown branches: per size, one run to the largest budget it
    is planned at, with `cooldowns` at its others (in FLOPs, as the run is given by flops_budget); the
    longest runs first, as they bound the wall time. Each such run needs schedule=wsd (see spec_dict)."""
    budgets: dict[float, list[float]] = {}
    for p in points:
        budgets.setdefault(p["params"], []).append(float(p["flops_budget"]))
    out = []
    for n, cs in budgets.items():
        cs = sorted(set(cs))
        point = {"params": n, "flops_budget": cs[-1]}
        if len(cs) > 1:
            point["cooldowns"] = ",".join(np.format_float_scientific(c, trim="-") for c in cs[:-1])
        out.append(point)
    return sorted(out, key=lambda p: (-p["flops_budget"], p["params"]))


def snap(targets: Sequence[float], shapes: Sequence[int]) -> list[int]:
    """The shape nearest each target in log, distinct: the recipe's sizes are coarse among small models,
    and two targets that round to one shape would be one run twice (moved to the next shape up, or down
    at the top of the list)."""
    shapes = sorted(set(shapes))
    if len(shapes) < len(targets):
        raise UsageError(f"the recipe has {len(shapes)} model sizes in reach; asked for {len(targets)} per budget")
    logs = [math.log(n) for n in shapes]
    idx = [min(range(len(shapes)), key=lambda i: abs(logs[i] - math.log(t))) for t in targets]
    for k in range(1, len(idx)):
        idx[k] = max(idx[k], idx[k - 1] + 1)
    overflow = idx[-1] - (len(shapes) - 1)
    if overflow > 0:
        idx = [i - overflow for i in idx]
        for k in range(len(idx) - 2, -1, -1):
            idx[k] = min(idx[k], idx[k + 1] - 1)
    return [int(shapes[i]) for i in idx]


def bytes_per_token(constants: dict) -> float | None:
    """Bytes of text per token of the run settings' corpus (1 for bytes; None when it has no byte counts)."""
    return _corpus(constants).bytes_per_token


def _corpus(constants: dict):
    """The corpus the run settings train on, a mixture (corpus=mix) included."""
    from scaling.config import RunConfig
    from scaling.family import RECIPE
    from scaling.mixture import corpus_for

    cfg = RunConfig.from_dict({**constants, "d_model": RECIPE.min_width, "tokens": 1e9})
    return corpus_for(cfg.corpus, cfg.mixture, cfg.domains, cfg.vocab_size)


def recipe_shapes(constants: dict, up_to: float = math.inf) -> list[int]:
    """Every parameter count the recipe builds for these run settings (corpus, seq_len, mlp, ...), the
    same way the trainer resolves `params=`, up to the first count above `up_to`."""
    from scaling.config import RunConfig
    from scaling.family import RECIPE, recipe_sizes

    cfg = RunConfig.from_dict({**constants, "d_model": RECIPE.min_width, "tokens": 1e9})
    corpus = _corpus(constants)
    return recipe_sizes(vocab_size=corpus.vocab_size, seq_len=cfg.seq_len, mlp=cfg.mlp, tied=cfg.tied,
                        qk_norm=cfg.qk_norm, n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_ff=cfg.d_ff,
                        up_to=up_to)


def check_design(per_budget: int, span: float) -> None:
    if per_budget < 3:
        raise UsageError(f"--per-budget {per_budget}: at least 3 sizes per budget (a parabola needs 3)")
    if not (span > 1 and math.isfinite(span)):
        raise UsageError(f"--span {span}: a factor above 1 (sizes from N_opt/R to N_opt*R)")


@dataclass(frozen=True)
class Refinement:
    """New points past the edges, and one line per budget saying what was done."""

    points: list[dict]
    lines: list[str]
    spec: dict  # the sweep's registered spec (its parameters and command are kept)
    name: str


def refine_points(home: RunHome | str | None, sweep_id: str, per_budget: int) -> Refinement:
    """`refine_table` on a sweep's completed runs, with the sweep's registered spec to build on."""
    from scaling.sweep.register import require_sweep

    home = RunHome.of(home)
    registered = require_sweep(home, sweep_id)
    frame = runs_table(home, sweep_id)
    if not len(frame):
        raise UsageError(f"--refine {sweep_id}: no completed runs yet (see `scaling sweep status {sweep_id}`)")
    frame = with_planned_budgets(frame, home.sweep_runs(sweep_id))
    points, lines = refine_table(frame, per_budget, _registered_shapes(registered["spec"]))
    return Refinement(points, lines, registered["spec"], f"{registered['name']}-refine")


def with_planned_budgets(frame, queued):
    """The runs table with each run's flops_budget as its sweep planned it (the runs table may not carry
    it), so the refinement's points join their budget exactly, not at the measured FLOPs."""
    planned = {r.run_id: r.config.get("flops_budget") for r in queued}
    column = frame["run_id"].map(planned) if "run_id" in frame.columns else None
    if column is None or column.isna().all():
        return frame
    frame = frame.copy()
    given = frame["flops_budget"] if "flops_budget" in frame.columns else column * float("nan")
    frame["flops_budget"] = given.fillna(column).astype(float)
    return frame


def _registered_shapes(spec: dict) -> list[int] | None:
    """The recipe's sizes for a registered spec's constant settings (None when they cannot be read, e.g.
    its corpus has moved: the refinement then proposes rounded sizes, as the trainer snaps them)."""
    constants = {k: v["value"] for k, v in (spec.get("parameters") or {}).items()
                 if isinstance(v, dict) and "value" in v}
    try:
        return recipe_shapes(constants)
    except (UsageError, OSError):
        return None


def refine_table(frame, per_budget: int, shapes: Sequence[int] | None = None) -> tuple[list[dict], list[str]]:
    """K sizes beyond the edge for each budget of a runs table whose isoFLOP minimum fell outside its
    sizes (the fit's `interior` flag), and one line per budget saying what was done.

    The direction is the vertex's side, or, for a curve with no minimum, the side of the lower edge; the
    spacing is the budget's own (its sampled log-range over its sizes less one). With `shapes` (the
    recipe's sizes) each new size is a distinct buildable one not yet run at that budget; each point's
    budget is the one the runs were given (their flops_budget), not the fit's measured C.
    """
    iso = fit_isoflop(load_runs(frame), bootstrap=0, min_budgets=0)
    points, lines = [], []
    for b in iso.budgets:
        lo, hi = b.params_range
        if b.interior:
            lines.append(f"C = {b.flops:.3g}: minimum {b.n_opt:.3g} inside [{lo:.3g}, {hi:.3g}]: kept")
            continue
        up = (b.n_opt > hi) if b.n_opt is not None else _edge_loss(b.parabola, hi) < _edge_loss(b.parabola, lo)
        rows = _budget_rows(frame, b.flops)
        ran = frame.loc[rows, "params"].astype(float).unique()
        step = math.log(hi / lo) / max(len(ran) - 1, 1)
        edge = hi if up else lo
        targets = [edge * math.exp((k + 1) * step * (1 if up else -1)) for k in range(per_budget)]
        new = _buildable(targets, shapes, edge, up) if shapes else [_round(n) for n in targets]
        where = "no minimum (the loss keeps falling)" if b.n_opt is None else f"minimum {b.n_opt:.3g}"
        head = f"C = {b.flops:.3g}: {where} {'above' if up else 'below'} [{lo:.3g}, {hi:.3g}]: "
        if not new:
            bound = f"smallest, {min(shapes):,}" if not up else f"largest, {max(shapes):,}"
            lines.append(head + f"no buildable size past the edge not yet run (the recipe's {bound} params); "
                         + ("a larger budget moves N_opt up into reach" if not up else "nothing to add"))
            continue
        budget = _given_budget(frame, rows, b.flops)
        points += [{"flops_budget": budget, "params": n} for n in new]
        lines.append(head + f"adding {', '.join(f'{n:.3g}' for n in new)}")
    return points, lines


def _buildable(targets: Sequence[float], shapes: Sequence[int], edge: float, up: bool) -> list[int]:
    """The recipe size nearest each target (in log) strictly beyond the edge (so none has run at this
    budget: its sizes span the edges), each used once; fewer, or none, at the ends of the family."""
    beyond = [n for n in sorted(set(shapes)) if (n > edge * 1.001 if up else n < edge / 1.001)]
    chosen: list[int] = []
    for t in targets:
        left = [n for n in beyond if n not in chosen]
        if not left:
            break
        chosen.append(min(left, key=lambda n: abs(math.log(n / t))))
    return sorted(chosen, reverse=not up)


def _given_budget(frame, rows, measured: float) -> float:
    """The flops_budget the runs of a budget were given (so the refinement joins that budget exactly)."""
    if "flops_budget" in frame.columns:
        given = frame.loc[rows, "flops_budget"].dropna().astype(float)
        if len(given) and given.nunique() == 1:
            return float(given.iloc[0])
    return float(measured)


def _edge_loss(parabola, n: float) -> float:
    c0, c1, c2, centre = parabola
    x = math.log(n) - centre
    return c0 + c1 * x + c2 * x * x


def _budget_rows(frame, flops: float):
    if "flops_budget" in frame.columns:
        given = frame["flops_budget"].astype(float)
        if (abs(given / flops - 1) < 1e-6).any():
            return abs(given / flops - 1) < 1e-6
    return (frame["flops"].astype(float) / flops).between(1 / 1.1, 1.1)


def spec_dict(points: list[dict], *, name: str, base: dict | None = None, settings: dict | None = None) -> dict:
    """A sweep spec (as a mapping) listing `points`, on the base spec's parameters, command and metric
    (its size keys dropped) or this workbench's defaults, with `settings` as constant parameters."""
    base = dict(base or {})
    parameters = {k: v for k, v in (base.get("parameters") or {}).items() if k not in SIZE_KEYS}
    parameters.update({k: {"value": v} for k, v in (settings or {}).items()})
    spec = {"name": name, "program": base.get("program", "scaling/cli.py"), "method": "grid",
            "metric": base.get("metric", {"name": "eval/loss", "goal": "minimize"})}
    for key in ("project", "entity", "description"):
        if key in base:
            spec[key] = base[key]
    if parameters:
        spec["parameters"] = parameters
    if "seeds" in base:
        spec["seeds"] = base["seeds"]
    spec["points"] = points
    spec["command"] = base.get("command", DEFAULT_COMMAND)
    return spec


def render_spec(spec: dict, header: Sequence[str]) -> str:
    """YAML text: the header as comments, then the spec, one point per line (checked by the spec parser
    first, so `scaling sweep create` accepts what is written)."""
    parse_spec(spec, where="the planned spec")
    rest = {k: v for k, v in spec.items() if k not in ("points", "command")}
    lines = [f"# {h}" for h in header]
    lines.append(yaml.safe_dump(rest, sort_keys=False, default_flow_style=False).rstrip())
    lines.append("points:")
    lines += ["  - {" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in p.items()) + "}" for p in spec["points"]]
    lines.append(yaml.safe_dump({"command": spec["command"]}, sort_keys=False, default_flow_style=False).rstrip())
    return "\n".join(lines) + "\n"


def _yaml_value(v) -> str:
    # 1.0e+11 with a dot and a signed exponent: YAML 1.1 (PyYAML) reads 1e11 as text.
    # Shortest digits that read back as the same float: a refined budget must equal its sweep's to the bit.
    if isinstance(v, float):
        return np.format_float_scientific(v, unique=True, exp_digits=2).replace(".e", ".0e")
    if isinstance(v, str):  # quoted: a plain scalar inside {...} ends at its first comma (cooldowns)
        return json.dumps(v)
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
