"""The lease heartbeat (scaling.agents.lease), with no training: it keeps a claim alive long past its
lease, with the run's progress, and marks a claim lost once another agent has taken the run over."""
import time

from scaling.agents.lease import Heartbeat
from scaling.runs import Fence, RunHome, queue


def _home_with_one_run(home) -> RunHome:
    store = RunHome(home)
    store.register_sweep("s", "s", {}, [{"run_id": "s-000", "status": "pending", "config": {}}])
    return store


def test_a_heartbeat_keeps_a_short_lease_alive_past_several_lease_periods(home):
    store = _home_with_one_run(home)
    lease_s = 0.4
    row = queue.claim(store, "s", "a", lease_s=lease_s)
    beat = Heartbeat(store, lease_s)
    claim = beat.add(row.run_id, Fence("a", row.attempts), lambda: {"step": 3, "steps": 10})
    beat.start()
    try:
        time.sleep(5 * lease_s)
        # Without renewals the lease would have lapsed four times over and the run be free to take.
        assert queue.claim(store, "s", "b", lease_s=60) is None
        held = store.sweep_runs("s")[0]
        assert held.claimed_by == "a" and held.lease_until > time.time()
        assert held.progress == {"step": 3, "steps": 10}
        assert not claim.lost
    finally:
        beat.stop()
    assert beat.remove(claim)  # still held: its holder may record the run


def test_a_claim_taken_over_is_marked_lost_and_no_longer_renewed(home):
    store = _home_with_one_run(home)
    row = queue.claim(store, "s", "a", lease_s=0.05)
    time.sleep(0.1)  # a suspended past its lease
    taken = queue.claim(store, "s", "b", lease_s=60)
    assert taken.run_id == row.run_id and taken.attempts == 2
    beat = Heartbeat(store, 60.0)
    claim = beat.add(row.run_id, Fence("a", row.attempts))
    beat.beat()
    assert claim.lost
    assert not beat.remove(claim)  # its holder must leave the run alone
    after = store.sweep_runs("s")[0]
    assert after.claimed_by == "b" and after.attempts == 2
