"""Ye et al.'s data mixing law, per evaluation domain i over training-mixture proportions r (summing to 1):

    L_i(r) = c_i + k_i exp(sum_j t_ij r_j)

fitted like the other laws (Huber on log residuals, summed; many starts; bootstrap over mixtures, each with
its seed replicates), then the mixture minimising a target weighting sum_i w_i L_i(r) over the simplex.

Because the proportions sum to 1, adding one number to every t_ij of a domain only rescales k_i: t is
identified up to that shift. The fit reports it centred (sum_j t_ij = 0), so k_i is the loss above c_i at
the uniform mixture, and t_ij < 0 says that more of training domain j lowers domain i's loss.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
import pandas as pd

import scaling.laws.domains as dom
from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.bootstrap import DEFAULT_RESAMPLES
from scaling.laws.domains import MIX_PREFIX, DomainTable, HeldOut
from scaling.laws.errors import ArgumentError
from scaling.laws.mixture_optimum import MixtureOptimum, best_mixture, parse_target, predict_loss
from scaling.laws.optim import autodiff_value_and_grad, huber
from scaling.laws.result import Estimate, Table, estimates_frame

SCALE_COLUMNS = ("flops_budget", "params", "tokens")  # what tells one scale of a mixture sweep from another


def _log_predict(T, R):
    """log L for parameters T (B, J+1) = (log c, log k, t_1..t_{J-1}) at proportions R (J, n); t_J is minus
    the sum of the others (the centring above)."""
    u = T[:, 2:]
    t = jnp.concatenate([u, -jnp.sum(u, axis=1, keepdims=True)], axis=1)
    return jnp.logaddexp(T[:, :1], T[:, 1:2] + t @ R)


def _objective(T, R, log_loss, delta, w):
    return jnp.sum(w * huber(_log_predict(T, R) - log_loss, delta), axis=1)


_VALUE_AND_GRAD = autodiff_value_and_grad(_objective)


def _t(theta) -> np.ndarray:
    theta = np.atleast_2d(theta)
    return np.concatenate([theta[:, 2:], -theta[:, 2:].sum(axis=1, keepdims=True)], axis=1)


def _starts(r: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """For c at fractions of the lowest loss, log(L - c) is linear in r: its least squares gives k and t."""
    design = np.column_stack([np.ones(len(r)), r[:, :-1] - r[:, -1:]])
    low = float(loss.min())
    rows = []
    for f in (0.0, 0.5, 0.8, 0.9, 0.95, 0.98):
        coef = np.linalg.lstsq(design, np.log(loss - f * low), rcond=None)[0]
        rows.append([np.log(max(f, 1e-3) * low), *coef])
    rows = np.array(rows)
    jitter = np.random.default_rng(0).normal(0.0, 0.5, (len(rows), rows.shape[1]))
    jitter[:, :2] = 0.0
    return np.vstack([rows, rows + jitter])


@dataclass(frozen=True)
class DomainLaw:
    """One evaluation domain's law: c, k, t by training domain (centred), intervals by the same names."""

    domain: str
    c: float
    k: float
    t: Mapping[str, float]
    ci95: Mapping[str, tuple[float, float]]
    objective: float
    n_starts: int
    n_converged: int
    theta: np.ndarray = field(repr=False)
    samples: np.ndarray = field(repr=False)

    def predict(self, proportions) -> np.ndarray:
        """The law's loss at proportions (n, J) in the fit's component order."""
        return predict_loss(self.theta, proportions)[0]

    def to_json(self) -> dict:
        return {"domain": self.domain, "c": self.c, "k": self.k, "t": dict(self.t),
                "ci95": {k: list(v) for k, v in self.ci95.items()}, "objective": self.objective,
                "n_starts": self.n_starts, "n_converged": self.n_converged}


