"""A sweep's points: the grid's product, or seeded random draws from W&B's distributions."""
from __future__ import annotations

import hashlib
import itertools
import json
import math

import numpy as np

from scaling.sweep.spec import Parameter, SweepSpec


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
    slowest; duplicates dropped; cut at run_cap), or run_cap seeded random draws."""
    if spec.method == "grid":
        names = [p.name for p in spec.parameters]
        points, seen = [], set()
        for combo in itertools.product(*(p.discrete for p in spec.parameters)):
            key = json.dumps(combo, default=str)
            if key not in seen:
                seen.add(key)
                points.append(dict(zip(names, combo)))
        return points[:spec.run_cap] if spec.run_cap else points
    rng = np.random.default_rng(spec_seed(spec))
    return [{p.name: _sample(p, rng) for p in spec.parameters} for _ in range(spec.run_cap)]
