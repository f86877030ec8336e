"""A run's writer (scaling/runs/fence.py RunWriter) on its own, with no training: what it records at the
end, with and without its claim. Found by `make mutants` on the extended scope (tests/mutants.md)."""
import pytest

from scaling.runs import Fence, LeaseLost, LocalTracker, RunHome, RunWriter, queue


class Remote:
    """A tracker that is not the run's directory (W&B's place): records every call."""

    def __init__(self):
        self.calls = []

    def start(self, record):
        self.calls.append(("start", record))

    def log(self, row):
        self.calls.append(("log", row))

    def finish(self, summary):
        self.calls.append(("finish", summary))


def _claimed(home, lease_s=60.0):
    store = RunHome(home)
    store.register_sweep("s", "s", {}, [{"run_id": "s-0", "status": "pending", "config": {}}])
    claim = queue.claim(store, "s", "a", lease_s=lease_s)
    remote = Remote()
    writer = RunWriter(store, "s-0", [LocalTracker(store.files("s-0")), remote], fence=Fence("a", claim.attempts),
                       sweep_id="s")
    writer.start({"config": {}})
    return store, writer, remote


def test_an_unfinished_run_records_why_it_stopped_in_its_summary_and_its_row(home):
    store, writer, remote = _claimed(home)
    recorded = writer.finish({"status": "interrupted", "step": 3}, reason="disk full")
    assert recorded["reason"] == "disk full"
    assert store.files("s-0").read_summary()["reason"] == "disk full"
    assert store.indexed_run("s-0").reason == "disk full"
    assert remote.calls[-1] == ("finish", recorded)


def test_a_complete_run_carries_no_reason_even_when_one_is_given(home):
    store, writer, _ = _claimed(home)
    recorded = writer.finish({"status": "complete", "step": 3, "eval_loss": 2.0}, reason="stopped by signal")
    assert "reason" not in recorded and "reason" not in store.files("s-0").read_summary()


def test_a_writer_taken_over_tells_the_remote_tracker_lost_once_and_records_nothing(home):
    store, writer, remote = _claimed(home)
    queue.release(store, "s-0", "a", token=1)
    assert queue.claim(store, "s", "b", lease_s=60).attempts == 2
    with pytest.raises(LeaseLost):
        writer.finish({"status": "complete", "step": 3, "eval_loss": 2.0})
    assert store.files("s-0").read_summary() is None
    assert [c for c in remote.calls if c[0] == "finish"] == [("finish", {"status": "lost"})]
    writer.abandon()  # a second close (the loop's own cleanup) must not finish the remote run again
    assert [c for c in remote.calls if c[0] == "finish"] == [("finish", {"status": "lost"})]
