"""The display of a sweep that several agent processes share (`scaling demo`, `sweep agents`): every
agent's runs, a total that counts cooldown branches to come from the start, a line per run end and a
heartbeat at most every 30 s in a log, and no line wider than 80 columns."""
import io

import yaml

from scaling import sweep
from scaling.commands.watch import HEARTBEAT_S, SweepWatch
from scaling.runs import RunHome

BASE = {"d_model": 16, "seq_len": 32, "batch_size": 4, "eval_tokens": 256, "n_evals": 3, "wandb": "off",
        "schedule": "wsd", "decay_fraction": 0.25, "warmup_tokens": 384, "tokens": 5120, "cooldowns": "2048,3584"}


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _sweep(tmp_path, home) -> str:
    spec = {"name": "a-sweep-with-a-rather-long-name-to-push-run-ids-past-eighty-columns", "method": "grid",
            "command": ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"],
            "parameters": {**{k: {"value": v} for k, v in BASE.items()}, "d_model": {"values": [16, 24]}}}
    (tmp_path / "wsd.yaml").write_text(yaml.safe_dump(spec))
    return sweep.create_sweep(home, str(tmp_path / "wsd.yaml"))["sweep_id"]


def _end(home, run_id, agent, status="complete"):
    summary = {"eval_loss": 2.5, "wall_s": 12.0}
    with RunHome(home).db() as conn:
        conn.execute("UPDATE runs SET status=?, claimed_by=?, summary=? WHERE run_id=?",
                     (status, agent, __import__("json").dumps(summary), run_id))


def test_log_shows_every_agents_run_ends_against_a_total_with_branches_to_come(tmp_path, home):
    sid = _sweep(tmp_path, home)
    out, clock = io.StringIO(), Clock()
    watch = SweepWatch(home, sid, stream=out, clock=clock)
    watch.poll()
    assert out.getvalue() == ""  # nothing ended, and not 30 s of silence yet
    _end(home, f"{sid}-000", "agent-a")
    _end(home, f"{sid}-001", "agent-b")
    watch.poll()
    lines = out.getvalue().splitlines()
    # two parents and four branches to come: the total is 6 from the first line, not 2
    assert lines[0].startswith("[1/6] ") and lines[1].startswith("[2/6] ")
    assert any(f"{sid}-000" in line for line in lines) and any(f"{sid}-001" in line for line in lines)
    assert all(len(line) <= 80 for line in lines), lines
    watch.poll()
    assert len(out.getvalue().splitlines()) == 2  # a run end is said once


def test_log_heartbeat_at_most_every_30_s_of_silence(tmp_path, home):
    sid = _sweep(tmp_path, home)
    out, clock = io.StringIO(), Clock()
    watch = SweepWatch(home, sid, stream=out, clock=clock)
    clock.t = HEARTBEAT_S - 1
    watch.poll()
    assert out.getvalue() == ""
    clock.t = HEARTBEAT_S
    watch.poll()
    beat = out.getvalue().splitlines()
    assert len(beat) == 1 and beat[0].startswith("[0/6] ") and len(beat[0]) <= 80
    clock.t = HEARTBEAT_S + 10
    watch.poll()
    assert len(out.getvalue().splitlines()) == 1  # not again until 30 s after the last line
    assert HEARTBEAT_S <= 30
