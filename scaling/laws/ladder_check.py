"""The ladder check: a law fitted to a sweep's runs, asked for the loss of a larger run it never saw.

A ladder run (`scaling sweep plan --validate C_BIG`) is trained past a finished sweep at the size its law
calls compute-optimal; its config names the sweep it checks (`validates`, a runs-table column). Here each
such run is compared with every law of the loss that can be evaluated at its own N and D, each fitted to
the runs of the sweep it names and nothing else (the ladder runs are never part of a fit): the predicted
loss with its bootstrap 95% interval, the measured loss, the error in half-widths of that interval and in
run-to-run noise SDs (the sweep's seed replicates, noise.py), and whether the measurement falls inside.

Approaches 1 and 2 (envelope, isoFLOP) give N_opt(C), not a loss past the compute they measured, so only
the parametric laws (`PREDICTING`) take part.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaling.errors import UsageError
from scaling.laws._json import clean
from scaling.laws.bootstrap import interval
from scaling.laws.forms import features_for
from scaling.laws.isoflop import group_budgets
from scaling.laws.noise import noise_floor
from scaling.laws.optim import x64
from scaling.laws.table import RunsTable, load_runs

COLUMN = "validates"  # the runs-table column (and config key) naming the sweep a ladder run checks
# The laws whose fit gives a loss at any (N, D): the parametric laws of the loss (LawFit).
PREDICTING = ("chinchilla", "kaplan-joint", "data-constrained", "kaplan-n", "kaplan-d", "compute")


def ladder_mask(frame: pd.DataFrame) -> pd.Series:
    """Which rows are ladder runs: a non-empty `validates`."""
    if COLUMN not in frame.columns:
        return pd.Series(False, index=frame.index)
    text = frame[COLUMN].astype("string").str.strip()
    named = frame[COLUMN].notna() & text.notna() & (text != "") & (text.str.lower() != "nan")
    return named.fillna(False).astype(bool)


def split_ladder(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the other rows, the ladder runs' rows): a fit must see only the first."""
    mask = ladder_mask(frame)
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)


def largest_budget(table: RunsTable) -> float:
    """A sweep's largest compute: the largest budget its runs were given (`flops_budget`) when they all say,
    else the largest C measured (runs round D to whole steps, so a 2e12 run may measure 2.002e12)."""
    if "flops_budget" in table.frame.columns:
        given = pd.to_numeric(table.frame["flops_budget"], errors="coerce")
        if given.notna().all() and (given > 0).all():
            return float(given.max())
    return float(table.column("flops").max())


def predict_with_interval(fit, params: float, tokens: float, epochs: float | None = None
                          ) -> tuple[float, tuple[float, float] | None]:
    """A parametric law's loss at (N, D) and the 95% percentile interval of its bootstrap resamples' losses
    there (None without resamples)."""
    value = float(fit.predict(params=params, tokens=tokens, epochs=epochs))
    if fit.samples is None or len(fit.samples) < 2:
        return value, None
    unique = None if epochs is None else [tokens / max(float(epochs), 1.0)]
    X = features_for(fit.form, [params], [tokens], [6.0 * params * tokens], unique)
    import jax.numpy as jnp

    with x64():
        logs = np.asarray(fit.form.log_predict(jnp.asarray(fit.samples, jnp.float64), jnp.asarray(X, jnp.float64)))
    return value, interval(np.exp(logs[:, 0]))


@dataclass(frozen=True)
class Prediction:
    """One law's prediction for one ladder run, against its measurement."""

    law: str
    label: str
    loss: float
    ci95: tuple[float, float] | None
    measured: float
    noise_sd: float | None  # the sweep's run-to-run SD of a final loss (pooled over its seed replicates)

    @property
    def error(self) -> float:
        """Measured minus predicted."""
        return self.measured - self.loss

    @property
    def rel_error(self) -> float:
        return self.error / self.loss

    @property
    def half_width(self) -> float | None:
        """The interval's half on the side the measurement fell (the bootstrap interval is not symmetric)."""
        if self.ci95 is None:
            return None
        return self.ci95[1] - self.loss if self.error >= 0 else self.loss - self.ci95[0]

    @property
    def in_half_widths(self) -> float | None:
        """The error in half-widths of the interval: inside it exactly when |x| <= 1."""
        hw = self.half_width
        return None if hw is None or not hw > 0 else self.error / hw

    @property
    def in_noise_sds(self) -> float | None:
        return None if not self.noise_sd else self.error / self.noise_sd

    @property
    def inside(self) -> bool | None:
        return None if self.ci95 is None else bool(self.ci95[0] <= self.measured <= self.ci95[1])

    def verdict(self) -> str:
        if self.inside is None:
            return "no interval (bootstrap 0)"
        if self.inside:
            return "inside the 95% interval"
        near = self.in_noise_sds is not None and abs(self.in_noise_sds) <= 2.0
        return "OUTSIDE the 95% interval" + (" (within 2 noise SDs: one seed's luck could explain it)"
                                             if near else "")

    def to_json(self) -> dict:
        return {"law": self.law, "label": self.label, "predicted": self.loss,
                "ci95": None if self.ci95 is None else list(self.ci95), "measured": self.measured,
                "error": self.error, "rel_error": self.rel_error, "half_width": self.half_width,
                "error_in_half_widths": self.in_half_widths, "noise_sd": self.noise_sd,
                "error_in_noise_sds": self.in_noise_sds, "inside": self.inside}


