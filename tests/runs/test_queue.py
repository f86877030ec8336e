"""The sweep queue (scaling/runs/queue.py) on its own, with no training: a sweep of fake runs registered
through the home, and a clock the test moves so leases lapse without waiting."""
import types

import pytest

from scaling.runs import Fence, RunHome, queue


@pytest.fixture
def clock(monkeypatch):
    """The queue's clock, set by the test (leases are compared with it)."""
    now = [1000.0]
    monkeypatch.setattr(queue, "time", types.SimpleNamespace(time=lambda: now[0]))
    return now


def _sweep(home, *statuses, sweep_id="s") -> RunHome:
    store = RunHome(home)
    store.register_sweep(sweep_id, sweep_id, {}, [{"run_id": f"{sweep_id}-{i}", "status": status, "config": {}}
                                                  for i, status in enumerate(statuses)])
    return store


def _row(store, run_id):
    return store.indexed_run(run_id)


def test_a_live_claim_is_never_handed_out_twice_and_runs_go_in_sweep_order(home, clock):
    store = _sweep(home, "pending", "pending", "skipped", "pending")
    taken = [queue.claim(store, "s", agent, lease_s=60) for agent in ("a", "b", "c")]
    assert [r.run_id for r in taken] == ["s-0", "s-1", "s-3"]
    assert [(r.status, r.claimed_by, r.attempts, r.resumed) for r in taken] == [
        ("running", "a", 1, False), ("running", "b", 1, False), ("running", "c", 1, False)]
    assert queue.claim(store, "s", "d", lease_s=60) is None


def test_a_run_left_behind_is_claimed_before_a_pending_one_and_resumes(home, clock):
    store = _sweep(home, "pending", "interrupted")
    run = queue.claim(store, "s", "a", lease_s=60)
    assert (run.run_id, run.resumed) == ("s-1", True)


def test_among_limits_a_claim_to_the_runs_named(home, clock):
    store = _sweep(home, "pending", "pending", "pending")
    assert queue.claim(store, "s", "a", lease_s=60, among=["s-2"]).run_id == "s-2"
    assert queue.claim(store, "s", "a", lease_s=60, among=["s-2"]) is None


def test_a_lapsed_lease_frees_the_run_for_another_agent_with_the_next_token(home, clock):
    store = _sweep(home, "pending")
    queue.claim(store, "s", "a", lease_s=10)
    clock[0] += 9
    assert queue.claim(store, "s", "b", lease_s=10) is None  # still a's
    clock[0] += 2
    again = queue.claim(store, "s", "b", lease_s=10)
    assert (again.run_id, again.claimed_by, again.attempts, again.resumed) == ("s-0", "b", 2, True)


def test_renew_extends_the_lease_and_keeps_the_latest_progress(home, clock):
    store = _sweep(home, "pending")
    queue.claim(store, "s", "a", lease_s=10)
    clock[0] += 8
    assert queue.renew(store, "s-0", "a", 10, {"step": 3, "loss": 2.5}, token=1)
    clock[0] += 8  # past the first lease, within the renewed one
    assert queue.claim(store, "s", "b", lease_s=10) is None
    assert queue.renew(store, "s-0", "a", 10, token=1)  # a heartbeat with no news keeps the last
    assert _row(store, "s-0").progress == {"step": 3, "loss": 2.5}
    assert _row(store, "s-0").lease_until == clock[0] + 10


def test_a_stale_token_can_neither_renew_nor_release_nor_write_after_a_takeover(home, clock):
    store = _sweep(home, "pending")
    queue.claim(store, "s", "a", lease_s=10)
    clock[0] += 11
    queue.claim(store, "s", "a", lease_s=10)  # the same agent name, a new claim: only the token tells them apart
    stale, current = Fence("a", 1), Fence("a", 2)
    assert not queue.renew(store, "s-0", "a", 60, token=stale.token)
    assert not queue.release(store, "s-0", "a", "failed", "stale", token=stale.token)
    assert not store.owns("s-0", stale) and store.owns("s-0", current)
    assert not store.record_state("s-0", "complete", {}, {"status": "complete"}, fence=stale)
    row = _row(store, "s-0")
    assert (row.status, row.attempts, row.lease_until, row.reason) == ("running", 2, clock[0] + 10, None)
    assert queue.renew(store, "s-0", "a", 60, token=current.token)


