"""Synthetic runs tables drawn from known laws (shared by the laws and report tests)."""
from __future__ import annotations

import numpy as np
import pandas as pd

TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def chinchilla_loss(n, d, p=TRUE):
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def chinchilla_table(n_points=200, noise=0.005, seed=0, p=TRUE) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e7), np.log(3e10), n_points))
    d = np.exp(rng.uniform(np.log(1e9), np.log(3e12), n_points))
    loss = chinchilla_loss(n, d, p) * np.exp(rng.normal(0.0, noise, n_points))
    return pd.DataFrame({"run_id": [f"r{i}" for i in range(n_points)], "params": n, "tokens": d, "loss": loss})


def true_allocation(p=TRUE) -> dict:
    """Closed form of minimizing L(N, C/(6N)): N_opt = G (C/6)^a, D_opt = (C/6)^b / G (Hoffmann et al.
    2022, eq. 4), written here independently of scaling.laws so tests can hold the code to it."""
    s = p["alpha"] + p["beta"]
    return {"G": (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / s), "a": p["beta"] / s, "b": p["alpha"] / s}


def optimal_n(c, p=TRUE):
    t = true_allocation(p)
    return t["G"] * (c / 6) ** t["a"]


def optimal_flops(n, p=TRUE):
    """The budget at which `n` parameters are compute-optimal (the inverse of `optimal_n`)."""
    t = true_allocation(p)
    return 6 * (n / t["G"]) ** (1 / t["a"])


def isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21), sizes=9, span=1.5, noise=0.002, seed=0, p=TRUE,
                  shift=None) -> pd.DataFrame:
    """Runs around each budget's optimum: log N in [log N_opt - span, + span]; `shift` moves the sampled
    sizes of one budget (index, log offset) to put its minimum off range."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, c in enumerate(budgets):
        centre = np.log(optimal_n(c, p)) + (shift[1] if shift and shift[0] == i else 0.0)
        for j, log_n in enumerate(np.linspace(centre - span, centre + span, sizes)):
            n = np.exp(log_n)
            d = c / (6 * n)
            loss = chinchilla_loss(n, d, p) * np.exp(rng.normal(0.0, noise))
            # FLOP counts a little off the budget, as rounding of steps makes them in a real sweep.
            flops = c * (1 + 0.01 * rng.uniform(-1, 1))
            rows.append({"run_id": f"b{i}s{j}", "params": n, "flops": flops, "loss": loss})
    return pd.DataFrame(rows)


def replicated_isoflop_table(budgets=(1e18, 1e19, 1e20, 1e21), sizes=7, span=1.5, seeds=3, noise=0.004,
                             point_noise=0.0, seed=0, p=TRUE) -> pd.DataFrame:
    """An isoFLOP grid with `seeds` replicates per point: each run's loss is the law's times
    exp(point error + seed error), the point error (sd `point_noise`) shared by the point's replicates,
    as a learning rate a little off for one size would be; the seed error (sd `noise`) their own."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, c in enumerate(budgets):
        centre = np.log(optimal_n(c, p))
        for j, log_n in enumerate(np.linspace(centre - span, centre + span, sizes)):
            n = np.exp(log_n)
            shared = rng.normal(0.0, point_noise)
            for s in range(seeds):
                loss = chinchilla_loss(n, c / (6 * n), p) * np.exp(shared + rng.normal(0.0, noise))
                rows.append({"run_id": f"b{i}s{j}r{s}", "params": n, "flops": c, "flops_budget": c, "seed": s,
                             "loss": loss})
    return pd.DataFrame(rows)


def replicated_chinchilla_table(points=40, seeds=3, noise=0.01, point_noise=0.0, seed=0, p=TRUE) -> pd.DataFrame:
    """`chinchilla_table` with `seeds` replicates per (N, D): errors as in `replicated_isoflop_table`."""
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(1e7), np.log(3e10), points))
    d = np.exp(rng.uniform(np.log(1e9), np.log(3e12), points))
    shared = rng.normal(0.0, point_noise, points)
    rows = [{"run_id": f"p{i}s{s}", "params": n[i], "tokens": d[i], "seed": s,
             "loss": chinchilla_loss(n[i], d[i], p) * np.exp(shared[i] + rng.normal(0.0, noise))}
            for i in range(points) for s in range(seeds)]
    return pd.DataFrame(rows)