@dataclass(frozen=True)
class LadderRun:
    """One ladder run: where it ran, what it measured, and each law's prediction (or why none)."""

    run_id: str
    validates: str
    params: float
    tokens: float
    flops: float
    measured: float
    largest: float | None = None  # the largest compute among the runs its laws were fitted to
    fitted_runs: int = 0
    predictions: tuple[Prediction, ...] = ()
    reason: str | None = None  # why it was not checked

    @property
    def past(self) -> float | None:
        """Its compute over the sweep's largest."""
        return None if not self.largest else self.flops / self.largest

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "validates": self.validates, "params": self.params, "tokens": self.tokens,
                "flops": self.flops, "measured": self.measured, "sweep_largest_flops": self.largest,
                "times_sweep_largest": self.past, "fitted_runs": self.fitted_runs,
                "predictions": [p.to_json() for p in self.predictions], "not_checked": self.reason}


@dataclass(frozen=True)
class LadderCheck:
    """Every ladder run of a table, checked against the laws of the sweep it names."""

    runs: tuple[LadderRun, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    HEADER = ("ladder run", "law", "predicted [95%]", "measured", "error", "in half-widths", "in noise SDs",
              "verdict")

    def table(self, fmt: Callable) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        """(HEADER, one row per run and law), numbers written by `fmt` (the display's rounding)."""
        rows = []
        for r in self.runs:
            if not r.predictions:
                rows.append((r.run_id, "-", "-", fmt(r.measured), "-", "-", "-", f"not checked: {r.reason}"))
            for p in r.predictions:
                ci = "" if p.ci95 is None else f" [{fmt(p.ci95[0])}, {fmt(p.ci95[1])}]"
                signed = lambda x: "-" if x is None else f"{x:+.2f}"  # noqa: E731
                rows.append((r.run_id, p.label, fmt(p.loss) + ci, fmt(p.measured), f"{100 * p.rel_error:+.2f}%",
                             signed(p.in_half_widths), signed(p.in_noise_sds), p.verdict()))
        return self.HEADER, rows

    def headline(self) -> list[str]:
        """One line per ladder run: Approach 3's prediction (else the first law's) against the measurement."""
        out = []
        for r in self.runs:
            if not r.predictions:
                out.append(f"ladder run {r.run_id} (C = {r.flops:.3g}): not checked ({r.reason})")
                continue
            p = next((p for p in r.predictions if p.law == "chinchilla"), r.predictions[0])
            ci = "" if p.ci95 is None else f" [{p.ci95[0]:.4g}, {p.ci95[1]:.4g}]"
            past = "" if r.past is None else f", {r.past:.3g}x the sweep's largest compute"
            out.append(f"ladder run {r.run_id} (N = {r.params:.3g}, D = {r.tokens:.3g}, C = {r.flops:.3g}{past}): "
                       f"{p.label} predicted {p.loss:.4g}{ci}, measured {p.measured:.4g} "
                       f"({100 * p.rel_error:+.2f}%): {p.verdict()}")
        return out

    def to_json(self) -> dict:
        return clean({"runs": [r.to_json() for r in self.runs], "notes": list(self.notes)})


FitLaw = Callable[[RunsTable, str], object]


def check_ladder(frame: pd.DataFrame, laws: Sequence[str] = ("chinchilla",), *, fit_law: FitLaw | None = None,
                 reuse: Mapping[str, object] | None = None, reuse_runs: Collection[str] = (),
                 metric: str = "loss", **options) -> LadderCheck | None:
    """The ladder check of a runs table holding ladder runs (a `validates` column) and the runs they name.

    Args:
        frame: the runs: each ladder run's sweep (rows whose `sweep_id` is its `validates`; a table with no
            `sweep_id` column: all its other rows) and the ladder runs.
        laws: the laws to check (those in PREDICTING; Approach 3, chinchilla, always included).
        fit_law: fits a law to a RunsTable (default `scaling.laws.fit` with `options`).
        reuse, reuse_runs: fits already made ({law: result}) of the runs `reuse_runs` (run ids), used when a
            sweep's runs are exactly those (a report's own fit), instead of fitting again.
        metric: what `loss` is ("loss", or "bpb": the eval_bpb column), as `load_runs` reads it.
        options: for `scaling.laws.fit` (bootstrap, seed, huber_delta, starts, ...).
    Returns:
        The check, or None when the table has no ladder run.
    """
    rest, ladder = split_ladder(frame)
    if not len(ladder):
        return None
    if fit_law is None:
        from scaling.laws import fit

        fit_law = lambda table, law: fit(table, law, **options)  # noqa: E731
    laws = tuple(dict.fromkeys(("chinchilla", *(law for law in laws if law in PREDICTING))))
    notes: list[str] = []
    try:
        runs = load_runs(ladder, metric=metric)
    except UsageError as err:
        return LadderCheck((), (f"ladder runs: {err}",))
    if runs.n_dropped:
        from scaling.laws.table import describe_dropped

        notes.append(f"ladder runs not checked: {describe_dropped(runs.dropped)}")
    out = []
    for sweep, rows in runs.frame.groupby(runs.frame[COLUMN].astype(str).str.strip(), sort=True):
        base, why = _sweep_rows(rest, sweep)
        checked, errors = _check_sweep(sweep, base, rows, laws, fit_law, reuse or {}, set(map(str, reuse_runs)),
                                       metric)
        out += checked
        notes += ([why] if why else []) + errors
    return LadderCheck(tuple(out), tuple(notes))


def _sweep_rows(rest: pd.DataFrame, sweep: str) -> tuple[pd.DataFrame, str | None]:
    if "sweep_id" not in rest.columns:
        return rest, (f"the table names no sweeps: the ladder runs of {sweep} are checked against laws fitted "
                      "to all its other runs")
    return rest[rest["sweep_id"].astype(str) == sweep], None


def _check_sweep(sweep: str, base: pd.DataFrame, rows: pd.DataFrame, laws, fit_law, reuse, reuse_runs,
                 metric) -> tuple[list[LadderRun], list[str]]:
    """The ladder runs of one sweep, and notes (a law that could not be fitted to it)."""
    def runs(reason=None, predictions=None, **fitted) -> list[LadderRun]:
        return [LadderRun(run_id=str(r["run"]), validates=sweep, params=float(r["params"]), tokens=float(r["tokens"]),
                          flops=float(r["flops"]), measured=float(r["loss"]), reason=reason,
                          predictions=tuple((predictions or {}).get(i, ())), **fitted)
                for i, (_, r) in enumerate(rows.iterrows())]

    if not len(base):
        return runs(f"the runs of sweep {sweep} are not in the table"), []
    try:
        table = load_runs(base, metric=metric)
    except UsageError as err:
        return runs(f"sweep {sweep}: {err}"), []
    same = bool(reuse_runs) and set(table.frame["run"]) == reuse_runs
    fits, errors = {}, []
    for law in laws:
        try:
            fits[law] = reuse[law] if same and law in reuse else fit_law(table, law)
        except UsageError as err:
            errors.append(f"{law} not fitted to sweep {sweep}: {err}")
    if not fits:
        return runs("; ".join(errors)), []
    noise = next((f.noise for f in fits.values() if getattr(f, "noise", None) is not None), None)
    if noise is None:
        noise = noise_floor(table, *group_budgets(table))
    predictions: dict[int, list[Prediction]] = {}
    for i, (_, r) in enumerate(rows.iterrows()):
        epochs = float(r["epochs"]) if "epochs" in rows.columns and pd.notna(r["epochs"]) else None
        for law, result in fits.items():
            loss, ci = predict_with_interval(result, float(r["params"]), float(r["tokens"]),
                                             epochs if law == "data-constrained" else None)
            predictions.setdefault(i, []).append(Prediction(law, result.label, loss, ci, float(r["loss"]),
                                                            noise.pooled.sd))
    return runs(predictions=predictions, largest=largest_budget(table), fitted_runs=table.n_runs), errors
