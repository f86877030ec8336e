"""The run home as a task of another engine sees it (a Ray task, a SLURM array task on a compute node):
the run directory alone records the run, and the SQLite index is neither read nor written.

On a cluster the home usually sits on a network file system whose locks SQLite cannot trust, and many
tasks on many nodes would contend for one database file. A task owns exactly one run directory (the
engine gave the point to it alone), so it needs no lock: it writes config.yaml, metrics.jsonl,
checkpoints and summary.json as any run does, and whoever launched it brings the index up to date from
that directory afterwards (the Ray driver as each task returns; `rebuild.refresh_from_files` at the
next `sweep status` or `scaling runs` for SLURM).
"""
from __future__ import annotations

import os

from scaling.runs.files import RunDir
from scaling.runs.index import resolve_home
from scaling.runs.records import Fence, IndexedRun


class FilesOnlyHome:
    """A run store (store.RunStore) whose index is out of reach: it knows no row and no claim, and a
    state write writes only the files."""

    def __init__(self, home: str | None = None):
        self.root = resolve_home(home)

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.root, run_id)

    def files(self, run_id: str) -> RunDir:
        return RunDir(self.run_dir(run_id))

    def indexed_run(self, run_id: str) -> IndexedRun | None:
        return None

    def owns(self, run_id: str, fence: Fence | None) -> bool:
        return True  # the engine gave this task the run; there is no claim to lose

    def record_state(self, run_id: str, status: str, config: dict, summary: dict | None = None, *,
                     sweep_id: str | None = None, reason: str | None = None, fence: Fence | None = None,
                     write=None) -> bool:
        if write is not None:
            write()
        return True

    def add_run(self, sweep_id: str, run_id: str, config: dict, plan: dict, after: str) -> None:
        raise RuntimeError(f"{self.root}: a run trained for another engine must not write the index")
