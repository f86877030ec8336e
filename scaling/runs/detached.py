"""The run home as a task of another engine sees it (a Ray task, a SLURM array task on a compute node):
the run directory alone records the run, and the SQLite index is neither read nor written.

On a cluster the home usually sits on a network file system whose locks SQLite cannot trust, and many
tasks on many nodes would contend for one database file. A task owns exactly one run directory (the
engine gave the point to it alone), so it needs no lock: it writes config.yaml, metrics.jsonl,
checkpoints and summary.json as any run does, and whoever launched it brings the index up to date from
that directory afterwards (the Ray driver as each task returns; `RunHome.refresh_from_files` at the
next `sweep status` or `scaling runs` for SLURM).
"""
from __future__ import annotations

from contextlib import contextmanager

from scaling.runs.index import RunHome


class FilesOnlyHome(RunHome):
    """A RunHome whose index is out of reach: reads find nothing, state writes only write the files."""

    def read(self, query: str, args: tuple = ()) -> list:
        return []

    @contextmanager
    def db(self):
        raise RuntimeError(f"{self.root}: a run trained for another engine must not write the index")
        yield  # pragma: no cover - makes this a generator for contextmanager

    def holds(self, run_id: str, fence) -> bool:
        return True  # the engine gave this task the run; there is no claim to lose

    def record_state(self, run_id: str, status: str, config: dict, summary: dict | None = None, *,
                     sweep_id: str | None = None, reason: str | None = None, fence=None, write=None) -> bool:
        if write is not None:
            write()
        return True

    def index_run(self, run_id: str, status: str, config: dict, summary: dict | None = None,
                  sweep_id: str | None = None) -> None:
        return None