@dataclass(frozen=True)
class MixtureScale:
    """The laws and optimum at one scale (a compute budget, or a model size and token count)."""

    scale: str
    n_runs: int
    n_mixtures: int
    laws: tuple[DomainLaw, ...]
    optimum: MixtureOptimum
    holdout: Mapping[str, HeldOut] | None
    noise_sd: Mapping[str, float | None]
    proportions: np.ndarray = field(repr=False)  # (n, J) every run's mixture, held-out runs included
    observed: np.ndarray = field(repr=False)  # (n, D) their losses per evaluation domain
    held: np.ndarray = field(repr=False)  # (n,) held out of the fit

    def to_json(self) -> dict:
        return {"scale": self.scale, "n_runs": self.n_runs, "n_mixtures": self.n_mixtures,
                "laws": [law.to_json() for law in self.laws], "optimum": self.optimum.to_json(),
                "holdout": None if self.holdout is None else {k: v.to_json() for k, v in self.holdout.items()},
                "noise_sd": dict(self.noise_sd)}


@dataclass(frozen=True)
class MixtureFit:
    """The mixing law per evaluation domain and the best mixture, at each scale of the table."""

    components: tuple[str, ...]
    domains: tuple[str, ...]
    target: Mapping[str, float]
    scales: tuple[MixtureScale, ...]
    n_points: int
    dropped: Mapping[str, int]
    n_resamples: int
    huber_delta: float
    optimal: None = None
    law: str = "mixture"

    title = "L_i(r) = c_i + k_i exp(sum_j t_ij r_j) per evaluation domain (Ye et al.'s data mixing law)"
    label = "data mixing law"

    def method(self) -> str:
        return (f"per domain: Huber (delta {self.huber_delta:g}) on log residuals, summed, best of many starts; "
                f"{self.n_resamples} bootstrap resamples of mixtures, each with its seed replicates; t centred "
                "(sum_j t_ij = 0)")

    def _prefix(self, s: MixtureScale) -> str:
        return f"[{s.scale}] " if len(self.scales) > 1 else ""

    def estimates(self) -> list[Estimate]:
        out = []
        for s in self.scales:
            p = self._prefix(s)
            for law in s.laws:
                out += [Estimate(f"{p}{law.domain}: c", law.c, law.ci95.get("c")),
                        Estimate(f"{p}{law.domain}: k", law.k, law.ci95.get("k"))]
                out += [Estimate(f"{p}{law.domain}: t[{j}]", v, law.ci95.get(f"t[{j}]")) for j, v in law.t.items()]
            out += [Estimate(f"{p}optimum r[{j}]", v, s.optimum.proportions_ci95.get(j))
                    for j, v in s.optimum.proportions.items()]
            out.append(Estimate(f"{p}optimum: target loss", s.optimum.loss, s.optimum.ci95))
        return out

    def details(self) -> list[Table]:
        rows = tuple((s.scale, *(s.optimum.proportions[j] for j in self.components), s.optimum.loss,
                      *(s.optimum.ci95 or (None, None))) for s in self.scales)
        return [Table(("scale", *(f"r[{j}]" for j in self.components), "target loss", "95% lo", "95% hi"), rows)]

    def notes(self) -> list[str]:
        target = ", ".join(f"{k}={v:g}" for k, v in self.target.items())
        out = [f"target: {target}; optimum searched on a simplex grid of step {self.scales[0].optimum.grid_step:g}"]
        for s in self.scales:
            for domain, h in (s.holdout or {}).items():
                out.append(h.describe(f"{self._prefix(s)}{domain}"))
        if len(self.scales) > 1:
            a, b = self.scales[0], self.scales[-1]
            moved = [j for j in self.components if _disjoint(a.optimum.proportions_ci95.get(j),
                                                              b.optimum.proportions_ci95.get(j))]
            out.append(f"optimum from {a.scale} to {b.scale}: " + (
                f"moved beyond the 95% intervals in {', '.join(moved)}" if moved else
                "no proportion moved beyond the 95% intervals (overlap is not evidence of equality)"))
        return out

    def exponents(self):
        return None

    def frontier(self, flops, which: str):
        return None, None

    def to_frame(self):
        return estimates_frame(self.estimates())

    def to_json(self) -> dict:
        return clean({"law": self.law, "components": list(self.components), "domains": list(self.domains),
                      "target": dict(self.target), "scales": [s.to_json() for s in self.scales],
                      "n_points": self.n_points, "n_dropped": int(sum(self.dropped.values())),
                      "dropped": dict(self.dropped), "bootstrap": self.n_resamples, "huber_delta": self.huber_delta})

    def plot(self, ax, scale: int = -1, **style):
        """Predicted against observed loss per evaluation domain at one scale; held-out runs hollow."""
        s = self.scales[scale]
        for i, law in enumerate(s.laws):
            pred, obs = law.predict(s.proportions), s.observed[:, i]
            ax.plot(pred[~s.held], obs[~s.held], "o", color=f"C{i}", label=law.domain)
            if s.held.any():
                ax.plot(pred[s.held], obs[s.held], "o", mfc="none", color=f"C{i}", label=f"{law.domain} (held out)")
        lo, hi = float(np.nanmin(s.observed)), float(np.nanmax(s.observed))
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        ax.set_xlabel("predicted loss")
        ax.set_ylabel("observed loss")
        ax.set_title(f"data mixing law at {s.scale}")
        ax.legend(fontsize=7)
        return ax


