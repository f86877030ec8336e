"""The mixture planner: K data mixtures spread over the simplex of the domains' weights, plus the pure
domains, at one small scale and optionally again at larger compute (`scaling sweep plan --mixtures K`).

The mixtures are drawn from a flat Dirichlet (every mixture equally likely) with a fixed seed: SETS sets
of K draws, and the set kept is the one whose closest two mixtures (the pure domains counted) lie
farthest apart, so K small still covers the simplex, inside and near its edges, instead of clustering
where a few draws happen to fall. Weights are rounded to 2 decimals (summing to 1).
A data mixing law (L_i(r) = c_i + k_i exp(sum_j t_ij r_j)) is fitted over such a set; the pure domains
pin its corners. A second scale, m times the compute, multiplies params and tokens by sqrt(m) each, so
the tokens per parameter stay as they are and only the scale moves.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaling import mixspec
from scaling.errors import UsageError
from scaling.sweep.plan import spec_dict

SETS = 256  # sets of k draws compared (fewer for large k: SET_BUDGET mixtures drawn at most)
SET_BUDGET = 20_000
MAX_MIXTURES = 1000


@dataclass(frozen=True)
class Scale:
    """One scale of the plan: a target parameter count and a length in tokens."""

    params: float
    tokens: float

    @property
    def flops(self) -> float:
        return 6.0 * self.params * self.tokens


def _round_weights(w: np.ndarray) -> np.ndarray:
    """Weights on a 0.01 grid that sum to exactly 1 (the largest absorbs the rounding)."""
    cents = np.round(w * 100).astype(int)
    cents[int(np.argmax(cents))] += 100 - int(cents.sum())
    return cents / 100.0


def spread_mixtures(k: int, n_domains: int, seed: int = 0) -> list[np.ndarray]:
    """k mixtures of n_domains weights: of many sets of k flat-Dirichlet draws, the set whose closest two
    mixtures (the pure domains counted) lie farthest apart (see the module's docstring); the same k,
    n_domains and seed give the same mixtures on every machine (numpy's PCG64 stream)."""
    if n_domains < 2:
        raise UsageError(f"--domains: a mixture needs at least 2 domains (got {n_domains})")
    if not 1 <= k <= MAX_MIXTURES:
        raise UsageError(f"--mixtures {k}: allowed 1..{MAX_MIXTURES}")
    rng = np.random.default_rng([seed, n_domains, 0x313C])
    best, best_gap = None, -1.0
    for _ in range(max(8, min(SETS, SET_BUDGET // k))):
        mixtures = np.array([_round_weights(w) for w in rng.dirichlet(np.ones(n_domains), k)])
        points = np.vstack([np.eye(n_domains), mixtures])
        gaps = np.linalg.norm(points[:, None] - points[None], axis=2) + 9.0 * np.eye(len(points))
        if gaps.min() > best_gap:
            best, best_gap = mixtures, float(gaps.min())
    if best_gap == 0:  # two mixtures (or one and a pure domain) round to the same 0.01 grid point
        raise UsageError(f"--mixtures {k}: more mixtures than {n_domains} domains keep distinct on a 0.01 grid")
    return list(best)


def parse_domains(text: str, settings: dict, base: dict | None) -> dict[str, str]:
    """--domains a,b,c (their folders in a `domains=` setting or the base spec) or --domains a:DIR,b:DIR."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    given = {}
    known = settings.get("domains")
    if known is None and base:
        known = ((base.get("parameters") or {}).get("domains") or {}).get("value")
    known = mixspec.parse_domains(mixspec.flatten(known)) if known else {}
    for item in items:
        name, sep, where = item.partition(":")
        if not sep:
            if name not in known:
                raise UsageError(f"--domains {text}: no folder for {name!r}; give NAME:DIR, or a "
                                 "domains=NAME:DIR,... setting")
            where = known[name]
        given[name] = where
    mixspec.parse_domains(mixspec.flatten(given))  # names checked as the config checks them
    if len(given) != len(items):
        raise UsageError(f"--domains {text}: a domain is named twice")
    return given


def parse_scales(at: str, scales: str) -> list[Scale]:
    """--at PARAMS,TOKENS and --scales 1,M,...: the first scale and its compute multiples."""
    try:
        params, tokens = (float(v) for v in at.split(","))
        factors = [float(v) for v in scales.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--at {at} --scales {scales}: expected --at PARAMS,TOKENS (e.g. 2e4,1e6) and "
                         "--scales M1,M2 (compute multiples, e.g. 1,4)") from None
    if not all(math.isfinite(v) and v > 0 for v in (params, tokens, *factors)) or not factors:
        raise UsageError(f"--at {at} --scales {scales}: sizes, lengths and multiples must be positive")
    if len(set(factors)) != len(factors):
        raise UsageError(f"--scales {scales}: a multiple is given twice")
    return [Scale(float(f"{params * math.sqrt(m):.3g}"), float(f"{tokens * math.sqrt(m):.3g}")) for m in factors]


def plan_mixtures(k: int, domains: Sequence[str], scales: Sequence[Scale], seed: int = 0) -> list[dict]:
    """The points: every scale x (the pure domains, then the k spread mixtures)."""
    pure = list(np.eye(len(domains)))
    mixtures = [mixspec.canonical(dict(zip(domains, (float(x) for x in w))))
                for w in pure + spread_mixtures(k, len(domains), seed)]
    return [{"params": s.params, "tokens": s.tokens, "mixture": m} for s in scales for m in mixtures]


def mixture_spec(k: int, domains: dict[str, str], scales: Sequence[Scale], *, seed: int = 0, seeds: int = 1,
                 name: str = "mixture-plan", base: dict | None = None, settings: dict | None = None) -> dict:
    """The sweep spec: corpus=mix over `domains` (constant parameters, and by default the evaluation sets
    `eval`: each domain's validation split), one point per scale and mixture;
    with seeds > 1, the first scale's pure domains are replicated: the run-to-run noise the fits compare
    with, measured where it costs least."""
    settings = {**(settings or {}), "corpus": mixspec.MIX, "domains": mixspec.flatten(domains)}
    # each domain's own validation split is an evaluation set: the per-domain losses a mixing law fits
    settings.setdefault("eval", settings["domains"])
    base = dict(base or {})
    base.get("parameters", {}).pop("mixture", None)
    points = plan_mixtures(k, list(domains), scales, seed)
    spec = spec_dict(points, name=name, base=base, settings=settings)
    if seeds > 1:
        pure = [p["mixture"] for p in points[:len(domains)]]
        spec["seeds"] = {"count": seeds, "where": {"tokens": scales[0].tokens, "mixture": pure}}
    return spec
