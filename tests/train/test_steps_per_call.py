import json
import os

import pytest

from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.runs import read_metrics
from scaling.train import plan_run, train_run
from scaling.train.hooks import Hook, call_length
from scaling.train.plan import default_steps_per_call


def _run(home, tiny, run_id, **extra):
    values = dict(i.split("=") for i in tiny) | {"tokens": 1e5, "wandb": "off", "run_id": run_id} | extra
    summary = train_run(plan_run(RunConfig.from_dict(values)), home)
    return summary, read_metrics(os.path.join(home, run_id, "metrics.jsonl"))


def test_several_steps_per_call_give_the_same_run_as_one_step_per_call(home, tiny):
    # 400 steps logged every 4: calls of 3 and 1 step (padded to 3), and shorter calls at the evals and checkpoints
    one, rows_one = _run(home, tiny, "one", steps_per_call=1, tokens=51200)
    many, rows_many = _run(home, tiny, "many", steps_per_call=3, checkpoint_every=50, tokens=51200)
    assert one["status"] == many["status"] == "complete"
    assert many["eval_loss"] == pytest.approx(one["eval_loss"], abs=1e-6)
    assert [r["step"] for r in rows_many] == [r["step"] for r in rows_one]  # every log point kept
    for a, b in zip(rows_one, rows_many):
        for key in ("loss", "grad_norm", "lr", "eval_loss"):
            assert (key in a) == (key in b)
            if key in a:
                assert b[key] == pytest.approx(a[key], abs=1e-6), (a["step"], key)


def test_a_run_stopped_between_calls_resumes_to_the_same_loss(home, tiny):
    whole, _ = _run(home, tiny, "whole", steps_per_call=8, tokens=2e4)
    values = dict(i.split("=") for i in tiny) | {"tokens": 2e4, "wandb": "off", "run_id": "cut", "steps_per_call": 8}
    plan = plan_run(RunConfig.from_dict(values))
    assert train_run(plan, home, stop_at_step=101)["status"] == "interrupted"  # not a multiple of 8
    with open(os.path.join(home, "cut", "summary.json")) as fh:
        assert json.load(fh)["step"] == 101
    resumed = train_run(plan_run(RunConfig.from_dict(values | {"steps_per_call": 3})), home)
    assert resumed["eval_loss"] == pytest.approx(whole["eval_loss"], abs=1e-6)


def test_calls_end_where_a_boundary_hook_is_due_and_at_the_last_step():
    hooks = [Hook(lambda s: None, lambda step: step in (5, 9)), Hook(lambda s: None, lambda step: True, boundary=False)]
    assert [call_length(s, 12, 8, hooks) for s in (0, 5, 9, 11)] == [5, 4, 3, 1]
    assert call_length(0, 100, 1, hooks) == 1


def test_steps_per_call_defaults_to_several_for_small_steps_and_is_capped_by_the_run():
    plan = plan_run(RunConfig.from_dict({"d_model": 16, "seq_len": 32, "batch_size": 4, "tokens": 128 * 5}))
    assert plan.steps_per_call == min(5, default_steps_per_call(plan.shape, 4)) == 5
    big = plan_run(RunConfig.from_dict({"d_model": 1024, "batch_size": 64, "tokens": 1e8}))
    assert big.steps_per_call == 1
    with pytest.raises(UsageError, match="steps_per_call=0"):
        RunConfig.from_dict({"d_model": 16, "tokens": 1, "steps_per_call": 0})
