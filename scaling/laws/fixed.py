"""Holding some of a law's parameters at given values (`fit(..., fixed={"E": 1.69})`).

A fixed parameter removes a coordinate from the optimizer. Every parameter a user can name maps to its
optimizer coordinates affinely once its value is known: most are one coordinate (E = exp(e), alpha =
alpha), and the scale of a pure power law is tied to its exponent (N_c = exp(c / alpha_N), so fixing
N_c sets c = alpha_N log N_c). So the full coordinates are `const + M @ free`, and the gradient in the
free coordinates is the full gradient times M: the forms' own closed-form gradients stay in use.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from scaling.laws.errors import ArgumentError
from scaling.laws.forms import LawForm

# natural name -> (optimizer index, "log" | "id" | ("times", other index))
_CHINCHILLA = {"E": (2, "log"), "A": (0, "log"), "B": (1, "log"), "alpha": (3, "id"), "beta": (4, "id")}
RULES: dict[str, dict[str, tuple]] = {
    "chinchilla": _CHINCHILLA,
    "data-constrained": {**_CHINCHILLA, "R_D_star": (5, "log"), "R_N_star": (6, "log")},
    # log L = c - alpha log N with c = alpha log N_c
    "kaplan-n": {"N_c": (0, ("times", 1)), "alpha_N": (1, "id")},
    "kaplan-d": {"D_c": (0, ("times", 1)), "alpha_D": (1, "id")},
    "kaplan-joint": {"N_c": (0, "log"), "D_c": (1, "log"), "alpha_N": (2, "id"), "alpha_D": (3, "id")},
    # the (C0/C)^gamma term is exp(c - gamma log C) with c = gamma log C0
    "compute": {"E": (0, "log"), "C0": (1, ("times", 2)), "gamma": (2, "id")},
}


@dataclass(frozen=True)
class Fixing:
    """The map between a form's free coordinates and its full ones, for one set of fixed values."""

    form: LawForm
    values: tuple[tuple[str, float], ...]  # the fixed natural parameters, sorted by name
    free: tuple[int, ...]  # indices of the free coordinates in the full vector
    M: np.ndarray  # (P, P_free)
    const: np.ndarray  # (P,)

    @property
    def fixed(self) -> dict[str, float]:
        return dict(self.values)

    def expand(self, free_theta) -> np.ndarray:
        """Full optimizer coordinates (..., P) from free ones (..., P_free)."""
        return self.const + np.asarray(free_theta, dtype=np.float64) @ self.M.T

    def reduce(self, full_theta) -> np.ndarray:
        """The free coordinates of full vectors, duplicates dropped (a start grid collapses onto them)."""
        rows = np.asarray(full_theta, dtype=np.float64)[:, list(self.free)]
        _, first = np.unique(rows, axis=0, return_index=True)
        return rows[np.sort(first)]

    @property
    def value_and_grad(self):
        return _reduced_vg(self.form.value_and_grad, self.values, self.M.tobytes(), self.const.tobytes(),
                           self.M.shape)


@functools.lru_cache(maxsize=64)
def _reduced_vg(vg, values, m_bytes, c_bytes, shape):
    """One function object per (form, fixed values): the optimizer compiles once per key, not per fit."""
    M = np.frombuffer(m_bytes).reshape(shape)
    const = np.frombuffer(c_bytes)

    def reduced(T, X, log_loss, delta, w):
        Mj, cj = jnp.asarray(M), jnp.asarray(const)
        f, g = vg(cj + T @ Mj.T, X, log_loss, delta, w)
        return f, g @ Mj

    return reduced


def fixing(form: LawForm, fixed: Mapping[str, float] | None) -> Fixing | None:
    """The Fixing for `fixed` (natural names, e.g. {"E": 1.69}), or None when nothing is fixed.

    Raises:
        UsageError: an unknown name, a value that is not a finite number (positive for scales), or every
            parameter fixed.
    """
    if not fixed:
        return None
    rules = RULES[form.name]
    values = {}
    for name, value in fixed.items():
        if name not in rules:
            raise ArgumentError("fixed", f"law {form.name} has no parameter {name!r} "
                                f"(its parameters: {', '.join(form.param_names)})", repr({name: value}), name)
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ArgumentError("fixed", "expected a number", repr({name: value}), f"{name}={value!r}") from None
        kind = rules[name][1]
        if not math.isfinite(v) or (kind != "id" and v <= 0):
            need = "a positive finite number" if kind != "id" else "a finite number"
            raise ArgumentError("fixed", f"expected {need}", repr({name: value}), f"{name}={value}")
        values[name] = v
    P = len(form.theta_names)
    pinned = {rules[n][0] for n in values}
    free = tuple(i for i in range(P) if i not in pinned)
    if not free:
        raise ArgumentError("fixed", f"every parameter of law {form.name} is fixed; leave at least one to fit")
    col = {i: j for j, i in enumerate(free)}
    M, const = np.zeros((P, len(free))), np.zeros(P)
    for i in free:
        M[i, col[i]] = 1.0
    for name, v in values.items():
        i, kind = rules[name]
        if kind == "id":
            const[i] = v
        elif kind == "log":
            const[i] = math.log(v)
    for name, v in values.items():  # the tied scales, once their exponent is known or free
        i, kind = rules[name]
        if isinstance(kind, tuple):
            j = kind[1]
            if j in col:
                M[i, col[j]] = math.log(v)
            else:
                const[i] = const[j] * math.log(v)
    return Fixing(form, tuple(sorted(values.items())), free, M, const)
