"""Synthetic runs tables over several domains, drawn from known laws (the mixture, loss-to-loss and accuracy
laws' tests). Each law is written here again, independently of scaling.laws, so a test holds the code to it."""
from __future__ import annotations

import numpy as np
import pandas as pd

COMPONENTS = ("code", "prose", "headers")
# Per evaluation domain: c, k and t by training domain, centred (sum 0) as the fit reports t. More of a
# domain's own data lowers its loss (t_ii < 0); code and headers help each other.
MIXTURE = {
    "code": {"c": 1.2, "k": 0.8, "t": {"code": -1.6, "prose": 1.2, "headers": 0.4}},
    "prose": {"c": 1.6, "k": 0.6, "t": {"code": 0.9, "prose": -1.8, "headers": 0.9}},
    "headers": {"c": 1.0, "k": 0.7, "t": {"code": -0.5, "prose": 1.0, "headers": -0.5}},
}


def mixture_loss(domain: str, r, truth=MIXTURE) -> np.ndarray:
    p = truth[domain]
    t = np.array([p["t"][c] for c in COMPONENTS])
    return p["c"] + p["k"] * np.exp(np.atleast_2d(r) @ t)


def mixtures(k: int, seed: int = 0) -> np.ndarray:
    """The pure domains and k - 3 Dirichlet-spread mixtures, as `scaling sweep plan --mixtures` plans them."""
    rng = np.random.default_rng(seed)
    return np.vstack([np.eye(len(COMPONENTS)), rng.dirichlet(np.ones(len(COMPONENTS)), k - len(COMPONENTS))])


def mixture_table(k=20, seeds=2, noise=0.005, seed=0, truth=MIXTURE, extra=None, mix_seed=None) -> pd.DataFrame:
    """k mixtures x seeds runs: each domain's loss is the law's times exp(seed noise); `extra` columns
    (e.g. a flops_budget) go on every row."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, r in enumerate(mixtures(k, seed if mix_seed is None else mix_seed)):
        for s in range(seeds):
            row = {"run_id": f"m{i}s{s}-{seed}", "seed": s, **(extra or {}),
                   **{f"mix/{c}": v for c, v in zip(COMPONENTS, r)}}
            for d in truth:
                row[f"eval/{d}/loss"] = float(mixture_loss(d, r, truth)[0]) * np.exp(rng.normal(0.0, noise))
            rows.append(row)
    return pd.DataFrame(rows)


LOSS_TO_LOSS = {"E_x": 1.5, "E_y": 2.0, "K": 1.3, "kappa": 0.8}


def loss_to_loss(x, p=LOSS_TO_LOSS):
    return p["E_y"] + p["K"] * (np.asarray(x) - p["E_x"]) ** p["kappa"]


def loss_to_loss_table(n=30, seeds=1, noise=0.003, seed=0, p=LOSS_TO_LOSS) -> pd.DataFrame:
    """n model sizes (points), each with `seeds` replicates; L_x spread over [E_x + 0.2, E_x + 3]."""
    rng = np.random.default_rng(seed)
    gap = np.exp(rng.uniform(np.log(0.2), np.log(3.0), n))
    rows = []
    for i, g in enumerate(gap):
        for s in range(seeds):
            x = p["E_x"] + g
            rows.append({"run_id": f"r{i}s{s}", "params": 1e6 * (i + 1), "seed": s,
                         "eval/a/loss": x * np.exp(rng.normal(0.0, noise)),
                         "eval/b/loss": float(loss_to_loss(x, p)) * np.exp(rng.normal(0.0, noise))})
    return pd.DataFrame(rows)


ACCURACY = {"floor": 0.25, "ceil": 0.9, "s": 4.0, "L0": 2.5}


def accuracy(loss, p=ACCURACY):
    return p["floor"] + (p["ceil"] - p["floor"]) / (1.0 + np.exp(p["s"] * (np.asarray(loss) - p["L0"])))


def accuracy_table(n=30, seeds=1, noise=0.01, seed=0, p=ACCURACY, task="mc") -> pd.DataFrame:
    """n points with loss uniform in [1.5, 3.5]; accuracy the sigmoid plus normal noise (sd `noise`)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, x in enumerate(rng.uniform(1.5, 3.5, n)):
        for s in range(seeds):
            rows.append({"run_id": f"r{i}s{s}", "params": 1e6 * (i + 1), "seed": s, "loss": x,
                         f"task/{task}/acc": float(accuracy(x, p)) + rng.normal(0.0, noise),
                         f"task/{task}/nll": 0.5 * x})
    return pd.DataFrame(rows)
