"""Issue #11 item 1: a claim is fenced. An agent suspended past its lease (SIGSTOP) finds, when it wakes
(SIGCONT), that the run was taken over and finished; it stops without writing anything of the run."""
import os
import signal
import time

import pytest
from faultlib import checkpoint_steps, make_sweep, row, start, summary, wait_for

from scaling.config import RunConfig
from scaling.runs import Fence, LeaseLost, RunHome, queue, read_metrics
from scaling.train import plan_run, train_run


def _files(home, run_id):
    folder = os.path.join(home, run_id)
    return {name: open(os.path.join(folder, name), "rb").read()
            for name in ("summary.json", "config.yaml", "metrics.jsonl")}


@pytest.mark.slow
def test_a_suspended_agent_wakes_to_find_its_run_finished_by_another_and_writes_nothing(tmp_path, home):
    # ~400 steps with a checkpoint every 100: long enough to suspend the first agent in the middle.
    sid = make_sweep(tmp_path, home, {"d_model": {"value": 32}, "seq_len": {"value": 32},
                                      "batch_size": {"value": 8}, "tokens": {"value": 400 * 8 * 32},
                                      "checkpoint_every": {"value": 100}, "n_evals": {"value": 2}}, name="stop")
    run_id = f"{sid}-000"
    first = start(home, "sweep", "agent", sid, "--quiet", "--lease", "3")
    wait_for(lambda: 120 <= last_logged(home, run_id) < 300, 240, "the first agent past step 120", alive=first)
    first.send_signal(signal.SIGSTOP)
    try:
        holder = row(home, run_id).claimed_by
        second = start(home, "sweep", "agent", sid, "--quiet", "--lease", "3")
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err[-3000:]
        done = row(home, run_id)
        assert done.status == "complete" and done.attempts == 2 and done.claimed_by != holder
        finished = _files(home, run_id)
        ckpts = checkpoint_steps(home, run_id)
        assert summary(home, run_id)["step"] == 400 and ckpts[-1] == 400
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    # The woken agent noticed at its next write that the claim had moved on, and left the run alone.
    assert first.returncode == 0, err[-3000:]
    assert "1 lost" in err
    after = summary(home, run_id)
    assert (after["status"], after["eval_loss"]) == ("complete", done.summary["eval_loss"])
    assert _files(home, run_id) == finished
    assert checkpoint_steps(home, run_id) == ckpts
    again = row(home, run_id)
    assert again.status == "complete" and again.summary == done.summary and again.attempts == 2
    table = start(home, "runs", "--csv", "-")
    out, err = table.communicate(timeout=120)
    assert run_id in out and table.returncode == 0


def last_logged(home, run_id):
    rows = read_metrics(os.path.join(home, run_id, "metrics.jsonl"))
    return rows[-1]["step"] if rows else 0


def test_a_trainer_holding_a_superseded_token_writes_no_file_of_the_run(home, tiny):
    store = RunHome(home)
    cfg = dict(i.split("=") for i in tiny) | {"tokens": 128 * 12, "wandb": "off", "run_id": "s-000"}
    store.register_sweep("s", "s", {}, [{"run_id": "s-000", "status": "pending", "config": cfg}])
    stale = queue.claim(store, "s", "a", lease_s=0.05)
    time.sleep(0.1)
    current = queue.claim(store, "s", "b", lease_s=60)
    assert (stale.attempts, current.attempts) == (1, 2)
    plan = plan_run(RunConfig.from_dict(cfg))
    with pytest.raises(LeaseLost):
        train_run(plan, store, fence=Fence("a", 1))
    assert not os.path.exists(os.path.join(home, "s-000"))
    assert not queue.renew(store, "s-000", "a", 60, token=1) and not queue.release(store, "s-000", "a", token=1)
    assert not store.record_state("s-000", "complete", cfg, {"status": "complete"}, fence=Fence("a", 1))
    assert store.sweep_runs("s")[0].status == "running"  # b's claim, untouched
    done = train_run(plan, store, fence=Fence("b", 2))
    assert done["status"] == "complete" and store.sweep_runs("s")[0].status == "complete"
    assert queue.release(store, "s-000", "b", token=2)


def test_a_trainer_taken_over_mid_run_stops_at_its_next_write(home, tiny):
    store = RunHome(home)
    cfg = dict(i.split("=") for i in tiny) | {"tokens": 128 * 40, "wandb": "off", "run_id": "s-000",
                                               "checkpoint_every": 5}
    store.register_sweep("s", "s", {}, [{"run_id": "s-000", "status": "pending", "config": cfg}])
    queue.claim(store, "s", "a", lease_s=0.05)
    seen = []

    def take_over(progress):
        seen.append(progress.step)
        if progress.step == 10:  # as if `a` were suspended here until `b` claimed the run
            time.sleep(0.1)
            assert queue.claim(store, "s", "b", lease_s=60).attempts == 2

    with pytest.raises(LeaseLost):
        train_run(plan_run(RunConfig.from_dict(cfg)), store, on_progress=take_over, fence=Fence("a", 1))
    steps = [m["step"] for m in read_metrics(os.path.join(home, "s-000", "metrics.jsonl"))]
    assert steps[-1] == 10 and checkpoint_steps(home, "s-000") == [5]  # the save after step 10 was refused
    assert not os.path.exists(os.path.join(home, "s-000", "summary.json"))
    assert store.sweep_runs("s")[0].claimed_by == "b"


def test_a_stopped_agent_whose_run_was_not_taken_over_keeps_it(home, tiny):
    # Fencing is by token, not by the clock: a lapsed lease nobody claimed is still the holder's.
    store = RunHome(home)
    cfg = dict(i.split("=") for i in tiny) | {"tokens": 128 * 6, "wandb": "off", "run_id": "s-000"}
    store.register_sweep("s", "s", {}, [{"run_id": "s-000", "status": "pending", "config": cfg}])
    queue.claim(store, "s", "a", lease_s=0.01)
    time.sleep(0.05)
    done = train_run(plan_run(RunConfig.from_dict(cfg)), store, fence=Fence("a", 1))
    assert done["status"] == "complete" and store.sweep_runs("s")[0].status == "complete"


def test_a_writer_whose_claim_was_taken_over_appends_no_metrics_row(home, tiny):
    # Issue #23: the metrics row is a write of the run like any other; without the fence check before it
    # a woken trainer interleaves its rows with the new holder's.
    from scaling.runs import LocalTracker, RunWriter

    store = RunHome(home)
    cfg = dict(i.split("=") for i in tiny) | {"tokens": 128 * 6, "wandb": "off", "run_id": "s-000"}
    store.register_sweep("s", "s", {}, [{"run_id": "s-000", "status": "pending", "config": cfg}])
    queue.claim(store, "s", "a", lease_s=0.05)
    writer = RunWriter(store, "s-000", [LocalTracker(store.files("s-000"))], fence=Fence("a", 1), sweep_id="s")
    writer.start({"config": cfg})
    writer.log({"step": 1, "loss": 5.0})
    time.sleep(0.1)
    assert queue.claim(store, "s", "b", lease_s=60).attempts == 2
    with pytest.raises(LeaseLost):
        writer.log({"step": 2, "loss": 4.0})
    assert [m["step"] for m in read_metrics(os.path.join(home, "s-000", "metrics.jsonl"))] == [1]
