"""What an optional section adds to a report (the domains, the recipes compared): one record, so
write_report merges each the same way."""
from __future__ import annotations

from dataclasses import dataclass, field

from scaling.report.figures import Figure


@dataclass
class Section:
    """Headline lines, figures, tables (title, header, rows, note), notes, what could not be fitted and
    why, and the unrounded results for fit.json."""

    headline: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]], str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    json: dict = field(default_factory=dict)
