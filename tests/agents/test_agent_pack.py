"""An agent with --pack trains free runs of one shape together; each run ends as it would alone."""
import os
import time
import types

import pytest
import yaml

from scaling import sweep
from scaling.agents import Agent
from scaling.cli import main
from scaling.runs import RunHome, queue

COMMAND = ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"]
POINTS = {"seq_len": {"value": 16}, "batch_size": {"value": 2}, "corpus": {"value": "synthetic"},
          "n_evals": {"value": 2}, "eval_tokens": {"value": 64}, "wandb": {"value": "off"},
          # grid order puts the two shapes' runs in turn, so packing must pick runs out of order
          "tokens": {"values": [640, 960, 1280]}, "d_model": {"values": [16, 32]},
          "lr": {"values": [2.0e-3, 8.0e-3]}}


def _sweep(tmp_path, home):
    path = tmp_path / "pack.yaml"
    path.write_text(yaml.safe_dump({"name": "pack", "method": "grid", "parameters": POINTS, "command": COMMAND}))
    return sweep.create_sweep(home, str(path))["sweep_id"]


def _losses(home, sid):
    return {r.run_id.rsplit("-", 1)[1]: r.summary["eval_loss"] for r in RunHome(home).sweep_runs(sid)}


@pytest.mark.slow  # the fast suite keeps the trainer-level pack equivalence (tests/train/test_pack.py)
def test_packing_agent_gives_each_run_the_result_it_has_alone(tmp_path):
    alone_home, packed_home = str(tmp_path / "alone"), str(tmp_path / "packed")
    alone_sid, packed_sid = _sweep(tmp_path, alone_home), _sweep(tmp_path, packed_home)
    Agent(alone_home, alone_sid, pack=1).run()
    packs = []
    agent = Agent(packed_home, packed_sid, pack=4)
    fill = agent._fill_pack
    agent._fill_pack = lambda row: packs.append(fill(row)) or packs[-1]
    results = agent.run()
    assert sorted(len(p) for p in packs) == [2, 2, 4, 4]  # 6 runs of each shape: a pack of 4, then of 2
    assert all(len({r.config["d_model"] for r in p}) == 1 for p in packs)
    assert {r.status for r in results} == {"complete"} and len(results) == 12
    runs = RunHome(packed_home).sweep_runs(packed_sid)
    assert [r.attempts for r in runs] == [1] * 12
    alone, packed = _losses(alone_home, alone_sid), _losses(packed_home, packed_sid)
    assert packed.keys() == alone.keys()
    for point, loss in alone.items():
        assert packed[point] == pytest.approx(loss, abs=1e-5)


def test_pack_flag_is_refused_with_isolate(tmp_path, home, capsys):
    sid = _sweep(tmp_path, home)
    assert main(["--home", home, "sweep", "agent", sid, "--pack", "2", "--isolate", "--quiet"]) == 2
    assert "--pack 2" in capsys.readouterr().err


def test_a_packed_run_taken_over_before_its_pack_opened_is_lost_alone_and_the_rest_train(tmp_path, monkeypatch):
    # The agent claims a pack, is suspended past its lease (here: a lease that lapses at once), and another
    # agent takes one run over before the pack opens. That run is the other agent's: this one reports it
    # lost and writes nothing to it; its pack-mates train and complete (before: the takeover's LeaseLost
    # escaped the pack and every run of it was released as failed).
    home = str(tmp_path / "home")
    path = tmp_path / "two.yaml"
    points = {**POINTS, "tokens": {"value": 640}, "d_model": {"value": 16}}
    path.write_text(yaml.safe_dump({"name": "two", "method": "grid", "parameters": points, "command": COMMAND}))
    sid = sweep.create_sweep(home, str(path))["sweep_id"]
    agent, index = Agent(home, sid, pack=2, lease_s=30), RunHome(home)
    rows = [queue.claim(index, sid, agent.name, lease_s=30) for _ in range(2)]
    with monkeypatch.context() as later:  # the queue's clock past the pack's leases (a real lapse races a busy machine)
        later.setattr(queue, "time", types.SimpleNamespace(time=lambda: time.time() + 31))
        taken = queue.claim(index, sid, "other-agent", lease_s=60)
    assert taken.run_id in {r.run_id for r in rows}
    results = {r.run_id: r.status for r in agent._run_pack(rows)}
    kept = next(r.run_id for r in rows if r.run_id != taken.run_id)
    assert results == {taken.run_id: "lost", kept: "complete"}
    assert index.indexed_run(taken.run_id).status == "running" and index.indexed_run(taken.run_id).attempts == 2
    assert not os.path.exists(os.path.join(home, taken.run_id, "metrics.jsonl"))
