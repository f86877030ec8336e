"""Bootstrap resamples over whole runs, and percentile intervals.

A resample draws runs with replacement (a run with several checkpoint rows comes in or out whole,
because its rows share one training trajectory and are not independent), and is represented as a
weight per row: the number of times its run was drawn. Weighted objectives then equal the objective on
the duplicated rows, without copying data.
"""
from __future__ import annotations

import numpy as np

DEFAULT_RESAMPLES = 1000


def run_weights(run_codes: np.ndarray, n_runs: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_rows) weights: how often each row's run was drawn in each resample."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_runs, np.full(n_runs, 1.0 / n_runs), size=n_resamples)
    return counts[:, run_codes].astype(np.float64)


def stratified_run_weights(run_codes: np.ndarray, strata: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Like `run_weights`, but runs are drawn within each stratum (an isoFLOP budget keeps its size)."""
    rng = np.random.default_rng(seed)
    n_runs = int(run_codes.max()) + 1 if len(run_codes) else 0
    run_stratum = np.zeros(n_runs, dtype=np.int64)
    run_stratum[run_codes] = strata
    counts = np.zeros((n_resamples, n_runs))
    for s in np.unique(run_stratum):
        members = np.flatnonzero(run_stratum == s)
        draws = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)), size=n_resamples)
        counts[:, members] = draws
    return counts[:, run_codes]


def percentile_interval(samples, level: float = 0.95) -> np.ndarray:
    """(lo, hi) percentile interval along axis 0, ignoring non-finite resamples."""
    x = np.asarray(samples, dtype=np.float64)
    x = np.where(np.isfinite(x), x, np.nan)
    tail = 50.0 * (1.0 - level)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanpercentile(x, [tail, 100.0 - tail], axis=0)


def interval(samples, level: float = 0.95) -> tuple[float, float]:
    lo, hi = percentile_interval(samples, level)
    return float(lo), float(hi)
