"""The planner's prior N_opt(C): this family's law as the demo measured it (the default), Chinchilla's
published law, or any fit JSON of earlier runs.

Chinchilla's law was fitted on models of 7e7 parameters and up; at this workbench's budgets it puts
N_opt 3-6x above where this family's isoFLOP minima lie (9.2e4 at 2.5e11 FLOPs where the demo measures
about 2e4), so a plan centred on it samples sizes whose smallest one wins every budget and no minimum
resolves. The family's prior (analysis/family-prior.json) is the demo's own fit, measured on bytes: how
it was made is written in the file; a corpus of b bytes per token scales it by b (`Prior.for_corpus`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from scaling import safeyaml
from scaling.errors import UsageError
from scaling.laws import chinchilla_allocation

ANALYSIS = Path(__file__).resolve().parents[2] / "analysis"
PUBLISHED = ANALYSIS / "published.yaml"
FAMILY_PRIOR = ANALYSIS / "family-prior.json"
PRIOR_LAW = "chinchilla_unrounded"
DEFAULT_PRIOR = "family"


@dataclass(frozen=True)
class Prior:
    """N_opt(C) = coefficient * C^exponent, and where it comes from."""

    coefficient: float
    exponent: float
    source: str
    per_byte: bool = False  # measured on a byte-level corpus: N_opt for a model reading one byte per token

    def n_opt(self, flops: float) -> float:
        return self.coefficient * flops**self.exponent

    def budget_for(self, n: float) -> float:
        """The budget C whose N_opt(C) is n (the law inverted)."""
        return (n / self.coefficient) ** (1.0 / self.exponent)

    def for_corpus(self, bytes_per_token: float | None) -> Prior:
        """A law measured on bytes, for a corpus of b bytes per token: N_opt x b. A token of b bytes is b
        bytes of text for one token's compute, so the same compute sees b times the text; with the text
        seen per parameter kept at the byte law's optimum (D_opt in bytes), N_opt grows by b and D_opt in
        tokens shrinks by b. Checked on a bpe:512 corpus (2.2 bytes/token, seq_len 128): its isoFLOP minima
        at 4e11, 6e11 and 9e11 FLOPs lie at 3.4e4, 5.0e4 and 6.1e4 params; this gives 4.7e4, 5.6e4 and 6.8e4,
        the byte law alone 2.1e4-3.1e4 (its largest size won every budget) and Chinchilla's 1.1e5-1.6e5
        (tests/sweep/test_plan_e2e.py)."""
        if not self.per_byte or not bytes_per_token or bytes_per_token == 1.0:
            return self
        return Prior(self.coefficient * bytes_per_token, self.exponent,
                     f"{self.source}, x {bytes_per_token:.3g} bytes/token of this corpus", per_byte=False)


def chinchilla_prior(path: Path = PUBLISHED) -> Prior:
    """Hoffmann et al.'s Approach 3 law (unrounded), as analysis/published.yaml holds it."""
    with open(path) as fh:
        ref = safeyaml.safe_load(fh)[PRIOR_LAW]
    p = ref["params"]
    alloc = chinchilla_allocation(p["A"], p["B"], p["alpha"], p["beta"])
    a, G = float(alloc["a"]), float(alloc["G"])
    return Prior(G / 6.0**a, a, ref["title"])  # N_opt = G (C/6)^a


def family_prior(path: Path = FAMILY_PRIOR) -> Prior:
    """This family's isoFLOP law as the demo measured it (analysis/family-prior.json)."""
    prior = prior_from(str(path))
    data = json.loads(path.read_text())
    return Prior(prior.coefficient, prior.exponent, data.get("source", prior.source), per_byte=True)


def prior_from(text: str) -> Prior:
    """`family`, `chinchilla`, or a fit JSON: `scaling fit --json` of any law with N_opt(C), or a report's
    fit.json (its isoFLOP fit first, then Approach 3, then the envelope)."""
    if text == "family":
        return family_prior()
    if text == "chinchilla":
        return chinchilla_prior()
    path = Path(text)
    if not path.is_file():
        raise UsageError(f"--prior {text!r}: expected family, chinchilla or a fit JSON file (no such file)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UsageError(f"--prior {text}: not a fit JSON ({str(err).splitlines()[0]})") from None
    fits = [data] if isinstance(data, dict) and "law" in data else [
        data.get(k) for k in ("isoflop", "chinchilla", "envelope") if isinstance(data, dict)]
    for fit in fits:
        prior = _prior_of_fit(fit, text)
        if prior is not None:
            return prior
    raise UsageError(f"--prior {text}: the fit JSON has no N_opt(C) (fit --law isoflop, chinchilla or envelope)")


def _prior_of_fit(fit, where: str) -> Prior | None:
    if not isinstance(fit, dict):
        return None
    n_opt, opt = fit.get("n_opt"), fit.get("optimal") or {}
    if isinstance(n_opt, dict) and _finite(n_opt.get("coefficient"), n_opt.get("exponent")):
        return Prior(float(n_opt["coefficient"]), float(n_opt["exponent"]), f"{fit.get('law')} fit in {where}")
    if _finite(opt.get("a"), opt.get("G")):
        a = float(opt["a"])
        return Prior(float(opt["G"]) / 6.0**a, a, f"{fit.get('law')} fit in {where}")
    return None


def _finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
               for v in values)
