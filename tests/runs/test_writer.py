"""A run's writer (scaling/runs/fence.py RunWriter) on its own, with no training: what it records at the
end, with and without its claim. Found by `make mutants` on the extended scope (tests/mutants.md)."""
import os

import pytest

from scaling.runs import Fence, LeaseLost, LocalTracker, RunHome, RunWriter, is_result, queue


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
    with pytest.raises(LeaseLost, match="run s-0: "):
        writer.finish({"status": "complete", "step": 3, "eval_loss": 2.0})
    assert writer.lost is True and store.files("s-0").read_summary() is None
    assert [c for c in remote.calls if c[0] == "finish"] == [("finish", {"status": "lost"})]
    writer.abandon()  # a second close (the loop's own cleanup) must not finish the remote run again
    assert [c for c in remote.calls if c[0] == "finish"] == [("finish", {"status": "lost"})]


@pytest.mark.parametrize("summary, result", [
    ({"status": "complete", "eval_loss": 2.5}, True),
    ({"status": "complete", "eval_loss": 3}, True),
    (None, False),
    ({}, False),
    ({"status": "interrupted", "eval_loss": 2.5}, False),
    ({"status": "complete"}, False),
    ({"status": "complete", "eval_loss": None}, False),
    ({"status": "complete", "eval_loss": "2.5"}, False),
    ({"status": "complete", "eval_loss": True}, False),
    ({"status": "complete", "eval_loss": float("nan")}, False),
    ({"status": "complete", "eval_loss": float("inf")}, False),
])
def test_only_a_complete_summary_with_a_finite_loss_is_a_result_that_no_attempt_may_replace(summary, result):
    """is_result guards 'a finished result is never replaced by less' (train/loop.py, agents/pointwise.py)."""
    assert is_result(summary) is result


def test_a_run_new_to_the_index_gets_its_config_and_sweep_in_its_row_at_start(home):
    """A run the index has no row for (`scaling train`, or a W&B agent's run of a sweep made elsewhere): its
    row is made from what the writer was given."""
    store, remote = RunHome(home), Remote()
    writer = RunWriter(store, "solo", [LocalTracker(store.files("solo")), remote], sweep_id="wb")
    record = {"config": {"d_model": 16, "seed": 1}}
    writer.start(record)
    row = store.indexed_run("solo")
    assert (row.status, row.config, row.sweep_id) == ("running", record["config"], "wb")
    assert remote.calls == [("start", record)]


def test_a_run_new_to_the_index_gets_its_config_sweep_and_summary_in_its_row_at_the_end(home):
    store = RunHome(home)
    writer = RunWriter(store, "solo", [LocalTracker(store.files("solo"))], sweep_id="wb", index=True)
    writer.config = {"d_model": 16}  # as start left it, but with no row: finish writes the first one
    os.makedirs(store.files("solo").path)
    recorded = writer.finish({"status": "complete", "step": 3, "eval_loss": 2.0})
    row = store.indexed_run("solo")
    assert (row.status, row.config, row.sweep_id, row.summary) == ("complete", {"d_model": 16}, "wb", recorded)


def test_a_finished_result_is_kept_when_a_later_attempt_ends_with_less(home):
    store, writer, remote = _claimed(home)
    result = {"status": "complete", "step": 3, "eval_loss": 2.0}
    LocalTracker(store.files("s-0")).finish(result)  # an earlier attempt's result, already on disk
    recorded = writer.finish({"status": "interrupted", "step": 1}, reason="stopped by signal")
    assert recorded == result and store.files("s-0").read_summary() == result
    assert store.indexed_run("s-0").status == "complete" and remote.calls[-1] == ("finish", result)


def test_a_writer_whose_claim_was_taken_over_refuses_every_write_naming_the_run(home):
    store, writer, _ = _claimed(home)
    queue.release(store, "s-0", "a", token=1)
    queue.claim(store, "s", "b", lease_s=60)
    with pytest.raises(LeaseLost, match="run s-0: "):
        writer.log({"step": 1})
    assert writer.lost is True
    with pytest.raises(LeaseLost, match="run s-0: "):
        writer.log({"step": 2})


def test_a_start_whose_row_write_finds_the_claim_gone_is_refused(home, monkeypatch):
    store = RunHome(home)
    store.register_sweep("s", "s", {}, [{"run_id": "s-0", "status": "pending", "config": {}}])
    claim = queue.claim(store, "s", "a", lease_s=60.0)
    writer = RunWriter(store, "s-0", [LocalTracker(store.files("s-0"))], fence=Fence("a", claim.attempts),
                       sweep_id="s")
    queue.release(store, "s-0", "a", token=1)
    queue.claim(store, "s", "b", lease_s=60)
    monkeypatch.setattr(store, "owns", lambda run_id, fence: True)  # taken over between the check and the write
    with pytest.raises(LeaseLost, match="run s-0: "):
        writer.start({"config": {}})
    assert writer.lost is True and store.indexed_run("s-0").claimed_by == "b"
