"""Sweep specs: W&B's format accepted, what the local engine cannot honour refused (exit 2, one line,
nothing registered), and every shipped spec's command rendered by W&B's own code into a valid
`scaling train` call."""
import glob
import json
import math
import os

import pytest
import yaml

from scaling import sweep
from scaling.cli import main
from scaling.config import RunConfig, resolve_config
from scaling.errors import UsageError
from scaling.runs import RunHome

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "sweeps", "*.yaml")))
COMMAND = ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"]
GOOD = {
    "method": "grid",
    "parameters": {"d_model": {"values": [16, 32]}, "tokens": {"value": 4096}, "seq_len": {"value": 32},
                   "batch_size": {"value": 4}, "corpus": {"value": "synthetic"}, "wandb": {"value": "off"}},
    "command": COMMAND,
}


def _spec(tmp_path, data, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _with(**changes):
    data = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def _params(**changes):
    params = dict(GOOD["parameters"])
    params.update(changes)
    return _with(parameters=params)


BAD = {
    "malformed YAML": ("method: grid\nparameters: {d_model: [16, 32\n", "not valid YAML"),
    "not a mapping": ("- method\n- grid\n", "expected a mapping"),
    "unknown method": (_with(method="hyperband"), "not a sweep method"),
    "bayes": (_with(method="bayes"), "bayes needs W&B's server"),
    "no method": (_with(method=None), "method: required"),
    "empty grid": (_params(d_model={"values": []}), "empty list"),
    "no parameters": (_with(parameters={}), "parameters: required"),
    "early_terminate": (_with(early_terminate={"type": "hyperband", "min_iter": 3}), "early_terminate: not supported"),
    "unknown top-level key": (_with(workers=4), "unknown key 'workers'"),
    "metric target": (_with(metric={"name": "eval/loss", "goal": "minimize", "target": 2.0}), "metric.target"),
    "unknown run key": (_params(dropout={"value": 0.1}), "unknown key 'dropout'"),
    "reserved key": (_params(run_id={"value": "x"}), "set by the sweep engine"),
    "wrong value type": (_params(lr={"values": [1.0e-3, "fast"]}), "lr='fast': expected a finite number"),
    "wrong bound type": (_with(method="random", run_cap=3, parameters=dict(
        GOOD["parameters"], lr={"distribution": "log_uniform_values", "min": "1e-4", "max": 1.0e-2})), "write 1.0e-4"),
    "min above max": (_with(method="random", run_cap=3, parameters=dict(
        GOOD["parameters"], lr={"distribution": "log_uniform_values", "min": 1.0e-2, "max": 1.0e-4})),
        "must be less than"),
    "distribution in grid": (_params(lr={"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-2}),
                             "grid needs value or values"),
    "unknown distribution": (_with(method="random", run_cap=2, parameters=dict(
        GOOD["parameters"], lr={"distribution": "zipf", "min": 1, "max": 2})), "'zipf' is unknown"),
    "random without run_cap": (_with(method="random"), "run_cap: required"),
    "bad run_cap": (_with(run_cap=0), "run_cap: expected a positive integer"),
    "nested parameters": (_params(opt={"parameters": {"lr": {"value": 1}}}), "unknown key 'opt'"),
    "no command": (_with(command=None), "command: required"),
    "command without args": (_with(command=["scaling", "train"]), "exactly one of"),
    "command with args_json": (_with(command=["scaling", "train", "${args_json}"]), "${args_json} is not supported"),
    "command not scaling train": (_with(command=["${env}", "${interpreter}", "train.py", "${args}"]), "does not call"),
    "both length keys": (_params(flops_budget={"value": 1.0e+9}), "exactly one of tokens"),
    "every point skipped": (_params(tokens={"value": 16}), "no point can run"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_specs_are_refused_in_one_line_with_nothing_registered(case, tmp_path, capsys):
    data, expected = BAD[case]
    home = tmp_path / "runs"
    rc = main(["--home", str(home), "sweep", "create", _spec(tmp_path, data)])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert expected in err and "\n" not in err and "Traceback" not in err
    assert not home.exists()  # nothing registered, not even an empty index


def test_missing_spec_file_is_a_usage_error(tmp_path, capsys):
    assert main(["--home", str(tmp_path / "runs"), "sweep", "create", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_unknown_sweep_is_a_usage_error(home, capsys):
    for argv in (["sweep", "agent", "nope"], ["sweep", "status", "nope"], ["runs", "--sweep", "nope"]):
        assert main(["--home", home, *argv]) == 2
        assert "no sweep 'nope'" in capsys.readouterr().err


def test_grid_is_the_product_in_spec_order_and_skips_what_cannot_run(tmp_path):
    spec = sweep.load_spec(_spec(tmp_path, _params(tokens={"values": [64, 4096]}, lr={"values": [1.0e-3, 1.0e-3]})))
    points = sweep.enumerate_points(spec)
    assert len(points) == 4  # 2 widths x 2 lengths; the repeated lr is one value
    assert [(p["d_model"], p["tokens"]) for p in points] == [(16, 64), (16, 4096), (32, 64), (32, 4096)]
    runs = sweep.plan_sweep_runs(spec, "s-1")
    skipped = [r for r in runs if r["status"] == "skipped"]
    assert [r["config"]["tokens"] for r in skipped] == [64, 64]
    assert all("less than one batch" in r["reason"] for r in skipped)
    assert all(r["config"]["sweep"] == "s-1" and r["config"]["run_id"].startswith("s-1-") for r in runs)


def test_a_point_too_big_for_this_machines_memory_is_queued_with_a_note_not_skipped(tmp_path, monkeypatch, home):
    # A sweep for GPUs is registered on a login node: its RAM says nothing about the agents' devices (the
    # ladder-gpu points over this machine's memory used to be skipped for good). Each agent checks its own.
    monkeypatch.setattr("scaling.sweep.register.host_memory", lambda: (1e3, "this machine's RAM"))
    path = _spec(tmp_path, _params(tokens={"value": 4096}))
    created = sweep.create_sweep(home, path)
    assert [r["status"] for r in created["runs"]] == ["pending", "pending"]
    (note,) = [n for n in created["notes"] if "more memory than this machine has" in n]
    assert note.startswith("2 queued point(s)") and "this machine's RAM" in note
    assert all("memory" not in r for r in RunHome(home).sweep_runs(created["sweep_id"])[0].config)


def test_random_draws_run_cap_seeded_points_within_their_distributions(tmp_path):
    data = _with(method="random", run_cap=12, parameters=dict(
        GOOD["parameters"],
        lr={"distribution": "log_uniform_values", "min": 1.0e-4, "max": 1.0e-2},
        warmup_fraction={"distribution": "q_uniform", "min": 0.0, "max": 0.2, "q": 0.05},
        n_evals={"min": 2, "max": 5},
        schedule={"values": ["cosine", "wsd"], "probabilities": [0.5, 0.5]},
        beta2={"distribution": "inv_log_uniform_values", "min": 0.9, "max": 0.999}))
    spec = sweep.load_spec(_spec(tmp_path, data))
    points = sweep.enumerate_points(spec)
    assert len(points) == 12 and points == sweep.enumerate_points(spec)  # same file, same draws
    for p in points:
        assert 1e-4 <= p["lr"] <= 1e-2 and 0.9 <= p["beta2"] <= 0.999
        assert p["n_evals"] in range(2, 6) and isinstance(p["n_evals"], int)
        assert math.isclose(p["warmup_fraction"] / 0.05, round(p["warmup_fraction"] / 0.05))
        RunConfig.from_dict(p)
    assert len({p["lr"] for p in points}) == 12
    logs = [math.log10(p["lr"]) for p in points]
    assert min(logs) < -3 < max(logs)  # spread over the decades, not bunched at the top as uniform would be


def _wandb_argv(spec, values):
    """The argv `wandb agent` would run, built with W&B's own helpers (wandb_agent.Agent._command_run
    does this expansion around them)."""
    from wandb.sdk.launch.sweeps import utils as wb

    command = {"args": {k: {"value": json.loads(json.dumps(v))} for k, v in values.items()},
               "program": spec.program}
    sweep_vars = wb.create_sweep_command_args(command)
    sweep_vars.update(interpreter=["python"], program=[command["program"]], env=["/usr/bin/env"])
    argv = []
    for word in wb.create_sweep_command(list(spec.command)):
        word = str(word)
        argv += (sweep_vars.get(word[2:-1]) or []) if word.startswith("${") and word.endswith("}") else [word]
    return argv


@pytest.mark.parametrize("path", SHIPPED, ids=[os.path.basename(p) for p in SHIPPED])
def test_every_shipped_spec_renders_to_a_valid_scaling_train_call(path):
    spec = sweep.load_spec(path)
    assert spec.program and spec.metric == {"name": "eval/loss", "goal": "minimize"}
    with open(path) as fh:
        header = fh.read().split("\nname:")[0]
    assert header.startswith("#") and "Answers:" in header and "Cost:" in header  # what it is for, what it costs
    points = sweep.enumerate_points(spec)
    assert points
    for point in points:
        argv = _wandb_argv(spec, point)
        assert argv == sweep.render_command(spec, point)
        assert argv[:5] == ["/usr/bin/env", "python", "-m", "scaling.cli", "train"]
        parsed = resolve_config(None, sweep.train_overrides(argv))
        assert parsed == RunConfig.from_dict(point)


def test_values_chosen_by_wandb_agent_reach_the_trainer_through_the_param_file(tmp_path, monkeypatch):
    """Online, wandb.init merges WANDB_SWEEP_PARAM_PATH over the config; the trainer reads it itself too."""
    spec = sweep.load_spec(os.path.join(ROOT, "sweeps", "demo.yaml"))
    point = sweep.enumerate_points(spec)[-1]
    param_file = tmp_path / "config-abc.yaml"
    param_file.write_text(yaml.safe_dump({k: {"value": v} for k, v in point.items()}))
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw1")
    monkeypatch.setenv("WANDB_RUN_ID", "abc")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(param_file))
    cfg = resolve_config(None, sweep.train_overrides(sweep.render_command(spec, point)))
    assert cfg == RunConfig.from_dict(point).replace(run_id="abc")


def test_shipped_specs_plan_without_skips_except_where_stated(tmp_path):
    """Every shipped point is runnable, so a shipped sweep never silently shrinks."""
    for path in SHIPPED:
        spec = sweep.load_spec(path)
        if any(p.name == "corpus" and p.discrete and p.discrete[0] not in ("stdlib", "synthetic")
               for p in spec.parameters):
            continue  # a corpus file this machine does not have
        runs = sweep.plan_sweep_runs(spec, "check")
        assert [r["reason"] for r in runs if r["status"] == "skipped"] == [], path
        assert sweep.duplicate_notes(runs) == [], path


def test_parse_spec_names_the_file_and_key():
    with pytest.raises(UsageError, match=r"^x.yaml: parameters.lr.max: required"):
        sweep.parse_spec(_with(method="random", run_cap=1, parameters={"lr": {"distribution": "uniform", "min": 0.1}}),
                         where="x.yaml")
