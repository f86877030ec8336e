"""What the trainer needs of a run home: the narrow interface `train_run` writes a run through.

Two homes implement it: `RunHome` (index.py), whose SQLite index checks every write against the run's
claim, and `FilesOnlyHome` (detached.py), for a task of an engine that schedules for itself, where the
run directory alone records the run.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from scaling.runs.files import RunDir
from scaling.runs.index import RunHome
from scaling.runs.records import Fence, IndexedRun


class RunStore(Protocol):
    root: str

    def run_dir(self, run_id: str) -> str: ...

    def files(self, run_id: str) -> RunDir: ...

    def indexed_run(self, run_id: str) -> IndexedRun | None:
        """The run's row: its last recorded state and claim (None where there is no index)."""

    def owns(self, run_id: str, fence: Fence | None) -> bool:
        """Whether `fence` is still the run's current claim: checked before each write of the run."""

    def record_state(self, run_id: str, status: str, config: dict, summary: dict | None = None, *,
                     sweep_id: str | None = None, reason: str | None = None, fence: Fence | None = None,
                     write: Callable[[], None] | None = None) -> bool:
        """Run `write()` (the summary file) and set the run's row, unless `fence` lost the run (False)."""

    def add_run(self, sweep_id: str, run_id: str, config: dict, plan: dict, after: str) -> None:
        """Queue a cooldown branch the run seeded, right after it (only a run under an agent does)."""


def open_store(home: RunStore | str | os.PathLike | None) -> RunStore:
    """The store a path (None: the default home) names, or the store itself."""
    return RunHome(home) if home is None or isinstance(home, (str, os.PathLike)) else home