def test_a_takeover_by_another_agent_ends_the_first_agents_claim(home, clock):
    store = _sweep(home, "pending")
    queue.claim(store, "s", "a", lease_s=10)
    clock[0] += 11
    queue.claim(store, "s", "b", lease_s=10)
    assert not queue.renew(store, "s-0", "a", 60) and not queue.release(store, "s-0", "a")
    assert not store.owns("s-0", Fence("a", 1)) and store.owns("s-0", Fence("b", 2))


def test_release_leaves_an_unfinished_run_interrupted_and_free_again_at_once(home, clock):
    store = _sweep(home, "pending")
    queue.claim(store, "s", "a", lease_s=60)
    assert queue.release(store, "s-0", "a", token=1)
    row = _row(store, "s-0")
    assert (row.status, row.lease_until, row.claimed_by) == ("interrupted", None, "a")
    assert queue.claim(store, "s", "b", lease_s=60).run_id == "s-0"


def test_release_with_a_status_records_it_and_a_failed_run_is_never_claimed_again(home, clock):
    store = _sweep(home, "pending")
    queue.claim(store, "s", "a", lease_s=60)
    assert queue.release(store, "s-0", "a", "failed", "out of memory", token=1)
    row = _row(store, "s-0")
    assert (row.status, row.reason, row.lease_until) == ("failed", "out of memory", None)
    clock[0] += 1000
    assert queue.claim(store, "s", "b", lease_s=60) is None


def test_a_run_whose_agents_keep_dying_fails_after_max_attempts(home, clock):
    store = _sweep(home, "pending")
    for agent in ("a", "b"):
        assert queue.claim(store, "s", agent, lease_s=10, max_attempts=3).run_id == "s-0"
        clock[0] += 11  # the agent died: its lease lapses
    assert queue.claim(store, "s", "c", lease_s=10, max_attempts=3).attempts == 3  # two deaths: one more try
    clock[0] += 11
    assert queue.claim(store, "s", "d", lease_s=10, max_attempts=3) is None
    row = _row(store, "s-0")
    assert (row.status, row.lease_until) == ("failed", None) and "died 3 times" in row.reason


def test_an_interrupted_run_whose_agent_died_stays_its_agents_until_the_lease_lapses(home, clock):
    # The trainer recorded `interrupted` under its claim, then the agent died before releasing it.
    store = _sweep(home, "pending")
    queue.claim(store, "s", "a", lease_s=10)
    assert store.record_state("s-0", "interrupted", {}, {"status": "interrupted"}, sweep_id="s", fence=Fence("a", 1))
    assert queue.claim(store, "s", "b", lease_s=10) is None
    assert queue.count_in_flight(store, "s") == 1  # so an agent finding nothing free waits for it
    clock[0] += 11
    assert queue.claim(store, "s", "b", lease_s=10).run_id == "s-0"


def test_count_in_flight_counts_agents_claims_live_or_lapsed_but_not_free_or_finished_runs(home, clock):
    store = _sweep(home, "pending", "pending", "pending", "complete")
    queue.claim(store, "s", "a", lease_s=10)
    queue.claim(store, "s", "b", lease_s=100)
    assert queue.count_in_flight(store, "s") == 2
    clock[0] += 11
    assert queue.count_in_flight(store, "s") == 2  # a's lapsed claim: free soon, not gone
    queue.release(store, "s-1", "b", "complete")
    assert queue.count_in_flight(store, "s") == 1


def test_an_engine_takes_every_free_run_at_once_and_agents_never_claim_them(home, clock):
    store = _sweep(home, "pending", "interrupted", "skipped", "complete", "pending", "interrupted")
    assert queue.claim(store, "s", "agent", lease_s=10).run_id == "s-1"  # under a live lease: not free
    taken = queue.take_for_engine(store, "s", "slurm:1")
    assert [(r.run_id, r.status, r.resumed, r.attempts) for r in taken] == [
        ("s-0", "pending", False, 1), ("s-4", "pending", False, 1), ("s-5", "interrupted", True, 1)]
    assert all(_row(store, r.run_id).status == "running" and _row(store, r.run_id).lease_until is None
               for r in taken)
    clock[0] += 1000  # no lease to lapse: an engine's hold outlives any clock
    assert queue.claim(store, "s", "agent-2", lease_s=10).run_id == "s-1"  # the lapsed agent claim only
    assert queue.claim(store, "s", "agent-3", lease_s=10) is None
    assert queue.take_for_engine(store, "s", "slurm:2") == []
    assert queue.count_in_flight(store, "s") == 1  # the agent's claim; the engine's runs are not waited for