def _disjoint(a, b) -> bool:
    return a is not None and b is not None and (a[1] < b[0] or b[1] < a[0])


def fit_mixture(source, domains: Sequence[str] | None = None, *, target: Mapping[str, float] | None = None,
                bootstrap: int = DEFAULT_RESAMPLES, seed: int = 0, holdout: int = 0,
                huber_delta: float = 1e-3, fixed: Mapping[str, float] | None = None) -> MixtureFit:
    """Fit the data mixing law per evaluation domain at each scale of a mixture sweep, and the best mixture.

    Args:
        source: a runs table (path or DataFrame) with `mix/<component>` columns (shares of each training
            domain, normalised per row) and an `eval/<domain>/loss` column per evaluation domain.
        domains: evaluation domains to fit (names or columns; default every `eval/<d>/loss` column).
        target: weights of the domains' losses whose weighted sum the optimum minimises (default equal).
        bootstrap: resamples of mixtures, each with its seed replicates; seed: theirs and the holdout's.
        holdout: mixtures per scale held out of the fit (chosen at random by `seed`) and predicted.
    Returns:
        MixtureFit: per scale, each domain's c, k, t with 95% intervals, the optimum and the holdout error.
    Raises:
        UsageError: missing columns, too few mixtures; ArgumentError for a bad argument, by its name.
    """
    dom.check_no_fixed(fixed, "mixture")
    if not huber_delta > 0:
        raise ArgumentError("huber_delta", "must be positive", repr(huber_delta), f"{huber_delta:g}")
    raw, _ = dom.read_frame(source)
    components = tuple(c[len(MIX_PREFIX):] for c in raw.columns if c.startswith(MIX_PREFIX))
    if len(components) < 2:
        raise UsageError("law mixture needs mix/<domain> columns for at least 2 training domains (each run's "
                         f"mixture); the table has {len(components)}")
    names = list(domains) if domains else sorted(c.split("/")[1] for c in raw.columns
                                                 if c.startswith("eval/") and c.endswith("/loss"))
    if not names:
        raise UsageError("law mixture needs eval/<domain>/loss columns (the loss on each evaluation domain)")
    columns = [dom.resolve_column(raw, n, "domains") for n in names]
    labels = tuple(c.split("/")[1] if c.startswith("eval/") else c for c in columns)
    weights = parse_target(target, labels)
    mix_cols = [MIX_PREFIX + c for c in components]
    raw[mix_cols] = raw[mix_cols].fillna(0.0)  # a domain left out of a run's mixture has weight 0
    table = dom.load_domain_table(raw, [*mix_cols, *columns], positive=columns, point_keys=mix_cols)
    shares = table.frame[mix_cols].to_numpy(np.float64)
    total = shares.sum(axis=1)
    empty = total <= 0
    table = table.with_frame(table.frame[~empty], **{"mixture of all zeros": int(empty.sum())})
    scale_of, size = _scales(table.frame)
    scales = []
    for label in sorted(set(scale_of), key=lambda v: size[v]):
        part = table.with_frame(table.frame[scale_of == label])
        scales.append(_fit_scale(part, label, mix_cols, columns, labels, weights, bootstrap, seed,
                                 holdout, huber_delta))
    held = sum(int(s.held.sum()) for s in scales)
    table = table.with_frame(table.frame, **{"held out": held})
    return MixtureFit(components=components, domains=labels, target=weights, scales=tuple(scales),
                      n_points=table.n_points - held, dropped=dict(table.dropped), n_resamples=bootstrap,
                      huber_delta=float(huber_delta))


