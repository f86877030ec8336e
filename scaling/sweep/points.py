"""A sweep's points: the grid's product, or seeded random draws from W&B's distributions."""
from __future__ import annotations

import hashlib
import itertools
import json
import math

import numpy as np

from scaling.errors import UsageError
from scaling.sweep.spec import MAX_POINTS, Parameter, SweepSpec


def _sample(p: Parameter, rng):
    s = p.settings
    d = p.distribution
    if d == "constant":
        return s["value"]
    if d == "categorical":
        probs = s.get("probabilities")
        return s["values"][int(rng.choice(len(s["values"]), p=probs))]
    if d == "int_uniform":
        return int(rng.integers(int(s["min"]), int(s["max"]) + 1))
    if d in ("normal", "q_normal", "log_normal", "q_log_normal"):
        x = rng.normal(s["mu"], s["sigma"])
        x = math.exp(x) if "log" in d else x
    elif d in ("beta", "q_beta"):
        x = rng.beta(s["a"], s["b"])
    elif d in ("uniform", "q_uniform"):
        x = rng.uniform(s["min"], s["max"])
    elif d in ("log_uniform", "q_log_uniform"):  # bounds are natural-log exponents
        x = math.exp(rng.uniform(s["min"], s["max"]))
    elif d in ("log_uniform_values", "q_log_uniform_values"):
        x = math.exp(rng.uniform(math.log(s["min"]), math.log(s["max"])))
    elif d == "inv_log_uniform":  # X with log(1/X) uniform in [min, max]
        x = math.exp(-rng.uniform(s["min"], s["max"]))
    elif d == "inv_log_uniform_values":  # 1/X log-uniform between 1/max and 1/min
        x = 1.0 / math.exp(rng.uniform(math.log(1 / s["max"]), math.log(1 / s["min"])))
    else:  # pragma: no cover - DISTRIBUTIONS and this table are kept in step
        raise AssertionError(d)
    if d.startswith("q_"):
        x = round(x / s["q"]) * s["q"]
    return float(x)


def spec_seed(spec: SweepSpec) -> int:
    """Random sweeps draw from a seed derived from the spec's content: the same file gives the same
    points, so a rebuilt index re-derives the same queue."""
    text = json.dumps(spec.raw, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def enumerate_points(spec: SweepSpec) -> list[dict]:
    """The sweep's points as {key: value}: the grid's product in spec order (the first key varies
    slowest; duplicates dropped; cut at run_cap), for each of the listed `points` in their order when the
    spec lists some, or run_cap seeded random draws; then each point that
    `seeds` asks replicates of, once per seed 0..K-1, the replicates adjacent in the queue.

    Raises:
        UsageError: the replicates make more than MAX_POINTS runs (counted before any is built).
    """
    points = _points(spec)
    total = sum(spec.seeds if _replicated(spec, point) else 1 for point in points)
    if total > MAX_POINTS:
        raise UsageError(f"{total:,} runs ({len(points):,} points with seeds: {spec.seeds}); allowed: at most "
                         f"{MAX_POINTS:,} per sweep (fewer seeds, seeds.where, run_cap, or several sweeps)")
    return [rep for point in points for rep in _replicates(spec, point)]


def _replicated(spec: SweepSpec, point: dict) -> bool:
    """Whether `point` gets seed replicates (`seeds` copies, each with its `seed`)."""
    if spec.seeds == 1 and spec.seeds_where is None:
        return False
    where = spec.seeds_where or {}
    return all(any(_same(point.get(k), x) for x in values) for k, values in where.items())


def _replicates(spec: SweepSpec, point: dict) -> list[dict]:
    return [{**point, "seed": s} for s in range(spec.seeds)] if _replicated(spec, point) else [point]


def _same(a, b) -> bool:
    # YAML gives 2.5e+11 as a float in one place and an int elsewhere; compare numbers as numbers.
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def _points(spec: SweepSpec) -> list[dict]:
    if spec.method == "grid":
        names = [p.name for p in spec.parameters]
        points, seen = [], set()
        for listed in spec.points or ({},):  # each listed point with the whole grid, in listed order
            for combo in itertools.product(*(p.discrete for p in spec.parameters)):
                point = {**listed, **dict(zip(names, combo))}
                key = json.dumps(sorted(point.items()), default=str)
                if key not in seen:
                    seen.add(key)
                    points.append(point)
        return points[:spec.run_cap] if spec.run_cap else points
    rng = np.random.default_rng(spec_seed(spec))
    return [{p.name: _sample(p, rng) for p in spec.parameters} for _ in range(spec.run_cap)]
