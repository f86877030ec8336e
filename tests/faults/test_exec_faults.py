"""Issue #23 items 6, 8 and the seeding limit: a sweep of cooldown runs that leaves the warmup to the
planner, two homes that share one run directory, and the staging a killed seed leaves behind."""
import os

from faultlib import make_sweep, row

from scaling.agents import Agent


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
