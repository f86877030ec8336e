"""Issue #23 items 6, 8 and the seeding limit: a sweep of cooldown runs that leaves the warmup to the
planner, two homes that share one run directory, and the staging a killed seed leaves behind."""
import os

import pytest
from faultlib import checkpoint_steps, make_sweep, row, tree

from scaling.agents import Agent
from scaling.cli import main


def test_a_sweep_of_cooldown_runs_without_warmup_tokens_trains_every_point(tmp_path, home):
    # 32 tokens a step: 20 steps, branches at 10 and 15. The planner fixes the warmup in tokens; the row
    # the agent claims must hold that same value, or the run's config differs from the row's.
    sweep_id = make_sweep(tmp_path, home, {"seq_len": {"value": 16}, "tokens": {"value": 640},
                                           "schedule": {"value": "wsd"}, "cooldowns": {"value": "320,480"}})
    results = Agent(home, sweep_id, wait=False, pack=1).run()
    assert [r.status for r in results] == ["complete"] * 3, [(r.run_id, r.reason) for r in results]
    parent = row(home, f"{sweep_id}-000")
    assert parent.status == "complete" and "warmup_tokens" in parent.config


def test_a_nan_eval_loss_with_a_finite_train_loss_ends_the_run_diverged(home, tiny, monkeypatch):
    # Issue #23: only the train loss was ever made NaN in tests; the eval's own check went unguarded.
    import math

    from scaling.config import RunConfig
    from scaling.train import plan_run, train_run
    from scaling.train.loop import Session

    monkeypatch.setattr(Session, "evaluate", lambda self, params: math.nan)
    cfg = RunConfig.from_dict(dict(i.split("=") for i in tiny) | {"tokens": 128 * 12, "wandb": "off", "run_id": "e"})
    summary = train_run(plan_run(cfg), home)
    assert summary["status"] == "diverged" and math.isfinite(summary["train_loss"])
    assert "eval loss nan" in summary["reason"] and summary["step"] < 12
    assert row(home, "e").status == "diverged"


_KILLED_SEED = """
import os, signal, sys
from scaling.config import RunConfig
from scaling.train import plan_run, train_run
from scaling.train import branches
from scaling.train.branches import Branching

def killed(source, target, *a, **k):  # SIGKILL between the seed's copy and its rename into place
    if ".seeding" in str(source):
        os.kill(os.getpid(), signal.SIGKILL)
    return os.replace(source, target)

branches.os.rename = killed
cfg = RunConfig.from_dict(dict(d_model=16, seq_len=32, batch_size=4, eval_tokens=256, n_evals=3, wandb="off",
                               schedule="wsd", decay_fraction=0.25, warmup_tokens=384, tokens=5120,
                               cooldowns="2048", run_id="p"))
train_run(plan_run(cfg), sys.argv[1], on_checkpoint=Branching())
"""


@pytest.mark.slow  # 4-5 s (trains or writes a whole report): the fast suite stays under 3 minutes
def test_the_staging_of_a_seed_killed_mid_way_is_removed_by_the_next_seed_and_a_live_ones_is_kept(home):
    import socket
    import subprocess
    import sys

    from faultlib import env

    from scaling.config import RunConfig
    from scaling.train import plan_run, train_run
    from scaling.train.branches import Branching

    proc = subprocess.run([sys.executable, "-c", _KILLED_SEED, home], env=env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    seeding = os.path.join(home, ".seeding")
    assert len(os.listdir(seeding)) == 1  # the killed seed's copy of the checkpoint
    live = os.path.join(seeding, f"other-cd1@{socket.gethostname()}-{os.getpid()}-0000")  # a live writer's
    os.makedirs(live)
    cfg = RunConfig.from_dict(dict(d_model=16, seq_len=32, batch_size=4, eval_tokens=256, n_evals=3, wandb="off",
                                   schedule="wsd", decay_fraction=0.25, warmup_tokens=384, tokens=5120,
                                   cooldowns="2048", run_id="p"))
    assert train_run(plan_run(cfg), home, on_checkpoint=Branching())["status"] == "complete"
    assert os.listdir(seeding) == [os.path.basename(live)]
    assert os.path.isdir(os.path.join(home, "p-cd2048", "checkpoints", "12"))


def test_a_second_home_reaching_a_run_directory_through_a_link_is_refused_in_one_line(tmp_path, tiny, capsys):
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    items = [*tiny, "tokens=2560", "run_id=x", "wandb=off", "checkpoint_every=5", "--quiet"]
    from scaling.config import RunConfig
    from scaling.train import plan_run, train_run

    cfg = RunConfig.from_dict(dict(i.split("=") for i in items[:-1]))
    assert train_run(plan_run(cfg), first, stop_at_step=10)["status"] == "interrupted"
    assert checkpoint_steps(first, "x")[-1] == 10
    capsys.readouterr()
    os.makedirs(second)
    os.symlink(os.path.join(first, "x"), os.path.join(second, "x"))
    before = tree(os.path.join(first, "x"))
    assert main(["--home", second, "train", *items]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]  # after the plan's line, the refusal's
    assert "Traceback" not in err and line.startswith("scaling train: error: run x:"), err
    assert "belongs to the run home" in line and os.path.realpath(first) in line
    assert tree(os.path.join(first, "x")) == before  # no checkpoint set aside, no metrics row added

    os.rename(first, str(tmp_path / "moved"))  # a home moved away: its runs train from where it is now
    assert main(["--home", str(tmp_path / "moved"), "train", *items]) == 0
