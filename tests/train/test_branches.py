"""Cooldown branches (issue 13 item 1): one WSD run trains the stable phase once; each branch continues
it from the checkpoint at its own decay point and ends exactly where a WSD run of its length trained
from scratch ends."""
import os

import pytest

from scaling.cli import main
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.runs import RunHome, read_metrics, rebuild
from scaling.train import plan_run, train_run
from scaling.train.branches import Branching, branch_plans, train_branches

# 40 steps of 128 tokens; branches of 16 and 28 steps; warmup 3 steps in every run
BASE = {"d_model": 16, "seq_len": 32, "batch_size": 4, "eval_tokens": 256, "n_evals": 3, "wandb": "off",
        "schedule": "wsd", "decay_fraction": 0.25, "warmup_tokens": 384}


def _plan(**values):
    return plan_run(RunConfig.from_dict(BASE | values))


def seeding(parent, home, **options):
    """Train a parent as `scaling train` does: its checkpoint hook seeds its branches."""
    return train_run(parent, home, on_checkpoint=Branching(), **options)


def test_a_branch_ends_where_a_wsd_run_of_its_length_from_scratch_ends(home):
    parent = _plan(tokens=5120, cooldowns="2048,3584", run_id="long")
    branches = branch_plans(parent)
    assert [b.run_id for b in branches] == ["long-cd2048", "long-cd3584"]
    assert [b.stable_end for b in branches] == [12, 21]  # 16 - round(0.25 * 16), 28 - 7
    assert seeding(parent, home)["status"] == "complete"
    for branch in branches:  # seeded while the parent trained: its checkpoint at the decay point
        assert os.listdir(os.path.join(home, branch.run_id, "checkpoints")) == [str(branch.stable_end)]
    done = train_branches(parent, home, lambda plan: train_run(plan, home))

    for branch, summary in zip(branches, done):
        scratch = train_run(_plan(tokens=branch.tokens, run_id=f"scratch-{branch.tokens}"), home)
        assert summary["status"] == scratch["status"] == "complete"
        assert summary["eval_loss"] == pytest.approx(scratch["eval_loss"], abs=1e-6)
        assert summary["steps"] == scratch["steps"] and summary["tokens"] == scratch["tokens"]
        assert summary["branch_of"] == "long" and summary["branch_step"] == branch.stable_end
        # the branch's curve is whole: the parent's rows up to the decay point, then its own
        steps = [r["step"] for r in read_metrics(os.path.join(home, branch.run_id, "metrics.jsonl"))]
        assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == branch.steps
        own = [r for r in read_metrics(os.path.join(home, branch.run_id, "metrics.jsonl"))
               if r["step"] > branch.stable_end]
        assert own and own[-1]["lr"] == pytest.approx(parent.lr * parent.config.min_lr_ratio, rel=1e-5)


def test_branches_of_a_flops_budget_run_are_given_in_flops_and_the_run_itself_gets_none(home):
    parent = _plan(flops_budget=2e9, cooldowns="1e9,2e9")
    branches = branch_plans(parent)
    assert len(branches) == 1  # 2e9 is the run itself
    assert branches[0].flops == pytest.approx(1e9, rel=0.05) and branches[0].config.flops_budget == 1e9


def test_the_warmup_is_fixed_in_tokens_so_every_branch_warms_up_as_its_parent(home):
    parent = _plan(tokens=5120, cooldowns="2048", warmup_tokens=None, warmup_fraction=0.2)
    branch, = branch_plans(parent)
    assert parent.warmup_steps == branch.warmup_steps == round(0.2 * 16)  # sized for the shortest branch
    assert parent.config.warmup_tokens == branch.config.warmup_tokens == 3 * 128
    assert list(parent.lr_schedule()[:branch.stable_end]) == list(branch.lr_schedule()[:branch.stable_end])


