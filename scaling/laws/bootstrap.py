"""Bootstrap resamples over whole runs, at two levels when runs are seed replicates, and percentile
intervals.

A resample draws runs with replacement (a run with several checkpoint rows comes in or out whole,
because its rows share one training trajectory and are not independent), and is represented as a
weight per row: the number of times its run was drawn. Weighted objectives then equal the objective on
the duplicated rows, without copying data.

With seed replicates the bootstrap has two levels. The first draws points (a configuration with all its
seeds) with replacement: replicates share whatever the law gets wrong at their N and D, so drawing them
as independent runs would count one deviation three times and narrow the intervals. The second level
takes the seeds of each drawn point without replacement, that is all of them (Ren et al. 2010, "Nonparametric
bootstrapping for hierarchical data", recommend this: replacement at the top level only). The seed noise
is in the intervals through the first level, as each point's mean carries it. Drawing seeds with
replacement as well counts that noise twice (Davison & Hinkley 1997, sec. 3.8): on 100 synthetic draws
of 40 points x 3 seeds, 1% noise, the 95% interval of the allocation exponent a covered the truth 100
times that way and 97 times with seeds kept (`redraw_seeds` keeps the other scheme for comparison).
Without replicates every point is one run and this is the plain bootstrap over runs.
"""
from __future__ import annotations

import numpy as np

DEFAULT_RESAMPLES = 1000


def run_weights(run_codes: np.ndarray, n_runs: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_rows) weights: how often each row's run was drawn in each resample."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_runs, np.full(n_runs, 1.0 / n_runs), size=n_resamples)
    return counts[:, run_codes].astype(np.float64)


def two_level_weights(run_codes: np.ndarray, point_of_run: np.ndarray, n_resamples: int, seed: int,
                      strata: np.ndarray | None = None, redraw_seeds: bool = False, dtype=np.float64) -> np.ndarray:
    """(n_resamples, n_rows) weights of a two-level bootstrap: points drawn with replacement (within
    each stratum of `strata`, one per point, when given), then, for every draw of a point, all its runs
    (or, with `redraw_seeds`, its runs drawn with replacement: wider than the truth, see above).
    `point_of_run[r]` is run r's point; `run_codes[i]` is row i's run. `dtype` np.uint8 keeps 1,000
    resamples of 100,000 rows in 100 MB (float64: 800 MB); a count past 255 makes them float64 instead."""
    rng = np.random.default_rng(seed)
    point_of_run = np.asarray(point_of_run, dtype=np.int64)
    n_points = int(point_of_run.max()) + 1 if len(point_of_run) else 0
    strata = np.zeros(n_points, dtype=np.int64) if strata is None else np.asarray(strata, dtype=np.int64)
    drawn = np.zeros((n_resamples, n_points), dtype)  # the weights' type, so no converted copy later
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        counts = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)), size=n_resamples)
        drawn = _room_for(drawn, counts)
        drawn[:, members] = counts
    # Every run of a point comes in as often as its point was drawn: one gather per row, not a loop over
    # points (a scan of all runs per point made 10,000 points cost seconds and 100,000 minutes), and no
    # (resamples, runs) array in between (800 MB at 100,000 runs).
    if not redraw_seeds:
        return drawn[:, point_of_run[run_codes]]
    counts = drawn[:, point_of_run]
    order = np.argsort(point_of_run, kind="stable")  # runs grouped by point, in point order
    for runs in np.split(order, np.flatnonzero(np.diff(point_of_run[order])) + 1):
        if len(runs) > 1:
            # k draws of the point, each drawing its n seeds with replacement: n k draws of one seed
            k = drawn[:, point_of_run[runs[0]]].astype(np.int64)
            seeds = rng.multinomial(k * len(runs), np.full(len(runs), 1.0 / len(runs)))
            counts = _room_for(counts, seeds)
            counts[:, runs] = seeds
    return counts[:, run_codes]


def _room_for(array: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`array`, as float64 if its integer type cannot hold `counts` (numpy would wrap them silently)."""
    if np.issubdtype(array.dtype, np.integer) and counts.max(initial=0) > np.iinfo(array.dtype).max:
        return array.astype(np.float64)
    return array


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
