"""Agents that own devices: `sweep agents --devices-per-run K` splits this machine's devices into groups,
one agent per group, and each run of an agent is placed on its group's mesh."""
import os
import subprocess
import sys

import pytest
import yaml

from scaling.agents.fleet import device_groups
from scaling.runs import RunHome


def test_devices_split_into_consecutive_groups_and_leftovers_stay_idle():
    assert device_groups(8, 1) == [(i,) for i in range(8)]
    assert device_groups(8, 4) == [(0, 1, 2, 3), (4, 5, 6, 7)]
    assert device_groups(6, 4) == [(0, 1, 2, 3)]


@pytest.mark.slow
def test_one_agent_per_pair_of_devices_runs_every_point_once_on_its_own_pair(tmp_path):
    spec = {"name": "pairs", "method": "grid", "command": ["${env}", "${interpreter}", "-m", "scaling.cli", "train",
                                                           "${args_no_hyphens}"],
            "parameters": {"d_model": {"value": 16}, "seq_len": {"value": 32}, "batch_size": {"value": 4},
                           "eval_tokens": {"value": 128}, "n_evals": {"value": 2}, "wandb": {"value": "off"},
                           "tokens": {"values": [512, 640, 768, 896]}}}
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(spec))
    home = str(tmp_path / "runs")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    cli = [sys.executable, "-m", "scaling.cli", "--home", home, "sweep"]
    made = subprocess.run([*cli, "create", str(path)], env=env, capture_output=True, text=True, check=True)
    sid = made.stdout.strip()
    proc = subprocess.run([*cli, "agents", sid, "--devices-per-run", "2"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 agent(s) on devices 0,1 | 2,3" in proc.stderr
    runs = RunHome(home).sweep_runs(sid)
    assert [(r.status, r.attempts) for r in runs] == [("complete", 1)] * 4
    placed = set()
    for r in runs:
        with open(os.path.join(home, r.run_id, "config.yaml")) as fh:
            record = yaml.safe_load(fh)
        assert record["resolved"]["mesh"] == "data:2,fsdp:1"
        placed.add(record["config"]["devices"])
    assert placed <= {"0,1", "2,3"} and len({r.claimed_by for r in runs}) >= 1


def test_agents_on_a_one_device_cpu_share_it_n_at_a_time():
    assert device_groups(1, 1, agents=3, platform="cpu") == [None, None, None]
    assert device_groups(1, 1, platform="cpu") == [None]
    assert device_groups(8, 2, agents=3) == [(0, 1), (2, 3), (4, 5)]


@pytest.mark.slow
def test_two_agents_share_a_one_device_cpu_and_the_log_shows_both(tmp_path):
    """`sweep agents --agents 2` on a CPU started one agent before (XLA shows one device); now two
    processes share it, and the log, not a terminal, has a line for every run either of them ended."""
    home = str(tmp_path / "runs")
    smoke = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "sweeps", "smoke.yaml")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    cli = [sys.executable, "-m", "scaling.cli", "--home", home, "sweep"]
    sid = subprocess.run([*cli, "create", smoke], env=env, capture_output=True, text=True, check=True).stdout.strip()
    proc = subprocess.run([*cli, "agents", sid, "--agents", "2"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 agent(s) sharing the CPU" in proc.stderr
    runs = RunHome(home).sweep_runs(sid)
    assert [r.status for r in runs] == ["complete"] * 4
    ends = [line for line in proc.stderr.splitlines() if " complete  eval " in line]
    assert sorted(line.split("] ")[0] for line in ends) == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert {line.split()[1] for line in ends} == {r.run_id for r in runs}
    assert all(len(line) <= 80 for line in proc.stderr.splitlines() if line.startswith("["))
