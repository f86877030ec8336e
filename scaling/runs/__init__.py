"""The run home: run directories (the source of truth), the SQLite index over them (index.py, with the
claims' fencing tokens; its rows and fences are typed in records.py), the queue agents claim from
(queue.py), its rebuild from the files (rebuild.py), the store interface the trainer writes through
(store.py), every write of a run's state (fence.py), and the runs table read from them."""
from scaling.runs.fence import RunWriter, is_result
from scaling.runs.files import LocalTracker, RunDir, StorageError, read_json, read_metrics, write_atomic
from scaling.runs.index import RunHome, resolve_home
from scaling.runs.records import STATUSES, TERMINAL, Fence, IndexedRun, LeaseLost
from scaling.runs.store import RunStore, open_store
from scaling.runs.table import RUN_COLUMNS, runs_table

__all__ = ["RunWriter", "is_result", "LocalTracker", "RunDir", "StorageError", "read_json", "read_metrics",
           "write_atomic", "STATUSES", "TERMINAL", "Fence", "IndexedRun", "LeaseLost", "RunHome", "resolve_home",
           "RunStore", "open_store", "RUN_COLUMNS", "runs_table"]
