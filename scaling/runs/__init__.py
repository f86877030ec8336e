"""The run home: run directories (the source of truth), the SQLite index and queue over them (with the
claims' fencing tokens), every write of a run's state (fence.py), and the runs table read from them."""
from scaling.runs.fence import RunWriter, is_result
from scaling.runs.files import LocalTracker, RunDir, StorageError, read_json, read_metrics, write_atomic
from scaling.runs.index import STATUSES, TERMINAL, Fence, IndexedRun, LeaseLost, RunHome, resolve_home
from scaling.runs.table import RUN_COLUMNS, runs_table

__all__ = ["RunWriter", "is_result", "LocalTracker", "RunDir", "StorageError", "read_json", "read_metrics",
           "write_atomic", "STATUSES", "TERMINAL", "Fence", "IndexedRun", "LeaseLost", "RunHome", "resolve_home",
           "RUN_COLUMNS", "runs_table"]
