"""The run home's index (scaling/runs/index.py) on its own, with no training: where the home is, the
journal mode, a home under a file, the read-only read path and its fallback, a sweep's row and saved file,
a queued branch, a row without a summary. Each test pins a mutant that survived issue 23's mutation run."""
import json
import os
import sqlite3

import pytest

from scaling.errors import UsageError
from scaling.runs import RunHome, StorageError, queue, rebuild
from scaling.runs.index import resolve_home


def _sweep(home, runs=None, sweep_id="s", name="demo", spec=None) -> RunHome:
    store = RunHome(home)
    store.register_sweep(sweep_id, name, spec or {"name": name, "parameters": {"lr": {"values": [1, 2]}}},
                         runs or [{"run_id": f"{sweep_id}-0", "status": "pending", "config": {"lr": 1}}])
    return store


# ---- where the home is ----------------------------------------------------------------------------------
def test_the_home_is_the_flag_then_SCALING_HOME_then_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCALING_HOME", raising=False)
    assert resolve_home(None) == str(tmp_path / "runs")
    monkeypatch.setenv("SCALING_HOME", str(tmp_path / "env"))
    assert resolve_home(None) == str(tmp_path / "env")
    assert resolve_home("given") == str(tmp_path / "given")


@pytest.mark.parametrize("given, mode", [("delete", "delete"), ("TRUNCATE", "truncate"), ("wal", "wal")])
def test_SCALING_DB_JOURNAL_sets_the_journal_mode_of_the_index(home, monkeypatch, given, mode):
    monkeypatch.setenv("SCALING_DB_JOURNAL", given)
    with RunHome(home).db() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == mode


def test_an_unknown_SCALING_DB_JOURNAL_is_refused_naming_the_variable_and_the_choices(home, monkeypatch):
    monkeypatch.setenv("SCALING_DB_JOURNAL", "memory")
    with pytest.raises(UsageError, match=r"SCALING_DB_JOURNAL='memory': allowed wal, delete, truncate"):
        with RunHome(home).db():
            pass


