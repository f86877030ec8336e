"""One law per group of runs (per corpus, say), side by side, and where the groups differ beyond their
intervals.

Runs on different corpora follow different laws: pooling them fits neither. Each group is fitted alone;
then every pair is compared on the quantities users act on (the allocation exponents a and b, the law's
exponents, N_opt at the requested budgets): two groups differ on a quantity when their 95% intervals do
not overlap. Overlapping intervals are not evidence of equality; disjoint ones are evidence of a
difference (conservative: disjoint 95% intervals correspond to a test at well under 5%).
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.errors import ArgumentError
from scaling.laws.table import RunsTable


@dataclass(frozen=True)
class Difference:
    quantity: str
    groups: tuple[str, str]
    values: tuple[float, float]
    ci95: tuple[tuple[float, float], tuple[float, float]]

    def describe(self, column: str) -> str:
        (a, b), (ca, cb) = self.groups, self.ci95
        return (f"{self.quantity}: {column} {a} {self.values[0]:.4g} [{ca[0]:.4g}, {ca[1]:.4g}] vs {b} "
                f"{self.values[1]:.4g} [{cb[0]:.4g}, {cb[1]:.4g}]: the intervals do not overlap")

    def to_json(self) -> dict:
        return {"quantity": self.quantity, "groups": list(self.groups), "values": list(self.values),
                "ci95": [list(c) for c in self.ci95]}


@dataclass(frozen=True)
class GroupedFit:
    """A fit per value of `column`, and the pairs that differ beyond their intervals."""

    law: str
    column: str
    results: Mapping[str, object]  # group value -> FitResult
    errors: Mapping[str, str]  # group value -> why it could not be fitted

    def quantities(self) -> dict[str, dict[str, tuple[float | None, tuple[float, float] | None]]]:
        """quantity -> group -> (value, 95% interval): exponents, the law's own exponents, N_opt at budgets."""
        out: dict[str, dict] = {}
        for group, res in self.results.items():
            for name, value, ci in _quantities(res):
                out.setdefault(name, {})[group] = (value, ci)
        return out

    def differences(self) -> list[Difference]:
        found = []
        for name, by_group in self.quantities().items():
            for a, b in itertools.combinations(sorted(by_group), 2):
                (va, ca), (vb, cb) = by_group[a], by_group[b]
                if ca and cb and all(np.isfinite([*ca, *cb])) and (ca[1] < cb[0] or cb[1] < ca[0]):
                    found.append(Difference(name, (a, b), (va, vb), (tuple(ca), tuple(cb))))
        return found

    def to_json(self) -> dict:
        return clean({"law": self.law, "by": self.column,
                      "groups": {g: r.to_json() for g, r in self.results.items()},
                      "not_fitted": dict(self.errors),
                      "differences": [d.to_json() for d in self.differences()]})


def _quantities(res):
    ex = res.exponents() if hasattr(res, "exponents") else None
    if ex is not None:
        for e in ex:
            yield f"{e.name} (N_opt ∝ C^a, D_opt ∝ C^b)", e.value, e.ci95
    params = getattr(res, "params", None)
    if params:
        for name in ("alpha", "beta", "alpha_N", "alpha_D", "gamma"):
            if name in params:
                yield name, params[name], res.ci95.get(name)
    if getattr(res, "lr_opt", None) is not None:
        yield "k (lr_opt = c N^k)", res.lr_opt.exponent, res.lr_opt.ci95
    if getattr(res, "batch_opt", None) is not None:
        x = "C" if res.against == "flops" else "L"
        yield f"k (batch_opt = c {x}^k)", res.batch_opt.exponent, res.batch_opt.ci95
    opt = getattr(res, "optimal", None)
    if opt is not None:
        for point in opt.at:
            if point.params is not None:
                yield f"N_opt at C = {point.flops:.3g}", point.params, point.ci95.get("params")


def split_by(table: RunsTable, column: str) -> dict[str, RunsTable]:
    """The table's rows per value of `column` (in order of appearance); each part keeps no drop counts."""
    if column not in table.frame.columns:
        raise ArgumentError("column", "no such column in the runs table (columns: "
                            f"{', '.join(c for c in table.frame.columns if c not in ('run', 'point'))})",
                            repr(column), column)
    values = table.frame[column].astype(str)
    return {v: replace(table, frame=table.frame[values == v].reset_index(drop=True), n_input=int((values == v).sum()),
                       dropped={}, source=f"{table.source} [{column} = {v}]")
            for v in dict.fromkeys(values)}


def fit_by(table: RunsTable, column: str, fit_one: Callable[[RunsTable], object]) -> GroupedFit:
    """`fit_one` on each group of `column`; a group the law cannot fit is recorded with the reason."""
    parts = split_by(table, column)
    if len(parts) < 2:
        raise ArgumentError("column", f"the table has one value of {column!r}; nothing to compare", repr(column),
                            column)
    results, errors = {}, {}
    law = None
    for value, part in parts.items():
        try:
            results[value] = fit_one(part)
            law = results[value].law
        except UsageError as err:
            errors[value] = str(err)
    if not results:
        raise ArgumentError("column", "no group could be fitted ("
                            + "; ".join(f"{k}: {v}" for k, v in errors.items()) + ")", repr(column), column)
    return GroupedFit(law=law, column=column, results=results, errors=errors)
