"""Fitted rules read back from fit JSON, and their evaluation: the learning-rate law lr_opt = c N^k
(`scaling fit --law lr --json`) and the batch law batch_opt = c C^k or c L^k (`--law batch`).

Every user of a fitted rule goes through here (a run's `recipe=` and `lr=fit:`, the ladder's `--rules`),
so each refuses the same files with the same one-line reasons, and a run and a ladder plan evaluate a rule
identically. Each rule keeps its file's path and sha256: a run records both, so its config.yaml says which
law set its lr and batch size without the file, and a resume under an edited file is refused.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from scaling.errors import UsageError

LAWS = ("lr", "batch")
HINT = "scaling fit --law lr|batch --json FIT.json"


@dataclass(frozen=True)
class Rule:
    """One fitted power law: value = coefficient * x^exponent, x the run's N (lr) or C or L (batch)."""

    law: str  # "lr" | "batch"
    coefficient: float
    exponent: float
    against: str | None  # batch: "flops" or "loss" (what x is); lr: None (x is N)
    source: str  # where it came from, as the user named it ("recipe=lr.json"): every message starts with it
    path: str | None = None
    sha256: str | None = None

    @property
    def formula(self) -> str:
        x = {None: "N", "flops": "C", "loss": "L"}[self.against]
        return f"{self.law}_opt = {self.coefficient:.4g} {x}^{self.exponent:.4g}"

    def __call__(self, x: float) -> float:
        try:
            value = self.coefficient * float(x) ** self.exponent
        except OverflowError:
            value = math.inf
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"{self.source}: {self.formula} gives {value:g} at {x:.4g}; not a usable "
                             f"{'learning rate' if self.law == 'lr' else 'batch size'} (refit, or give "
                             f"{'lr' if self.law == 'lr' else 'batch_size'} yourself)")
        return value

    def record(self) -> dict:
        """What a run's config.yaml keeps of the rule: enough to evaluate it again without the file."""
        out = {"path": self.path, "sha256": self.sha256, "law": self.law,
               f"{self.law}_opt": {"coefficient": self.coefficient, "exponent": self.exponent}}
        if self.against is not None:
            out["against"] = self.against
        return out


@dataclass(frozen=True)
class Rules:
    """Fitted rules in the order given, at most one of each law."""

    rules: tuple[Rule, ...] = ()

    def __post_init__(self):
        seen: dict[str, Rule] = {}
        for rule in self.rules:
            if rule.law in seen:
                raise UsageError(f"{seen[rule.law].source} and {rule.source}: two {rule.law} laws; give one of "
                                 f"each law ({', '.join(LAWS)})")
            seen[rule.law] = rule

    @classmethod
    def from_fits(cls, fits: Sequence[dict], source: str = "--rules") -> Rules:
        """Rules from fit JSONs already loaded (no file behind them)."""
        return cls(tuple(rule_of(fit, source) for fit in fits))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def _law(self, law: str) -> Rule | None:
        return next((r for r in self.rules if r.law == law), None)

    @property
    def lr_rule(self) -> Rule | None:
        return self._law("lr")

    @property
    def batch_rule(self) -> Rule | None:
        return self._law("batch")

    def lr(self, params: float) -> float | None:
        """The peak learning rate at N = `params`, or None without an lr rule."""
        return None if self.lr_rule is None else float(self.lr_rule(params))

    def batch_size(self, flops: float, loss: float | None = None) -> int | None:
        """Sequences per step at compute C = `flops` (or at `loss` for a law fitted against the loss),
        rounded to a whole sequence; None without a batch rule. A law against the loss needs the loss:
        a run does not know its own before it trains, so only a caller with a prediction (the ladder)
        passes one."""
        rule = self.batch_rule
        if rule is None:
            return None
        if rule.against == "loss" and loss is None:
            raise UsageError(f"{rule.source}: a batch law against the loss (batch_opt = c L^k) needs the run's "
                             "loss, unknown before it trains; fit it against compute (scaling fit --law batch "
                             "--against flops) or give batch_size")
        x = loss if rule.against == "loss" else flops
        value = rule(x)
        if value < 1:
            raise UsageError(f"{rule.source}: {rule.formula} gives {value:.3g} sequences per step at "
                             f"{'L' if rule.against == 'loss' else 'C'} = {x:.4g}; a batch needs at least 1 "
                             "(refit, or give batch_size)")
        return int(round(value))

    @property
    def sha256(self) -> str | None:
        """The files' sha256 in the order given, comma-separated (what a run's config pins)."""
        return ",".join(r.sha256 for r in self.rules if r.sha256) or None


def rule_of(fit, source: str, path: str | None = None, sha256: str | None = None) -> Rule:
    """The rule of one fit JSON (`scaling fit --law lr|batch --json`), or a one-line refusal naming `source`."""
    if not isinstance(fit, dict) or "law" not in fit:
        raise UsageError(f"{source}: not a fit JSON (write one with {HINT})")
    law = fit["law"]
    if law not in LAWS:
        raise UsageError(f"{source}: a fit JSON of law {law!r}; expected law lr or batch ({HINT})")
    power = fit.get(f"{law}_opt")
    c, k = (power.get("coefficient"), power.get("exponent")) if isinstance(power, dict) else (None, None)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (c, k)) \
            or not c > 0:
        raise UsageError(f"{source}: law {law} without a power law ({law}_opt needs a finite coefficient > 0 and a "
                         f"finite exponent; got {power!r:.80})")
    against = None
    if law == "batch":
        against = fit.get("against", "flops")
        if against not in ("flops", "loss"):
            raise UsageError(f"{source}: law batch against {against!r}; expected flops or loss")
    return Rule(law, float(c), float(k), against, source, path, sha256)


def read_rule(path: str, prefix: str) -> Rule:
    """One fit JSON file's rule; `prefix` + path names it in every message ("recipe=", "--rules ")."""
    source = f"{prefix}{path}"
    try:
        with open(path, "rb") as fh:
            content = fh.read()
    except OSError as err:
        raise UsageError(f"{source}: cannot read it ({err.strerror or err})") from None
    try:
        fit = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UsageError(f"{source}: not JSON (write one with {HINT})") from None
    return rule_of(fit, source, path, hashlib.sha256(content).hexdigest())


def read_rules(paths: Sequence[str], prefix: str) -> Rules:
    """The rules of fit JSON files, at most one of each law."""
    return Rules(tuple(read_rule(path, prefix) for path in paths))


def split_paths(text: str | None) -> list[str]:
    """`A.json,B.json` -> its paths (empty parts dropped)."""
    return [p.strip() for p in (text or "").split(",") if p.strip()]