def _scales(frame) -> tuple[np.ndarray, dict[str, float]]:
    """Each row's scale label (`flops_budget`, else `params` and `tokens`) and each label's size for ordering.
    A runs table always has the flops_budget column, empty for runs given `tokens=` (a mixture plan's): an
    empty column does not tell scales apart."""
    budget = pd.to_numeric(frame["flops_budget"], errors="coerce") if "flops_budget" in frame.columns else None
    keys = (["flops_budget"] if budget is not None and budget.notna().all()
            else [c for c in SCALE_COLUMNS[1:] if c in frame.columns])
    if not keys:
        return np.full(len(frame), "all runs"), {"all runs": 0.0}
    values = frame[keys].apply(pd.to_numeric, errors="coerce")  # a text value labels its rows nan, not a crash
    labels = values.apply(lambda row: ", ".join(f"{k} {v:.3g}" for k, v in row.items()), axis=1).to_numpy()
    size = dict(zip(labels, values.prod(axis=1)))
    return labels, size


def _fit_scale(table: DomainTable, scale: str, mix_cols, columns, labels, weights, bootstrap, seed, holdout,
               delta) -> MixtureScale:
    shares = table.frame[mix_cols].to_numpy(np.float64)
    r_all = shares / shares.sum(axis=1, keepdims=True)
    points = table.frame["point"].to_numpy()
    unique = list(dict.fromkeys(points))
    need = len(mix_cols) + 2  # a free parameter more than c, k and J - 1 free t's
    if len(unique) < need:
        raise UsageError(f"law mixture at {scale}: needs at least {need} distinct mixtures for "
                         f"{len(mix_cols)} training domains; the table has {len(unique)}")
    dom.check_holdout(holdout, len(unique), need)
    rng = np.random.default_rng(seed)
    held_points = set(rng.choice(len(unique), holdout, replace=False).tolist()) if holdout else set()
    held = np.isin(points, [unique[i] for i in held_points])
    fit_table = table.with_frame(table.frame[~held], **{"held out": int(held.sum())})
    r = r_all[~held]
    laws, noise = [], {}
    for column, label in zip(columns, labels):
        loss = fit_table.column(column)
        data = (r.T, np.log(loss), float(delta))
        best = dom.fit_many(_VALUE_AND_GRAD, _starts(r, loss), data, fit_table, bootstrap, seed,
                        what=f"law mixture, domain {label}")
        t = _t(best.theta)[0]
        natural = {"c": np.exp(best.samples[:, 0]), "k": np.exp(best.samples[:, 1]),
                   **{f"t[{j[len(MIX_PREFIX):]}]": v for j, v in zip(mix_cols, _t(best.samples).T)}}
        laws.append(DomainLaw(domain=label, c=float(np.exp(best.theta[0])), k=float(np.exp(best.theta[1])),
                              t={j[len(MIX_PREFIX):]: float(v) for j, v in zip(mix_cols, t)},
                              ci95=dom.intervals(natural) if len(best.samples) > 1 else {},
                              objective=best.objective, n_starts=best.n_starts, n_converged=best.n_converged,
                              theta=best.theta, samples=best.samples))
        noise[label] = table.noise(column).sd
    observed = table.frame[list(columns)].to_numpy(np.float64)
    hold = None
    if holdout:
        names = [_describe(r_all[points == unique[i]][0], mix_cols) for i in sorted(held_points)]
        hold = {law.domain: HeldOut.of(names, law.predict(r_all[held]), observed[held, i], noise[law.domain])
                for i, law in enumerate(laws)}
    return MixtureScale(scale=scale, n_runs=fit_table.n_runs, n_mixtures=len(unique) - holdout, laws=tuple(laws),
                        optimum=best_mixture(laws, mix_cols, weights), holdout=hold, noise_sd=noise,
                        proportions=r_all, observed=observed, held=held)


def _describe(r: np.ndarray, mix_cols) -> str:
    return ",".join(f"{c[len(MIX_PREFIX):]}={v:.3g}" for c, v in zip(mix_cols, r))


