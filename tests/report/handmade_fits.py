"""Fit results written by hand, not fitted: the report's tables and figures are pure functions of fit
results, so tests can feed them known numbers and check what they show."""
from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.laws import Allocation, BudgetPoint, BudgetProfile, EnvelopeFit, Holdout, LawFit, PowerLaw
from scaling.laws.isoflop import IsoflopFit
from scaling.report.fitting import Fits

# The law the synthetic runs are drawn from (Chinchilla's printed fit) and the hand-written "fitted" one.
LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def chinchilla_loss(n, d, p=LAW):
    return p["E"] + p["A"] / np.asarray(n, dtype=float) ** p["alpha"] + p["B"] / np.asarray(d, dtype=float) ** p["beta"]


def allocation_of(p: dict) -> dict:
    """Hoffmann et al. 2022's closed form (their eq. 4), written out here rather than taken from scaling.laws:
    N_opt = G (C/6)^a, D_opt = (C/6)^b / G."""
    s = p["alpha"] + p["beta"]
    return {"G": (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / s), "a": p["beta"] / s, "b": p["alpha"] / s}


def law_fit(params: dict, *, ci95: dict | None = None, optimal: Allocation | None = None,
            holdout: Holdout | None = None, law: str = "chinchilla") -> LawFit:
    theta = np.array([np.log(params["A"]), np.log(params["B"]), np.log(params["E"]), params["alpha"], params["beta"]])
    return LawFit(law=law, params=dict(params), ci95=dict(ci95 or {}), objective=0.0, huber_delta=1e-3, n_points=20,
                  n_runs=20, dropped={}, n_starts=1, n_converged=1, n_resamples=0, theta=theta,
                  samples=np.empty((0, 5)), optimal=optimal, holdout=holdout)


def isoflop_fit(budgets: tuple[BudgetProfile, ...], n_opt: PowerLaw, d_opt: PowerLaw,
                optimal: Allocation | None = None) -> IsoflopFit:
    return IsoflopFit(budgets=budgets, n_opt=n_opt, d_opt=d_opt, n_points=15, dropped={}, n_resamples=0,
                      optimal=optimal)


def envelope_fit(flops, params, loss, n_opt: PowerLaw, d_opt: PowerLaw, optimal: Allocation | None = None):
    return EnvelopeFit(flops=np.asarray(flops, dtype=float), params=np.asarray(params, dtype=float),
                       loss=np.asarray(loss, dtype=float), n_opt=n_opt, d_opt=d_opt, n_points=len(flops), n_runs=3,
                       optimal=optimal)


def isoflop_runs(budgets=(1e18, 1e19, 1e20), sizes=5, span=1.0, seed=0) -> pd.DataFrame:
    """Runs around each budget's optimum under LAW, with FLOP counts a little off the budget (as whole
    steps make them), in shuffled order."""
    rng = np.random.default_rng(seed)
    t = allocation_of(LAW)
    rows = []
    for i, c in enumerate(budgets):
        centre = np.log(t["G"] * (c / 6) ** t["a"])
        for j, log_n in enumerate(np.linspace(centre - span, centre + span, sizes)):
            n = float(np.round(np.exp(log_n)))
            flops = c * (1 + 0.01 * rng.uniform(-1, 1))
            d = flops / (6 * n)
            rows.append({"run_id": f"b{i}s{j}", "params": n, "tokens": d, "flops": 6 * n * d,
                         "loss": float(chinchilla_loss(n, d)) * (1 + 0.002 * rng.normal()), "flops_budget": c})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def step_rows(runs: pd.DataFrame, fractions=(0.1, 0.3, 0.6, 1.0), seed=0) -> pd.DataFrame:
    """Per-evaluation rows of each run (its final row is the run's own), in shuffled order."""
    rows = []
    for _, r in runs.iterrows():
        for step, frac in enumerate(fractions, start=1):
            d = frac * r["tokens"]
            loss = r["loss"] if frac == 1.0 else float(chinchilla_loss(r["params"], d)) * 1.02
            rows.append({"run_id": r["run_id"], "step": step, "params": r["params"], "tokens": d,
                         "flops": 6 * r["params"] * d, "loss": loss, "flops_budget": r["flops_budget"]})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)


LRS = (1e-3, 3e-3, 1e-2, 3e-2)


def lr_sweep(widths=(64, 128, 256), lrs=LRS, kinds=("mup", "standard"), budgets=(None,), seeds=2) -> pd.DataFrame:
    """Final losses of an lr sweep at several widths (and flops_budget values; None: none), a parabola in ln lr
    around each width's optimum (fixed under muP, as 1/width under standard), `seeds` replicates, shuffled."""
    rng = np.random.default_rng(0)
    rows = []
    for kind in kinds:
        for budget in budgets:
            for w in widths:
                best = 1e-2 if kind == "mup" else 1e-2 * 64 / w
                for lr in lrs:
                    for seed in range(seeds):
                        loss = 2.0 + 0.05 * np.log(lr / best) ** 2 + 0.01 * rng.normal() - 0.1 * np.log(w)
                        rows.append({"d_model": w, "lr": lr, "seed": seed, "loss": loss, "parametrization": kind,
                                     "flops_budget": budget})
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


def fits_of(**results) -> Fits:
    return Fits(results=dict(results), errors={})


__all__ = ["LAW", "chinchilla_loss", "allocation_of", "law_fit", "isoflop_fit", "envelope_fit", "isoflop_runs",
           "step_rows", "lr_sweep", "LRS", "fits_of", "Allocation", "BudgetPoint", "BudgetProfile", "Holdout",
           "PowerLaw"]
