"""`scaling.laws`: fit scaling laws to any table of runs, with honest uncertainty.

Pure numerics (jax, numpy, pandas); no training, model, tracking or store imports, so a notebook
can use it on a CSV from a paper. The shape is scikit-learn's: a fit returns a frozen result object with
`predict` / `allocate` and a `to_json()` that is the fit JSON (docs/contracts.md "The fit JSON"), unrounded.

    from scaling.laws import load_runs, fit
    table = load_runs("runs.csv")                       # validate, derive C = 6ND, drop NaN rows
    result = fit(table, "chinchilla", budgets=[1e21])   # Approach 3, 4,500 starts, 1,000 bootstraps
    result.params, result.ci95, result.optimal.at[0].params, result.to_json()

Laws (`LAWS`):
  chinchilla        L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, Approach 3)  -> LawFit
  isoflop           parabolas in log N per FLOP budget, N_opt = k C^a (Approach 2)    -> IsoflopFit
  envelope          lowest loss across training curves per FLOP count (Approach 1)    -> EnvelopeFit
  kaplan-n          L = (N_c/N)^alpha_N (Kaplan et al. 2020)                          -> LawFit
  kaplan-d          L = (D_c/D)^alpha_D                                               -> LawFit
  kaplan-joint      L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D                   -> LawFit
  compute           L = E + (C0/C)^gamma (compute frontier)                            -> LawFit
  data-constrained  Chinchilla form on effective N', D' (Muennighoff et al. 2023)      -> LawFit
  lr                optimal learning rate per size, then lr_opt = c N^k               -> LrFit
  batch             optimal batch size per budget, then batch_opt = c C^k (or c L^k)  -> BatchFit

Laws over several evaluation domains (`DOMAIN_LAWS`; they read per-domain columns, not `loss`, so each has
its own function rather than `fit`):
  mixture           L_i(r) = c_i + k_i exp(sum_j t_ij r_j), the best mixture (Ye et al.)  -> fit_mixture
  loss-to-loss      L_y = E_y + K (L_x - E_x)^kappa (Brandfonbrener et al. 2024)        -> fit_loss_to_loss
  accuracy          acc = floor + (ceil - floor) / (1 + exp(s (L - L0))), at a budget    -> fit_accuracy
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from scaling.laws.accuracy import AccuracyAt, AccuracyFit, LossAtBudget, fit_accuracy, loss_at_budgets
from scaling.laws.allocation import Allocation, BudgetPoint, optimal_allocation
from scaling.laws.batch import BatchFit, BudgetOptimum, fit_batch
from scaling.laws.bootstrap import DEFAULT_RESAMPLES, run_weights, two_level_weights
from scaling.laws.chinchilla import CrossCheck, varpro_fit
from scaling.laws.envelope import EnvelopeFit, fit_envelope
from scaling.laws.errors import ArgumentError
from scaling.laws.forms import FORMS, LawForm, chinchilla_allocation, hoffmann_grid
from scaling.laws.groups import GroupedFit, fit_by, split_by
from scaling.laws.isoflop import BudgetProfile, IsoflopFit, fit_isoflop
from scaling.laws.loss_to_loss import LossToLossFit, fit_loss_to_loss, fit_pairs
from scaling.laws.lr import LrFit, SizeOptimum, fit_lr
from scaling.laws.mixture import MixtureFit, fit_mixture
from scaling.laws.noise import NoiseEstimate, NoiseFloor, noise_floor
from scaling.laws.optim import BatchResult, Tolerances, minimize_batched
from scaling.laws.parametric import DEFAULT_HUBER_DELTA, Holdout, LawFit, fit_parametric
from scaling.laws.powerlaw import PowerLaw
from scaling.laws.table import RunsTable, holdout_split, keep_best_of, load_runs, warn_reach

LAWS: tuple[str, ...] = ("chinchilla", "isoflop", "envelope", "kaplan-n", "kaplan-d", "kaplan-joint",
                         "compute", "data-constrained", "lr", "batch")
DOMAIN_LAWS: tuple[str, ...] = ("mixture", "loss-to-loss", "accuracy")


def fit(table: RunsTable, law: str = "chinchilla", *, huber_delta: float = DEFAULT_HUBER_DELTA,
        bootstrap: int = DEFAULT_RESAMPLES, seed: int = 0, budgets: Sequence[float] = (), holdout: int = 0,
        fixed: Mapping[str, float] | None = None, keep_unresolved: bool = False,
        **options) -> LawFit | IsoflopFit | EnvelopeFit | LrFit | BatchFit:
    """Fit one of `LAWS` to a `RunsTable` (see `load_runs`).

    huber_delta and holdout apply to the parametric laws; budgets (FLOPs) add the compute-optimal
    allocation with intervals; bootstrap is the number of seeded resamples of points, each with all its
    seed replicates (0 for none); fixed holds parameters of a parametric law at values, by their printed
    names (`fixed={"E": 1.69}`), and fits the rest. keep_unresolved (isoflop) lets a budget whose minimum
    is not resolved above the noise still enter N_opt(C) (by default it is listed and left out).
    Extra options go to `fit_parametric` (starts, bootstrap_starts, warm_starts, cross_check, tol).

    Args:
        table: a validated runs table.
        law: the law's name.
    Returns:
        A FitResult (LawFit, IsoflopFit or EnvelopeFit): parameters with 95% intervals, allocation,
        `to_json()` for the fit JSON.
    Raises:
        UsageError: the table cannot support the law (too few points, budgets, columns);
            ArgumentError (a UsageError) when an argument is wrong, named by its parameter.
    """
    if law not in ("lr", "batch"):
        warn_reach(table, budgets)  # a budget a factor 1e6 past the data is mostly the form's assumption
    if law in ("lr", "batch"):
        for given, parameter in ((holdout, "holdout"), (fixed, "fixed"), (len(budgets), "budgets")):
            if given:
                raise ArgumentError(parameter, f"does not apply to law {law} (a hyperparameter rule, not a loss law)")
        if law == "batch":
            return fit_batch(table, bootstrap=bootstrap, seed=seed, against=options.get("against", "flops"))
        return fit_lr(table, bootstrap=bootstrap, seed=seed)
    if law in ("isoflop", "envelope"):
        if holdout:
            raise ArgumentError("holdout", f"needs a parametric law (it predicts held-out losses); {law} has none")
        if fixed:
            raise ArgumentError("fixed", f"needs a parametric law; {law} has no parameters to hold")
        if law == "isoflop":
            return fit_isoflop(table, bootstrap=bootstrap, seed=seed, budgets=budgets, keep_unresolved=keep_unresolved)
        return fit_envelope(table, bootstrap=bootstrap, seed=seed, budgets=budgets)
    if keep_unresolved:
        raise ArgumentError("keep_unresolved", f"applies to law isoflop only, not {law}")
    return fit_parametric(table, law, huber_delta=huber_delta, bootstrap=bootstrap, seed=seed,
                          budgets=budgets, holdout=holdout, fixed=fixed, **options)


__all__ = [
    "LAWS", "fit", "load_runs", "RunsTable", "keep_best_of", "holdout_split",
    "fit_parametric", "fit_isoflop", "fit_envelope", "varpro_fit", "optimal_allocation",
    "LawFit", "IsoflopFit", "EnvelopeFit", "BudgetProfile", "PowerLaw", "Allocation", "BudgetPoint",
    "Holdout", "CrossCheck", "LawForm", "FORMS", "chinchilla_allocation", "hoffmann_grid", "minimize_batched",
    "Tolerances",
    "BatchResult", "run_weights", "two_level_weights", "DEFAULT_HUBER_DELTA", "DEFAULT_RESAMPLES",
    "NoiseFloor", "NoiseEstimate", "noise_floor", "LrFit", "SizeOptimum", "fit_lr", "BatchFit", "BudgetOptimum",
    "fit_batch",
    "GroupedFit", "fit_by", "split_by", "several_corpora", "ArgumentError",
    "DOMAIN_LAWS", "fit_mixture", "MixtureFit", "fit_loss_to_loss", "fit_pairs", "LossToLossFit", "fit_accuracy",
    "AccuracyFit", "AccuracyAt", "LossAtBudget", "loss_at_budgets",
]


def several_corpora(table: RunsTable) -> bool:
    """Whether the table holds runs of more than one corpus (then one law per corpus, not one pooled)."""
    return "corpus" in table.frame.columns and table.frame["corpus"].astype(str).nunique() > 1
