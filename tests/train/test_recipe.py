"""recipe=FIT.json[,FIT2.json]: fitted lr and batch laws (`scaling fit --law lr|batch --json`) set a run's
lr and batch_size in place of the family's rules, explicit keys win, config.yaml records the laws with
their files' sha256, and a resume under an edited file is refused."""
import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from scaling.cli import main
from scaling.config import RunConfig, load_yaml
from scaling.errors import UsageError
from scaling.family import default_batch_size, default_lr
from scaling.train import plan_run
from scaling.train.record import changed_keys, run_record

LR = {"law": "lr", "lr_opt": {"coefficient": 0.5, "exponent": -0.35, "ci95": [-0.4, -0.3]}}
BATCH = {"law": "batch", "against": "flops", "batch_opt": {"coefficient": 0.9, "exponent": 0.1}}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = {"d_model": 16, "seq_len": 32, "tokens": 4e3, "eval_tokens": 256, "n_evals": 3}


def _write(folder, name, content) -> str:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.fixture
def fits(tmp_path):
    return _write(tmp_path, "lr.json", LR), _write(tmp_path, "batch.json", BATCH)


def test_lr_comes_from_the_lr_law_at_the_models_n_and_batch_from_the_batch_law_at_its_compute(fits):
    plan = plan_run(RunConfig.from_dict({**RUN, "recipe": ",".join(fits)}))
    n = plan.shape.params
    assert plan.lr == pytest.approx(0.5 * n ** -0.35, rel=1e-12)
    assert plan.batch_size == round(0.9 * (6.0 * n * 4e3) ** 0.1)
    family = plan_run(RunConfig.from_dict(RUN))  # what the family's rules give instead
    assert (family.lr, family.batch_size) == (default_lr(plan.shape), default_batch_size(plan.shape))
    assert (plan.lr, plan.batch_size) != (family.lr, family.batch_size)
    # a run given by its compute evaluates the batch law at exactly that C
    by_flops = plan_run(RunConfig.from_dict({**RUN, "tokens": None, "flops_budget": 1e9, "recipe": fits[1]}))
    assert by_flops.batch_size == round(0.9 * 1e9 ** 0.1) and by_flops.lr == family.lr


def test_explicit_lr_and_batch_size_win_over_the_laws(fits):
    plan = plan_run(RunConfig.from_dict({**RUN, "recipe": ",".join(fits), "lr": 3e-3, "batch_size": 8}))
    assert (plan.lr, plan.batch_size) == (3e-3, 8)
    assert [r.get("unused") for r in plan.recipe] == ["lr given", "batch_size given"]


def test_recipe_is_a_yaml_list_or_a_sweep_value(fits, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**RUN, "recipe": list(fits)}))
    cfg = RunConfig.from_dict(load_yaml(str(config)))
    assert cfg.recipe == ",".join(fits)
    from scaling.sweep.register import plan_sweep_runs

    (row,) = plan_sweep_runs(_spec({**RUN, "recipe": fits[0]}), "s-abc")
    # the queue keeps the files' content as planned, so an agent trains what the plan shows or refuses
    assert row["status"] == "pending" and len(row["config"]["recipe_sha256"]) == 64
    assert row["plan"]["lr"] == pytest.approx(0.5 * plan_run(RunConfig.from_dict(RUN)).shape.params ** -0.35)
    _write(tmp_path, "lr.json", {**LR, "lr_opt": {"coefficient": 0.4, "exponent": -0.35}})
    with pytest.raises(UsageError, match="content changed since this run was planned"):
        plan_run(RunConfig.from_dict(row["config"]))


def _spec(point: dict):
    from scaling.sweep.spec import parse_spec

    command = ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"]
    return parse_spec({"name": "s", "method": "grid", "command": command,
                       "parameters": {k: {"value": v} for k, v in point.items()}})


def test_config_yaml_records_the_laws_their_files_hash_and_what_they_set(fits):
    record = run_record(plan_run(RunConfig.from_dict({**RUN, "recipe": ",".join(fits)})))
    resolved, (lr_law, batch_law) = record["resolved"], record["resolved"]["recipe"]
    sha = [hashlib.sha256(open(f, "rb").read()).hexdigest() for f in fits]
    assert record["config"]["recipe"] == ",".join(fits) and record["config"]["recipe_sha256"] == ",".join(sha)
    n, c = resolved["shape"]["params"], 6.0 * resolved["shape"]["params"] * 4e3
    # enough to evaluate each law again without its file
    assert lr_law == {"path": fits[0], "sha256": sha[0], "law": "lr", "lr_opt": {"coefficient": 0.5, "exponent": -0.35},
                      "at": {"params": n}, "lr": resolved["lr"]}
    assert batch_law == {"path": fits[1], "sha256": sha[1], "law": "batch", "against": "flops",
                         "batch_opt": {"coefficient": 0.9, "exponent": 0.1}, "at": {"flops": c},
                         "batch_size": resolved["batch_size"]}
    assert resolved["lr"] == pytest.approx(0.5 * n ** -0.35) and resolved["batch_size"] == round(0.9 * c ** 0.1)