# ---- a home that cannot be a folder ---------------------------------------------------------------------
def test_a_home_two_levels_under_a_file_is_refused_naming_the_file(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder\n")
    for home in (blocker / "a" / "runs", blocker / "a" / "b" / "runs"):
        with pytest.raises(StorageError, match=f"lies under {blocker}, which is a file"):
            RunHome(str(home)).check_folder()


def test_a_home_whose_folders_do_not_exist_yet_is_made_with_them(tmp_path):
    home = RunHome(str(tmp_path / "a" / "b" / "runs"))
    home.check_folder()
    home.make()
    assert os.path.isdir(home.root)


def test_a_home_name_the_file_system_refuses_is_one_storage_error_naming_the_home(tmp_path):
    home = RunHome(str(tmp_path / ("x" * 300)))  # past NAME_MAX (255) on every common file system
    with pytest.raises(StorageError, match=f"cannot create the run home {home.root}: file name too long"):
        home.make()


# ---- the read path ---------------------------------------------------------------------------------------
def test_an_index_without_tables_reads_as_empty(home):
    """A scaling.db created by a process that died before its first write."""
    os.makedirs(home)
    sqlite3.connect(os.path.join(home, "scaling.db")).close()
    assert os.path.exists(os.path.join(home, "scaling.db"))
    store = RunHome(home)
    assert store.sweeps() == [] and store.indexed_run("x") is None


def test_a_bad_query_is_raised_as_a_bug_not_reported_as_a_storage_fault(home):
    store = _sweep(home)
    with pytest.raises(sqlite3.OperationalError, match="no such column") as caught:
        store.read("SELECT nosuch FROM runs")
    assert not isinstance(caught.value, StorageError)


def test_the_read_path_cannot_change_the_index(home):
    """Commands that only read open the index read-only, and so does the immutable fallback: a write that
    slips into a read is refused (one line naming the index), not carried out."""
    store = _sweep(home)
    with pytest.raises(StorageError, match=f"cannot read the index {store.db_path}: attempt to write a readonly"):
        store.read("DELETE FROM runs WHERE run_id=?", ("s-0",))
    assert store.indexed_run("s-0").status == "pending"


# ---- sweeps and runs -------------------------------------------------------------------------------------
def test_a_sweep_reads_back_as_registered_and_reindex_restores_its_name_spec_and_reasons(home):
    spec = {"name": "demo", "parameters": {"lr": {"values": [1, 2]}}}
    runs = [{"run_id": "s-0", "status": "pending", "config": {"lr": 1}},
            {"run_id": "s-1", "status": "skipped", "config": {"lr": 2}, "reason": "less than one batch"}]
    store = _sweep(home, runs, spec=spec)
    for _ in range(2):  # as registered, then rebuilt from the saved sweep file alone
        found = store.sweep("s")
        assert {k: found[k] for k in ("sweep_id", "name", "spec")} == {"sweep_id": "s", "name": "demo", "spec": spec}
        assert isinstance(found["created"], float)
        assert [{k: s[k] for k in ("sweep_id", "name")} for s in store.sweeps()] == [{"sweep_id": "s", "name": "demo"}]
        assert [(r.run_id, r.status, r.reason) for r in store.sweep_runs("s")] == [
            ("s-0", "pending", None), ("s-1", "skipped", "less than one batch")]
        os.remove(store.db_path)
        store = RunHome(home)
        rebuild.reindex(store)


def test_reindex_keeps_each_sweeps_creation_time_so_the_newest_of_a_name_stays_the_newest(home):
    # A rebuilt index used to stamp every lost sweep "now" and list them in file-name order (ids end in
    # random hex): `validates: demo` or `sweep create` continuing a sweep could then pick an older one, and
    # `sweep status` restarted the elapsed clock.
    store = RunHome(home)
    for sweep_id, t in (("demo-ffff", 1000.0), ("demo-0000", 2000.0)):
        store.register_sweep(sweep_id, "demo", {}, [{"run_id": f"{sweep_id}-0", "status": "pending", "config": {}}])
        saved = os.path.join(store.sweeps_dir, f"{sweep_id}.json")
        with open(saved) as f:
            record = json.load(f)
        with open(saved, "w") as f:
            json.dump({**record, "created": t}, f)
    os.remove(store.db_path)
    store = RunHome(home)
    rebuild.reindex(store)
    assert [(s["sweep_id"], s["created"]) for s in store.sweeps()] == [("demo-ffff", 1000.0), ("demo-0000", 2000.0)]


def test_a_branch_is_queued_right_after_its_parent_with_its_config_and_plan_once(home):
    store = _sweep(home, [{"run_id": f"s-{i}", "status": "pending", "config": {}} for i in range(3)])
    store.add_run("s", "s-1-cool", {"lr": 3}, {"steps": 7}, after="s-1")
    store.add_run("s", "s-1-cool", {"lr": 4}, {"steps": 8}, after="s-0")  # already indexed: left as it is
    store.add_run("s", "lost-cool", {}, {}, after="nosuch")  # no parent row: no place in the order (seq NULL)
    branch = store.indexed_run("s-1-cool")
    assert (branch.sweep_id, branch.status, branch.config, branch.plan, branch.seq) == (
        "s", "pending", {"lr": 3}, {"steps": 7}, 1)
    assert [r.run_id for r in store.sweep_runs("s")] == ["lost-cool", "s-0", "s-1", "s-1-cool", "s-2"]


def test_a_row_recorded_without_a_summary_has_none_so_retry_requeues_the_run_as_pending(home):
    store = _sweep(home)
    assert store.record_state("s-0", "failed", {}, sweep_id="s", reason="its task never returned")
    assert store.indexed_run("s-0").summary is None
    assert queue.retry(store, "s") == ["s-0"]
    assert store.indexed_run("s-0").status == "pending"  # never recorded a state: not `interrupted`
