"""The run home: run directories (the source of truth), the SQLite index and queue over them, and the
runs table read from them."""
from scaling.runs.files import LocalTracker, RunDir, read_json, read_metrics, write_atomic
from scaling.runs.index import STATUSES, TERMINAL, IndexedRun, RunHome, resolve_home
from scaling.runs.table import RUN_COLUMNS, runs_table

__all__ = ["LocalTracker", "RunDir", "read_json", "read_metrics", "write_atomic", "STATUSES", "TERMINAL",
           "IndexedRun", "RunHome", "resolve_home", "RUN_COLUMNS", "runs_table"]
