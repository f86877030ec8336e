"""Issue #11 item 4 (and the README's claim that `sweep agent --isolate` runs each point exactly once): an
isolating agent's trainer dies with it, even when the agent is killed with SIGKILL, so no orphan trains
the run while the agent that takes it over trains it too."""
import os
import signal

import pytest
from faultlib import alive, children, kill, last_step, make_sweep, row, start, summary, wait_for

from scaling.runs import read_metrics

LONG = {"d_model": {"value": 32}, "seq_len": {"value": 32}, "batch_size": {"value": 8},
        "tokens": {"value": 400 * 8 * 32}, "checkpoint_every": {"value": 100}, "n_evals": {"value": 2}}


@pytest.mark.slow
def test_a_sigkilled_isolating_agent_takes_its_trainer_with_it_and_the_run_finishes_once(tmp_path, home):
    sid = make_sweep(tmp_path, home, LONG, name="orphan")
    run_id = f"{sid}-000"
    agent = start(home, "sweep", "agent", sid, "--quiet", "--isolate", "--lease", "3")
    wait_for(lambda: last_step(home, run_id) >= 120, 300, "the trainer past step 120", alive=agent)
    trainers = children(agent.pid)
    assert len(trainers) == 1
    kill(agent, signal.SIGKILL)
    agent.wait()
    # The trainer got SIGTERM from the kernel as its agent died: it checkpoints and stops.
    wait_for(lambda: not alive(trainers[0]), 60, "the orphaned trainer to stop")
    stopped_at = last_step(home, run_id)
    assert summary(home, run_id)["status"] == "interrupted" and stopped_at < 400

    second = start(home, "sweep", "agent", sid, "--quiet", "--isolate", "--lease", "3")
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    done = row(home, run_id)
    assert done.status == "complete" and done.attempts == 2
    steps = [m["step"] for m in read_metrics(os.path.join(home, run_id, "metrics.jsonl"))]
    # One trainer at a time: the steps rise to where the first one stopped (it checkpointed there), then
    # on from there in the second; an orphan training beside the second would interleave them.
    cut = steps.index(stopped_at) + 1
    first, rest = steps[:cut], steps[cut:]
    assert first == sorted(set(first)) and rest == sorted(set(rest))
    assert rest[0] > stopped_at and rest[-1] == 400


@pytest.mark.slow
def test_isolating_agents_run_each_point_exactly_once(tmp_path, home):
    sid = make_sweep(tmp_path, home, {"tokens": {"values": [320, 352, 384]}}, name="iso")
    agents = [start(home, "sweep", "agent", sid, "--quiet", "--isolate", "--lease", "30") for _ in range(2)]
    outputs = [a.communicate(timeout=600) for a in agents]
    assert [a.returncode for a in agents] == [0, 0], [o[1][-2000:] for o in outputs]
    ran = [int(o[1].split("ran ")[1].split(" run")[0]) for o in outputs]
    assert sum(ran) == 3
    for i in range(3):
        r = row(home, f"{sid}-{i:03d}")
        assert (r.status, r.attempts) == ("complete", 1)
        steps = [m["step"] for m in read_metrics(os.path.join(home, r.run_id, "metrics.jsonl"))]
        assert steps == sorted(set(steps))  # one trainer wrote this run
        with open(os.path.join(home, r.run_id, "train.log")) as fh:
            assert fh.read().count("(complete)") == 1