@pytest.mark.parametrize("items, message", [
    (["schedule=cosine", "cooldowns=2048"], "branches need schedule=wsd"),
    (["cooldowns=9000"], "a branch longer than the run"),
    (["cooldowns=2048,abc"], "expected lengths like"),
    (["cooldowns=2048,-5"], "must be positive"),
    (["cooldowns=2048", "branch_of=x"], "a branch has no branches"),
])
def test_bad_cooldowns_are_refused_in_one_line(home, items, message, capsys):
    base = [f"{k}={v}" for k, v in (BASE | {"tokens": 5120}).items()]
    assert main(["--home", home, "train", *base, *items, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not os.path.exists(home) or not os.listdir(home)


def test_scaling_train_trains_the_branches_after_the_run_when_no_agent_shares_them(home, capsys):
    items = [f"{k}={v}" for k, v in (BASE | {"tokens": 5120, "cooldowns": "2048,3584"}).items()]
    assert main(["--home", home, "train", *items, "run_id=solo", "--quiet"]) == 0
    rows = {r.run_id: r for r in (RunHome(home).indexed_run(i) for i in ("solo", "solo-cd2048", "solo-cd3584"))}
    assert all(r is not None and r.status == "complete" for r in rows.values()), rows
    assert rows["solo-cd2048"].summary["tokens"] == 2048 and rows["solo-cd3584"].summary["branch_of"] == "solo"


def test_a_seed_already_there_is_kept_and_a_missing_one_means_training_from_scratch(home):
    parent = _plan(tokens=5120, cooldowns="2048", run_id="p", checkpoint_every=0)
    branch, = branch_plans(parent)
    seeding(parent, home, stop_at_step=5)  # interrupted before the decay point: not seeded yet
    assert not os.path.exists(os.path.join(home, branch.run_id))
    with pytest.raises(UsageError):
        RunConfig.from_dict(BASE | {"tokens": 5120, "cooldowns": "2048", "branch_of": "p"})
    alone = train_run(branch, home)  # no seed: the branch trains its stable phase itself, same result
    scratch = train_run(_plan(tokens=2048, run_id="scratch"), home)
    assert alone["eval_loss"] == pytest.approx(scratch["eval_loss"], abs=1e-6)
    assert seeding(parent, home)["status"] == "complete"  # the finished branch is not seeded over
    assert read_metrics(os.path.join(home, branch.run_id, "metrics.jsonl"))[0]["step"] == 1


@pytest.mark.slow  # two agents train a sweep with branches (10 s): out of the fast suite
def test_agents_of_a_sweep_train_the_branches_their_parents_queue_each_once(tmp_path, home):
    import subprocess
    import sys

    import yaml

    from scaling import sweep
    from scaling.agents import Agent

    spec = {"name": "wsd", "method": "grid", "command": ["${env}", "${interpreter}", "-m", "scaling.cli", "train",
                                                          "${args_no_hyphens}"],
            "parameters": {**{k: {"value": v} for k, v in (BASE | {"schedule": "wsd"}).items()},
                           "d_model": {"values": [16, 24]}, "tokens": {"value": 5120},
                           "cooldowns": {"value": "2048,3584"}}}
    (tmp_path / "wsd.yaml").write_text(yaml.safe_dump(spec))
    sid = sweep.create_sweep(home, str(tmp_path / "wsd.yaml"))["sweep_id"]
    assert len(RunHome(home).sweep_runs(sid)) == 2  # the branches join the queue as their parents train
    # Two agents at once: one in its own process, one here (a second process only paid JAX's import again)
    other = subprocess.Popen([sys.executable, "-m", "scaling.cli", "--home", home, "sweep", "agent", sid,
                              "--quiet", "--lease", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    here = Agent(home, sid, lease_s=30).run()
    output = other.communicate(timeout=300)
    assert other.returncode == 0, output[1][-2000:]
    assert {r.status for r in here} <= {"complete"}

    runs = {r.run_id: r for r in RunHome(home).sweep_runs(sid)}
    parents = [f"{sid}-000", f"{sid}-001"]
    assert sorted(runs) == sorted(parents + [f"{p}-cd{d}" for p in parents for d in (2048, 3584)])
    assert {r.status for r in runs.values()} == {"complete"} and {r.attempts for r in runs.values()} == {1}
    for parent in parents:
        for d in (2048, 3584):
            branch = runs[f"{parent}-cd{d}"]
            assert branch.summary["branch_of"] == parent and branch.summary["tokens"] == d
            steps = [m["step"] for m in read_metrics(os.path.join(home, branch.run_id, "metrics.jsonl"))]
            assert steps == sorted(set(steps))  # one trainer: seeded rows, then its own

    from scaling.report.tables import study_cost
    from scaling.runs import runs_table

    table = runs_table(home, sid)
    cost = study_cost(table)
    per_n = {int(r.summary["params"]) for r in runs.values()}
    separate = sum(6 * n * (5120 + 2048 + 3584) for n in per_n)
    spent = sum(6 * n * (5120 + (16 - 12) * 128 + (28 - 21) * 128) for n in per_n)  # branches: their decay only
    assert cost == {"runs": 6, "branches": 4, "spent": pytest.approx(spent), "separate": pytest.approx(separate)}
    steps = runs_table(home, sid, steps=True)  # a branch's rows before its start are its parent's: left out
    assert (steps[steps["branch_of"].notna()]["step"] > steps[steps["branch_of"].notna()]["branch_step"]).all()


def test_a_cooldown_within_the_warmup_is_a_plain_run_from_scratch_not_a_branch(home):
    parent = _plan(tokens=5120, cooldowns="256,2048", warmup_tokens=1024)  # warmup 8 steps; 2 steps is inside it
    short, branch = branch_plans(parent)
    assert short.config.branch_of is None and short.steps == 2 and short.warmup_steps == 1
    assert branch.config.branch_of == parent.run_id and branch.warmup_steps == parent.warmup_steps == 8
    assert seeding(parent, home)["status"] == "complete"
    assert not os.path.exists(os.path.join(home, short.run_id))  # not seeded: it trains from step 0
    summary = train_run(short, home)
    assert summary["branch_of"] is None and summary["branch_step"] is None and summary["status"] == "complete"


def test_a_seed_cut_short_leaves_nothing_that_reindex_takes_for_a_run(home, monkeypatch):
    from scaling.train import branches as branches_lib

    parent = _plan(tokens=5120, cooldowns="2048", run_id="torn")
    calls = []
    real_rename = os.rename

    def crash(source, target, *args, **kwargs):  # the seed's rename into place never happens: killed there
        if ".seeding" not in str(source):
            return real_rename(source, target, *args, **kwargs)
        calls.append(source)
        raise KeyboardInterrupt

    monkeypatch.setattr(branches_lib.os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        seeding(parent, home)
    monkeypatch.setattr(branches_lib.os, "rename", real_rename)
    assert calls and not os.path.exists(os.path.join(home, "torn-cd2048"))
    rebuild.reindex(RunHome(home))
    assert RunHome(home).indexed_run("torn-cd2048") is None
    assert not [r for r in RunHome(home).read("SELECT run_id FROM runs") if "seed" in r["run_id"]]
    assert seeding(parent, home)["status"] == "complete"  # resumed: the seed is made this time
    assert os.path.isdir(os.path.join(home, "torn-cd2048", "checkpoints", "12"))


def test_the_trainer_seeds_no_branch_unless_its_caller_passes_a_branch_hook(home):
    parent = _plan(tokens=5120, cooldowns="2048", run_id="bare")
    assert train_run(parent, home)["status"] == "complete"
    assert not os.path.exists(os.path.join(home, "bare-cd2048"))
    assert os.listdir(os.path.join(home, "bare", "checkpoints")) == ["40"]  # no cut saved for a branch either
