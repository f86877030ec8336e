"""The local queue: exactly-once claims across agent processes, leases that lapse when an agent dies,
takeover with resume from the checkpoint, and SLURM-style job arrays through submitit's local executor."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from scaling import sweep
from scaling.agents import Agent
from scaling.runs import RunHome, read_metrics

COMMAND = ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"]
# One shape for every run (so each agent compiles once) and the same seed (the trainer compiles its
# init per seed); the grid varies what does not recompile: length and learning rate.
TINY = {"d_model": {"value": 16}, "seq_len": {"value": 16}, "batch_size": {"value": 2},
        "corpus": {"value": "synthetic"}, "n_evals": {"value": 1}, "eval_tokens": {"value": 64},
        "wandb": {"value": "off"}}


def _create(tmp_path, home, parameters, name="t"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "method": "grid", "parameters": {**TINY, **parameters},
                                    "command": COMMAND}))
    return sweep.create_sweep(home, str(path))["sweep_id"]


def _agent_process(home, sweep_id, *extra):
    return subprocess.Popen([sys.executable, "-m", "scaling.cli", "--home", home, "sweep", "agent", sweep_id,
                             "--quiet", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# Slow (4 processes, ~17 s): exactly-once across agent processes is also checked by the slow isolating-agents
# and chaos tests, and in the fast suite by two agents sharing a branch sweep (tests/train/test_branches.py).
@pytest.mark.slow
def test_four_agents_started_together_run_each_of_20_points_exactly_once(tmp_path, home):
    sid = _create(tmp_path, home, {"tokens": {"values": [320, 352, 384, 416, 448]},
                                   "lr": {"values": [1.0e-3, 2.0e-3, 4.0e-3, 8.0e-3]}})
    agents = [_agent_process(home, sid, "--lease", "30") for _ in range(4)]
    outputs = [a.communicate(timeout=300) for a in agents]
    assert [a.returncode for a in agents] == [0] * 4, [o[1][-2000:] for o in outputs]

    runs = RunHome(home).sweep_runs(sid)
    assert len(runs) == 20
    assert {r.status for r in runs} == {"complete"}
    assert [r.attempts for r in runs] == [1] * 20  # claimed once each
    ran = [int(o[1].split("ran ")[1].split(" run")[0]) for o in outputs]
    assert sum(ran) == 20  # and the agents' own counts agree: no run trained twice
    assert len({r.claimed_by for r in runs}) >= 2  # the work really was shared
    for r in runs:
        steps = [m["step"] for m in read_metrics(os.path.join(home, r.run_id, "metrics.jsonl"))]
        assert steps == sorted(set(steps)) and steps[-1] == r.summary["steps"]  # one trainer per run dir


# Slow (~13 s): kill, takeover and resume are also checked by the slow sigkilled-isolating-agent and chaos tests,
# and the lapsed lease itself by the fast test_a_lapsed_claim_is_lost_to_its_holder_and_repeated_deaths_fail_the_run.
@pytest.mark.slow
def test_an_agent_killed_mid_run_leaves_its_run_to_be_taken_over_and_resumed(tmp_path, home):
    # ~400 steps, a checkpoint every 100: slow enough to kill in the middle.
    sid = _create(tmp_path, home, {"d_model": {"value": 32}, "seq_len": {"value": 32}, "batch_size": {"value": 8},
                                   "tokens": {"value": 400 * 8 * 32}, "checkpoint_every": {"value": 100},
                                   "n_evals": {"value": 2}}, name="kill")
    run_id = f"{sid}-000"
    metrics = os.path.join(home, run_id, "metrics.jsonl")
    victim = _agent_process(home, sid, "--lease", "3")
    deadline = time.time() + 180
    while time.time() < deadline:
        rows = read_metrics(metrics)
        if rows and rows[-1]["step"] >= 160:
            break
        assert victim.poll() is None, victim.communicate()[1][-2000:]
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = read_metrics(metrics)[-1]["step"]
    assert 160 <= killed_at < 400
    row = RunHome(home).sweep_runs(sid)[0]
    assert row.status == "running" and row.attempts == 1  # the dead agent's claim, not yet lapsed

    results = Agent(home, sid, lease_s=3).run()  # waits for the lease to lapse, then takes over
    assert [(r.run_id, r.status, r.resumed) for r in results] == [(run_id, "complete", True)]
    row = RunHome(home).sweep_runs(sid)[0]
    assert row.status == "complete" and row.attempts == 2
    steps = [m["step"] for m in read_metrics(metrics)]
    # Resumed, not restarted: the steps up to a checkpoint were logged once; those after it, which the
    # dead agent had logged, again by the new agent (logging is every 4th step here).
    twice = sorted({s for s in steps if steps.count(s) == 2})
    assert steps.count(1) == 1 and twice and (twice[0] - 4) % 100 == 0 and twice[-1] <= killed_at
    assert steps[-1] == 400
    with open(os.path.join(home, run_id, "summary.json")) as fh:
        assert json.load(fh)["step"] == 400


@pytest.mark.slow
def test_slurm_job_array_through_submitit_local_executor(tmp_path, home):
    from scaling.agents import slurm

    sid = _create(tmp_path, home, {"tokens": {"values": [320, 352, 384, 416]}}, name="array")
    jobs = slurm.submit_agents(home, sid, parallel=2, executor="local", time_min=10, lease_s=30, wandb="off")
    outcomes = slurm.wait(jobs)
    assert [o["error"] for o in outcomes] == [None, None], outcomes
    assert sum(o["ran"] for o in outcomes) == 4
    runs = RunHome(home).sweep_runs(sid)
    assert [(r.status, r.attempts) for r in runs] == [("complete", 1)] * 4


def test_slurm_refuses_without_sbatch_and_names_the_local_executor(tmp_path, home, monkeypatch, capsys):
    from scaling.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    sid = _create(tmp_path, home, {"tokens": {"value": 320}}, name="nosbatch")
    assert main(["--home", home, "sweep", "slurm", sid, "--parallel", "2"]) == 2
    assert "--executor local" in capsys.readouterr().err
