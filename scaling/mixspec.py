"""The config keys of a data mixture, parsed and checked without touching a corpus (docs/contracts.md
"Data mixtures").

`corpus=mix` trains on several prepared corpora at once: `domains` names them, `mixture` weighs them.

    domains: {python: corpora/python, prose: corpora/prose}     # or domains=python:corpora/python,...
    mixture: {python: 0.7, prose: 0.3}                          # or mixture=python:0.7,prose:0.3

Names are short labels (they name the summary's `tokens/<name>` keys); weights are non-negative and
need not sum to one (they are normalised). A sweep keeps `domains` constant and varies `mixture`, so each
point's value stays short. The syntax is checked here, at config time; the corpora themselves (one
tokenizer across them) when the run is planned (scaling/mixture.py).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from scaling.errors import UsageError

MIX = "mix"  # the corpus value that selects a mixture
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


@dataclass(frozen=True)
class Mixture:
    """A checked mixture: domain names, their normalised weights (summing to 1) and their corpus specs."""

    names: tuple[str, ...]
    weights: tuple[float, ...]
    corpora: tuple[str, ...]

    def weight(self, name: str) -> float:
        return self.weights[self.names.index(name)]


def flatten(value) -> object:
    """A YAML mapping {name: value} as the `name:value,...` text the key holds (command line and sweeps
    pass text); anything else unchanged."""
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    return value


def _pairs(key: str, text: str, example: str) -> list[tuple[str, str]]:
    out = []
    for part in text.split(","):
        name, sep, value = part.strip().partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not value or not _NAME.fullmatch(name):
            raise UsageError(f"{key}={text}: expected {example} (names of letters, digits, '_', '-', '.'), "
                             f"got {part.strip()!r}")
        if name in (n for n, _ in out):
            raise UsageError(f"{key}={text}: {name!r} is given twice")
        out.append((name, value))
    return out


def parse_domains(text: str) -> dict[str, str]:
    """`name:CORPUS,...` -> {name: corpus spec}, in the order given."""
    return dict(_pairs("domains", text, "NAME:DIR,NAME:DIR"))


def parse_weights(text: str) -> dict[str, float]:
    """`name:weight,...` -> {name: weight} as given (not normalised); a weight that is not a finite
    non-negative number is refused."""
    out = {}
    for name, value in _pairs("mixture", text, "NAME:WEIGHT,NAME:WEIGHT"):
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight < 0:
            raise UsageError(f"mixture={text}: the weight of {name!r} is {value!r}; weights are finite numbers >= 0")
        out[name] = weight
    return out


def parse(corpus: str, mixture: str | None, domains: str | None) -> Mixture | None:
    """The config's mixture (None unless corpus=mix), checked: every weighed name is a domain, some
    weight is positive, and the keys come together."""
    if corpus != MIX:
        for key, value in (("mixture", mixture), ("domains", domains)):
            if value is not None:
                raise UsageError(f"{key}={value}: describes a mixture's corpora; it needs corpus=mix "
                                 f"(got corpus={corpus})")
        return None
    if mixture is None or domains is None:
        raise UsageError("corpus=mix needs mixture=NAME:WEIGHT,... and domains=NAME:DIR,... "
                         "(the prepared corpora it draws from)")
    where = parse_domains(domains)
    weights = parse_weights(mixture)
    unknown = [n for n in weights if n not in where]
    if unknown:
        raise UsageError(f"mixture={mixture}: {unknown[0]!r} is not a domain (domains: {', '.join(where)})")
    total = sum(weights.values())
    if not total > 0:
        raise UsageError(f"mixture={mixture}: every weight is zero; give some domain a positive weight")
    names = tuple(where)  # every domain, in the order `domains` gives them; unweighed ones weigh 0
    return Mixture(names, tuple(weights.get(n, 0.0) / total for n in names), tuple(where[n] for n in names))


def canonical(weights: dict[str, float]) -> str:
    """The `mixture` text of a {name: weight} mapping (what the planner writes)."""
    return ",".join(f"{name}:{weight:g}" for name, weight in weights.items())