def test_engine_runs_given_back_regain_their_status_and_attempts_and_only_by_their_holder(home, clock):
    store = _sweep(home, "pending", "interrupted")
    taken = queue.take_for_engine(store, "s", "slurm:1")
    statuses = {r.run_id: r.status for r in taken}
    queue.release_engine_runs(store, "slurm:other", statuses)
    assert [_row(store, i).status for i in ("s-0", "s-1")] == ["running", "running"]
    queue.release_engine_runs(store, "slurm:1", statuses)
    assert [(_row(store, i).status, _row(store, i).attempts) for i in ("s-0", "s-1")] == [
        ("pending", 0), ("interrupted", 0)]
    assert queue.claim(store, "s", "agent", lease_s=10).run_id == "s-1"


def test_queue_calls_on_one_sweep_leave_other_sweeps_alone(home, clock):
    store = _sweep(home, "pending", sweep_id="x")
    store.register_sweep("y", "y", {}, [{"run_id": "y-0", "status": "pending", "config": {}}])
    assert [r.run_id for r in queue.take_for_engine(store, "x", "slurm:1")] == ["x-0"]
    assert queue.count_in_flight(store, "y") == 0
    assert queue.claim(store, "y", "a", lease_s=10).run_id == "y-0"


def test_retry_requeues_failed_runs_with_attempts_afresh_and_leaves_the_rest_alone(home, clock):
    store = _sweep(home, "pending", "pending", "complete", "diverged", "skipped")
    # s-0 failed after recording a state (a full disk at a save); s-1 failed as its agents kept dying
    assert queue.claim(store, "s", "a", lease_s=60).run_id == "s-0"
    store.record_state("s-0", "failed", {}, {"status": "failed", "step": 5}, sweep_id="s", fence=Fence("a", 1))
    assert queue.release(store, "s-0", "a", token=1)
    for _ in range(3):
        queue.claim(store, "s", "b", lease_s=1, max_attempts=3)
        clock[0] += 2
    assert queue.claim(store, "s", "c", lease_s=60, max_attempts=3) is None  # s-1 is failed now
    assert [_row(store, f"s-{i}").status for i in range(2)] == ["failed", "failed"]

    assert queue.retry(store, "s") == ["s-0", "s-1"]
    assert [(_row(store, r).status, _row(store, r).attempts, _row(store, r).reason) for r in ("s-0", "s-1")] == [
        ("interrupted", 0, None), ("pending", 0, None)]
    assert [_row(store, f"s-{i}").status for i in (2, 3, 4)] == ["complete", "diverged", "skipped"]
    again = queue.claim(store, "s", "d", lease_s=60)
    assert (again.run_id, again.attempts, again.resumed) == ("s-0", 1, True)  # resumes first, fenced afresh
    assert queue.retry(store, "s") == []  # nothing failed is left; a live claim is never retried
    assert queue.retry(store, "s", ("diverged",)) == ["s-3"]


def test_by_default_a_run_fails_after_three_agents_died_holding_it(home, clock):
    store = _sweep(home, "pending")
    for agent in ("a", "b", "c"):
        assert queue.claim(store, "s", agent, lease_s=10).run_id == "s-0"
        clock[0] += 11
    assert queue.claim(store, "s", "d", lease_s=10) is None
    assert _row(store, "s-0").status == "failed"


def test_runs_an_engine_takes_name_it_as_their_holder(home, clock):
    store = _sweep(home, "pending")
    taken = queue.take_for_engine(store, "s", "slurm:7")
    assert [r.claimed_by for r in taken] == ["slurm:7"] and _row(store, "s-0").claimed_by == "slurm:7"


@pytest.mark.parametrize("statuses", [("complete",), ("failed", "skipped")])
def test_retry_refuses_a_status_that_cannot_be_retried_and_names_it(home, clock, statuses):
    store = _sweep(home, "complete", "skipped", "failed")
    with pytest.raises(ValueError, match=repr(statuses[-1] if len(statuses) > 1 else statuses[0])):
        queue.retry(store, "s", statuses)
    assert [_row(store, f"s-{i}").status for i in range(3)] == ["complete", "skipped", "failed"]
