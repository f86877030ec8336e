"""The one interface every fit result offers, so that a command, a report or a notebook can present
any law without knowing which one it is."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from scaling.laws.allocation import Allocation
from scaling.laws.powerlaw import PowerLaw


@dataclass(frozen=True)
class Estimate:
    """A fitted quantity and its 95% bootstrap interval (None without resamples)."""

    name: str
    value: float | None
    ci95: tuple[float, float] | None = None


@dataclass(frozen=True)
class Table:
    """Extra per-law detail as raw values (a command or report rounds them)."""

    header: tuple[str, ...]
    rows: tuple[tuple, ...]


class FitResult(Protocol):
    law: str
    n_points: int
    dropped: Mapping[str, int]
    n_resamples: int
    optimal: Allocation | None

    @property
    def title(self) -> str:
        """The law's form or method, in words."""

    @property
    def label(self) -> str:
        """A short name for tables and legends, e.g. "Approach 3 (parametric)"."""

    def method(self) -> str:
        """How it was fitted, in one line."""

    def estimates(self) -> list[Estimate]:
        """The fitted quantities with their intervals."""

    def details(self) -> list[Table]:
        """Further tables the law has (e.g. the isoFLOP minimum of each budget)."""

    def notes(self) -> list[str]:
        """One-line findings: holdout error, cross-checks, frontier sizes."""

    def exponents(self) -> tuple[Estimate, Estimate] | None:
        """a and b of N_opt ∝ C^a and D_opt ∝ C^b, when the law has them."""

    def frontier(self, flops: Sequence[float], which: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """N_opt ("params") or D_opt ("tokens") at each budget, and its 95% band (2, n) or None."""

    def to_json(self) -> dict:
        """The fit JSON (docs/contracts.md "The fit JSON"), numbers unrounded."""

    def to_frame(self) -> pd.DataFrame:
        """The fitted quantities as a table: quantity, value, ci95_lo, ci95_hi, fixed."""

    def plot(self, ax, **options):
        """Draw the fit on a matplotlib axis (the law's own picture); returns the axis."""


def power_law_estimates(n_opt: PowerLaw, d_opt: PowerLaw) -> list[Estimate]:
    return [Estimate("N_opt = k C^a: k", n_opt.coefficient, n_opt.coefficient_ci95),
            Estimate("N_opt = k C^a: a", n_opt.exponent, n_opt.ci95),
            Estimate("D_opt = k C^b: k", d_opt.coefficient, d_opt.coefficient_ci95),
            Estimate("D_opt = k C^b: b", d_opt.exponent, d_opt.ci95)]


def power_law_exponents(n_opt: PowerLaw | None, d_opt: PowerLaw | None) -> tuple[Estimate, Estimate] | None:
    if n_opt is None or d_opt is None:
        return None
    return Estimate("a", n_opt.exponent, n_opt.ci95), Estimate("b", d_opt.exponent, d_opt.ci95)


def power_law_frontier(law: PowerLaw | None, flops) -> tuple[np.ndarray | None, np.ndarray | None]:
    if law is None or not np.isfinite(law.exponent):
        return None, None
    mid = np.asarray(law(flops), dtype=float)
    if law.samples is None:
        return mid, None
    return mid, np.array([law.interval_at(c) for c in np.asarray(flops, dtype=float)]).T


def estimates_frame(estimates: Sequence[Estimate], fixed: Sequence[str] = ()) -> pd.DataFrame:
    """One row per fitted quantity, unrounded; NaN where there is no interval."""
    rows = [{"quantity": e.name, "value": np.nan if e.value is None else float(e.value),
             "ci95_lo": e.ci95[0] if e.ci95 else np.nan, "ci95_hi": e.ci95[1] if e.ci95 else np.nan,
             "fixed": e.name in fixed} for e in estimates]
    return pd.DataFrame(rows, columns=["quantity", "value", "ci95_lo", "ci95_hi", "fixed"])
