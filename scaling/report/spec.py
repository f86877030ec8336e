"""What a report covers: which runs, which laws, which target budgets (a YAML file in analysis/, or
defaults), and the published laws it is compared with."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from scaling import safeyaml
from scaling.config import load_yaml
from scaling.errors import UsageError
from scaling.laws import LAWS
from scaling.runs.table import metric_column

PUBLISHED_PATH = Path(__file__).resolve().parents[2] / "analysis" / "published.yaml"
REFERENCE_LAW = "chinchilla_unrounded"


BUILT_IN_BUDGETS = (1e18, 1e21, 1e24)


@dataclass(frozen=True)
class ReportSpec:
    """Which runs, which laws, which target budgets (a YAML file in analysis/, or defaults)."""

    title: str = "Scaling-law report"
    sweep: str | None = None
    runs: str | None = None
    laws: tuple[str, ...] = ("chinchilla", "isoflop", "envelope")
    budgets: tuple[float, ...] = BUILT_IN_BUDGETS
    holdout: str | int = "largest-budget"
    bootstrap: int = 1000
    huber_delta: float = 1e-3
    seed: int = 0
    published: str | None = None
    metric: str = "loss"  # loss (nats/token) or bpb (bits per byte, for runs of different tokenizers)
    keep_unresolved: bool = False  # isoflop: a budget whose minimum is within the noise still enters N_opt(C)
    by: str | None = None  # a column whose values are recipes: one law per group, compared (report/compare_section.py)

    @property
    def gives_budgets(self) -> bool:
        """Whether the spec (or `--at`) names its budgets; the built-in ones are replaced by the report's
        own (the largest measured C x10, x100, ...: render.at_report_budgets). A spec that names exactly
        the built-in ones is taken as naming none."""
        return tuple(self.budgets) != BUILT_IN_BUDGETS

    @classmethod
    def load(cls, path: str | None, **overrides) -> ReportSpec:
        values = load_yaml(path) if path else {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"{path}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(known))})")
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            if "budgets" in values:
                values["budgets"] = tuple(float(b) for b in values["budgets"])
            if "laws" in values:
                values["laws"] = tuple(str(x) for x in values["laws"])
            for key in ("bootstrap", "seed"):
                if key in values:
                    values[key] = int(values[key])
            if "huber_delta" in values:
                values["huber_delta"] = float(values["huber_delta"])
        except (TypeError, ValueError):
            raise UsageError(f"{path}: budgets must be numbers, bootstrap and seed integers") from None
        if any(not b > 0 for b in values.get("budgets", ())):
            raise UsageError(f"{path}: budgets must be positive FLOP counts")
        bad = [x for x in values.get("laws", ()) if x not in LAWS]
        if bad:
            raise UsageError(f"{path}: unknown law {bad[0]!r} (allowed: {', '.join(LAWS)})")
        where = path or "report"
        if values.get("bootstrap", 0) < 0:
            raise UsageError(f"{where}: bootstrap={values['bootstrap']}: must be 0 or more resamples")
        if not values.get("huber_delta", 1.0) > 0:
            raise UsageError(f"{where}: huber_delta={values['huber_delta']}: must be positive")
        values["holdout"] = _holdout(values.get("holdout", cls.holdout), where)
        if values.get("metric", "loss") not in ("loss", "bpb"):
            try:  # an evaluation set's NAME:loss or NAME:bpb
                metric_column(str(values["metric"]))
            except UsageError:
                raise UsageError(f"{where}: metric={values['metric']!r}: allowed loss (nats/token), bpb (bits per "
                                 "byte), or NAME:loss / NAME:bpb of an evaluation set") from None
        if not isinstance(values.get("keep_unresolved", False), bool):
            raise UsageError(f"{where}: keep_unresolved={values['keep_unresolved']!r}: expected true or false")
        for key in ("title", "sweep", "runs", "published", "by"):
            if values.get(key) is not None and not isinstance(values[key], str):
                raise UsageError(f"{where}: {key}: expected text, got {values[key]!r}")
        if values.get("published") and not Path(values["published"]).is_file():
            raise UsageError(f"{where}: published: no such file {values['published']!r}")
        return cls(**values)


def _holdout(value, where: str) -> str | int:
    """'largest-budget', 'none', or a whole number of runs to hold out."""
    if value in ("largest-budget", "none") or value is None or value is False:
        return "none" if value in (None, False) else value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise UsageError(f"{where}: holdout={value!r}: allowed largest-budget, none, or a number of runs (0 or more)")


def load_published(path: str | None = None) -> dict:
    path = path or PUBLISHED_PATH
    try:
        with open(path) as fh:
            return safeyaml.safe_load(fh) or {}
    except OSError:
        return {}
    except yaml.YAMLError as err:  # a user's published-laws file: bounded like every YAML the workbench reads
        raise UsageError(f"{path}: not a readable YAML file ({str(err).splitlines()[0]})") from None