def test_a_resume_compares_the_recipes_content_not_where_its_files_lie(fits, tmp_path):
    """changed_keys is what a resume refuses on (train/loop.py): the same files elsewhere are the same run,
    an edited file or a dropped recipe is another."""
    first = run_record(plan_run(RunConfig.from_dict({**RUN, "recipe": ",".join(fits)})))
    moved = tmp_path / "moved"
    moved.mkdir()
    copies = [_write(moved, os.path.basename(f), open(f).read()) for f in fits]
    assert changed_keys(first, run_record(plan_run(RunConfig.from_dict({**RUN, "recipe": ",".join(copies)})))) == []
    _write(tmp_path, "lr.json", {**LR, "lr_opt": {"coefficient": 0.5, "exponent": -0.3}})
    edited = run_record(plan_run(RunConfig.from_dict({**RUN, "recipe": ",".join(fits)})))
    assert changed_keys(first, edited) == ["recipe_sha256"]
    assert changed_keys(first, run_record(plan_run(RunConfig.from_dict(RUN)))) == ["recipe_sha256"]


@pytest.mark.parametrize("content,message", [
    (None, "recipe={path}: cannot read it"),
    ("{not json", "recipe={path}: not JSON"),
    ({"law": "isoflop", "n_opt": {"coefficient": 1, "exponent": 0.5}},
     "a fit JSON of law 'isoflop'; expected law lr or batch"),
    ([1, 2], "not a fit JSON"),
    ({"law": "lr", "lr_opt": {"coefficient": None, "exponent": -0.3}}, "law lr without a power law"),
    ('{"law": "lr", "lr_opt": {"coefficient": Infinity, "exponent": -0.3}}', "law lr without a power law"),
    ({"law": "batch", "batch_opt": {"coefficient": 0.5, "exponent": float("nan")}}, "law batch without a power law"),
    ({"law": "batch", "batch_opt": {"coefficient": 1e-3, "exponent": 0.1}}, "sequences per step at C = "),
    ({"law": "batch", "against": "loss", "batch_opt": {"coefficient": 50, "exponent": -2}}, "against the loss"),
    ({"law": "lr", "lr_opt": {"coefficient": 1e300, "exponent": 5}}, "not a usable learning rate"),
])
def test_a_bad_fit_json_is_one_line_exit_2_and_nothing_is_written(home, tmp_path, capsys, content, message):
    path = str(tmp_path / "fit.json") if content is None else _write(tmp_path, "fit.json", content)
    items = [f"{k}={v}" for k, v in RUN.items()] + [f"recipe={path}", "run_id=bad", "wandb=off"]
    assert main(["--home", home, "train", *items]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message.format(path=path) in err, err
    assert not os.path.exists(os.path.join(home, "bad"))


def test_two_laws_of_one_kind_are_refused(fits):
    with pytest.raises(UsageError, match="two lr laws"):
        plan_run(RunConfig.from_dict({**RUN, "recipe": f"{fits[0]},{fits[0]}"}))


@pytest.mark.slow
def test_scaling_train_takes_its_lr_and_batch_from_a_recipe_file(tmp_path, fits):
    """The command a person types, in its own process."""
    home = str(tmp_path / "runs")
    argv = [sys.executable, "-m", "scaling.cli", "--home", home, "train", "d_model=16", "seq_len=32", "tokens=4e3",
            "eval_tokens=256", "n_evals=2", f"recipe={fits[0]},{fits[1]}", "run_id=cli", "wandb=off", "--quiet"]
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert "from recipe" in out.stderr
    with open(os.path.join(home, "cli", "summary.json")) as fh:
        summary = json.load(fh)
    assert summary["status"] == "complete"
    assert summary["lr"] == pytest.approx(0.5 * summary["params"] ** -0.35)
    assert summary["batch_size"] == round(0.9 * (6.0 * summary["params"] * 4e3) ** 0.1)
    with open(os.path.join(home, "cli", "config.yaml")) as fh:
        assert [law["law"] for law in yaml.safe_load(fh)["resolved"]["recipe"]] == ["lr", "batch"]
    _write(tmp_path, "lr.json", {**LR, "lr_opt": {"coefficient": 0.5, "exponent": -0.3}})
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1] == (
        "scaling train: error: run_id='cli' exists with a different config (recipe_sha256); use another run_id")
