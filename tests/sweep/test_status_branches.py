"""`sweep status` counts the cooldown branches a sweep will queue, before their parents reach their cuts."""
import yaml

from scaling import sweep
from scaling.cli import main
from scaling.config import RunConfig
from scaling.runs import RunHome
from scaling.train import plan_run
from scaling.train.branches import branch_plans, queue_branch

BASE = {"d_model": 16, "seq_len": 32, "batch_size": 4, "eval_tokens": 256, "n_evals": 3, "wandb": "off",
        "schedule": "wsd", "decay_fraction": 0.25, "warmup_tokens": 384, "tokens": 5120, "cooldowns": "2048,3584"}


def test_status_counts_branches_to_come_until_their_parents_queue_them(tmp_path, home, capsys):
    spec = {"name": "wsd", "method": "grid",
            "command": ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"],
            "parameters": {**{k: {"value": v} for k, v in BASE.items()}, "d_model": {"values": [16, 24]}}}
    (tmp_path / "wsd.yaml").write_text(yaml.safe_dump(spec))
    sid = sweep.create_sweep(home, str(tmp_path / "wsd.yaml"))["sweep_id"]
    st = sweep.sweep_status(home, sid)
    want = {f"{sid}-{i:03d}-cd{d}" for i in (0, 1) for d in (2048, 3584)}
    assert st.total == 2 and set(st.to_come) == want and st.runnable == 6

    parent = RunHome(home).indexed_run(f"{sid}-000")
    first = branch_plans(plan_run(RunConfig.from_dict(parent.config)))[0]
    queue_branch(RunHome(home), first, after=parent.run_id)  # what the parent does at its first cut
    st = sweep.sweep_status(home, sid)
    assert st.total == 3 and set(st.to_come) == want - {first.run_id} and st.runnable == 6

    assert main(["--home", home, "sweep", "status", sid]) == 0
    assert "3 cooldown branch(es) to come" in capsys.readouterr().out


def test_status_clock_stops_when_the_last_run_ends(tmp_path, home, capsys):
    spec = {"name": "two", "method": "grid",
            "command": ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"],
            "parameters": {**{k: {"value": v} for k, v in BASE.items() if k != "cooldowns"},
                           "d_model": {"values": [16, 24]}}}
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(spec))
    sid = sweep.create_sweep(home, str(tmp_path / "two.yaml"))["sweep_id"]
    created = sweep.sweep_status(home, sid).created
    with RunHome(home).db() as conn:
        conn.execute("UPDATE runs SET status='complete', updated=? WHERE run_id=?", (created + 90, f"{sid}-000"))
    st = sweep.sweep_status(home, sid)
    assert st.ended is None and st.elapsed_s(created + 1000) == 1000  # one run still pending: the clock runs
    with RunHome(home).db() as conn:
        conn.execute("UPDATE runs SET status='failed', updated=? WHERE run_id=?", (created + 120, f"{sid}-001"))
    st = sweep.sweep_status(home, sid)
    assert st.ended == created + 120 and st.elapsed_s(created + 1e6) == 120
    assert main(["--home", home, "sweep", "status", sid]) == 0
    assert "elapsed 2:00 (ended)" in capsys.readouterr().out
