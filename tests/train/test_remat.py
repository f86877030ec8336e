"""Rematerialization (`remat=none|dots|full`): the same losses, less compiled temp memory, recorded in
config.yaml, free to change on resume, and chosen by memory where the config leaves it to `auto`."""
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from scaling.cli import main
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.family import shape_for_width
from scaling.train import limits, plan_run, train_run
from scaling.train.step import CPU_ATTENTION, compiled_fns


def _losses(remat: str, steps: int = 4) -> list[float]:
    shape = shape_for_width(32, n_layers=2, seq_len=64)
    fns = compiled_fns(shape, "float32", 0.9, 0.95, 0.1, 1.0, remat=remat)
    params, opt_state = fns.init(np.uint32(0))
    rng = np.random.default_rng(0)
    out = []
    for _ in range(steps):
        x = rng.integers(0, shape.vocab_size, (4, 65)).astype(np.int32)
        params, opt_state, loss, _ = fns.train_step(params, opt_state, x[:, :-1], x[:, 1:], np.float32(3e-3))
        out.append(float(loss))
    return out


def test_remat_policies_train_to_the_same_losses_at_fp32():
    none = _losses("none")
    assert none[-1] < none[0]  # it trains: the comparison is over moving weights
    for policy in ("dots", "full"):
        assert _losses(policy) == pytest.approx(none, abs=1e-6), policy


MEMORY_PROBE = r"""
import json, sys
from scaling.family import shape_for_width
from scaling.train.bench import compile_train_step
shape = shape_for_width(64, n_layers=4, seq_len=256)
print(json.dumps({r: compile_train_step(shape, 8, remat=r)["temp_bytes"] for r in ("none", "dots", "full")}))
"""


@pytest.mark.slow  # three compilations in a process of its own
def test_compiled_temp_memory_falls_from_none_to_dots_to_full():
    # A process of its own with the compilation cache off: a cached executable may not carry its analysis.
    env = {**os.environ, "SCALING_COMPILATION_CACHE": "off"}
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    temp = yaml.safe_load(out.stdout.strip().splitlines()[-1])
    assert temp["none"] > temp["dots"] >= temp["full"] > 0, temp


def test_a_bad_remat_is_one_line_and_exit_2(home, capsys):
    assert main(["--home", home, "train", "d_model=16", "tokens=1e4", "remat=some"]) == 2
    err = capsys.readouterr().err
    assert "remat='some': allowed auto, none, dots, full" in err and err.count("\n") == 1
    assert not os.path.exists(home)


def test_remat_is_recorded_and_may_change_when_the_run_resumes(home, tiny):
    base = {k: v for k, v in (i.split("=") for i in tiny)} | {"tokens": 128 * 8, "wandb": "off", "run_id": "rm"}
    first = train_run(plan_run(RunConfig.from_dict(base | {"remat": "full"})), home, stop_at_step=3)
    assert first["status"] == "interrupted" and first["remat"] == "full"
    with open(os.path.join(home, "rm", "config.yaml")) as fh:
        record = yaml.safe_load(fh)
    assert record["config"]["remat"] == "full" and record["resolved"]["remat"] == "full"
    assert record["resolved"]["attention"] == CPU_ATTENTION  # attention=auto, resolved and named
    again = train_run(plan_run(RunConfig.from_dict(base | {"remat": "dots"})), home)
    assert again["status"] == "complete" and again["step"] == 8 and again["remat"] == "dots"
    with open(os.path.join(home, "rm", "config.yaml")) as fh:
        assert yaml.safe_load(fh)["resolved"]["remat"] == "dots"


def _plan(**overrides):
    cfg = {"d_model": 256, "n_layers": 4, "seq_len": 1024, "batch_size": 16, "tokens": 1e6, "corpus": "synthetic",
           "dtype": "bfloat16"} | overrides
    return plan_run(RunConfig.from_dict(cfg))


def test_the_memory_estimate_falls_with_each_remat_policy():
    plan = _plan()
    none, dots, full = (sum(limits.training_bytes(plan, r)) for r in ("none", "dots", "full"))
    assert none > dots > full


def test_auto_remat_is_none_on_cpu_and_the_least_recomputation_that_fits_elsewhere():
    plan = _plan()
    need = {r: sum(limits.training_bytes(plan, r)) for r in ("none", "dots", "full")}
    assert limits.choose_remat(plan, (need["dots"] * 0.5, "tiny"), "cpu") == "none"
    assert limits.choose_remat(plan, (need["none"] * 1.01, "big"), "gpu") == "none"
    assert limits.choose_remat(plan, (need["dots"] * 1.01, "mid"), "gpu") == "dots"
    assert limits.choose_remat(plan, (need["full"] * 1.01, "small"), "gpu") == "full"
    assert limits.choose_remat(_plan(remat="dots"), (need["none"] * 2, "big"), "gpu") == "dots"  # as asked


def test_a_run_that_does_not_fit_is_told_which_remat_or_microbatches_would():
    plan = _plan(remat="none")
    need = {r: sum(limits.training_bytes(plan, r)) for r in ("none", "dots", "full")}
    with pytest.raises(UsageError, match=r"to train with remat=none, .*allowed: remat=dots or remat=full$"):
        limits.check_plan(plan, (need["dots"] * 1.01, "a test device"))
    with pytest.raises(UsageError, match=r"allowed: remat=full$"):
        limits.check_plan(plan, (need["full"] * 1.01, "a test device"))
    with pytest.raises(UsageError, match=r"allowed: microbatches=\d+$") as refused:
        limits.check_plan(plan, (need["full"] * 0.9, "a test device"))
    k = int(str(refused.value).rsplit("=", 1)[1])
    limits.check_plan(_plan(remat="none", microbatches=k), (need["full"] * 0.9, "a test device"))  # it does fit
    # a batch of 256 rows: even 256 microbatches of one row do not fit without remat; with full they do
    large = _plan(remat="none", batch_size=256, d_model=64)
    finest = {r: sum(limits.training_bytes(_plan(remat="none", batch_size=256, d_model=64, microbatches=256), r))
              for r in ("none", "full")}
    with pytest.raises(UsageError, match=r"allowed: microbatches=\d+ with remat=full$"):
        limits.check_plan(large, ((finest["none"] + finest["full"]) / 2, "a test device"))


def test_an_unresolved_auto_remat_is_checked_as_this_machine_would_run_it(monkeypatch):
    # `scaling train` checks the plan before the run opens: on CPU, auto is none, so a plan that fits only
    # with recomputation is refused there, naming the remat that would fit.
    plan = _plan()
    need = {r: sum(limits.training_bytes(plan, r)) for r in ("none", "dots", "full")}
    monkeypatch.setattr(limits, "device_memory", lambda: (need["dots"] * 1.01, "this machine's RAM"))
    monkeypatch.setattr(limits, "_platform", lambda: "cpu")
    with pytest.raises(UsageError, match=r"with remat=none, .*allowed: remat=dots or remat=full$"):
        limits.check_plan(plan)
    monkeypatch.setattr(limits, "_platform", lambda: "gpu")
    limits.check_plan(plan)  # an accelerator's auto takes dots
