"""Issue #11 item 6: a damaged latest checkpoint (a truncated file, a missing _METADATA) is set aside with
one line saying so, and the run resumes from the checkpoint before it, to the same final loss."""
import json
import os

import pytest
from faultlib import checkpoint_steps

from scaling.cli import main
from scaling.config import RunConfig
from scaling.train import plan_run, train_run


def _truncate_arrays(step_dir):
    for folder, _, names in os.walk(os.path.join(step_dir, "default")):
        for name in names:
            if os.path.basename(folder) == "d":  # the array data files
                with open(os.path.join(folder, name), "r+b") as fh:
                    fh.truncate(7)


def _remove_metadata(step_dir):
    os.remove(os.path.join(step_dir, "default", "_METADATA"))


def _truncate_manifest(step_dir):
    with open(os.path.join(step_dir, "default", "manifest.ocdbt"), "r+b") as fh:
        fh.truncate(5)


DAMAGE = {"truncated array files": _truncate_arrays, "missing _METADATA": _remove_metadata,
          "truncated manifest": _truncate_manifest}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_latest_checkpoint_is_set_aside_in_one_line_and_the_one_before_resumes(home, tiny, damage, capfd):
    items = [*tiny, "tokens=3840", "checkpoint_every=10", "wandb=off"]  # 30 steps
    assert main(["--home", home, "train", *items, "run_id=straight", "--quiet"]) == 0
    values = dict(i.split("=") for i in items)
    first = train_run(plan_run(RunConfig.from_dict(values | {"run_id": "hurt"})), home, stop_at_step=25)
    assert first["status"] == "interrupted" and checkpoint_steps(home, "hurt") == [20, 25]
    DAMAGE[damage](os.path.join(home, "hurt", "checkpoints", "25"))
    capfd.readouterr()

    assert main(["--home", home, "train", *items, "run_id=hurt", "--quiet"]) == 0
    err = capfd.readouterr().err
    said = [line for line in err.splitlines() if "damaged" in line]
    assert len(said) == 1 and "step 25" in said[0] and "Traceback" not in err, err
    run = os.path.join(home, "hurt")
    assert os.path.isdir(os.path.join(run, "checkpoints", "25.damaged"))
    with open(os.path.join(run, "summary.json")) as fh, open(os.path.join(home, "straight", "summary.json")) as ref:
        got, want = json.load(fh), json.load(ref)
    assert got["status"] == "complete" and got["eval_loss"] == pytest.approx(want["eval_loss"], abs=1e-6)
    assert main(["--home", home, "train", *items, "run_id=hurt", "--quiet"]) == 0  # and a rerun says nothing more
    assert "damaged" not in capfd.readouterr().err


def test_when_every_checkpoint_is_damaged_the_run_starts_over_and_says_so(home, tiny, capfd):
    items = {k: v for k, v in (i.split("=") for i in tiny)} | {"tokens": 3840, "checkpoint_every": 10,
                                                                 "wandb": "off", "run_id": "all"}
    plan = plan_run(RunConfig.from_dict(items))
    train_run(plan, home, stop_at_step=25)
    for step in checkpoint_steps(home, "all"):
        _remove_metadata(os.path.join(home, "all", "checkpoints", str(step)))
    capfd.readouterr()
    done = train_run(plan_run(RunConfig.from_dict(items)), home)
    said = [line for line in capfd.readouterr().err.splitlines() if "damaged" in line]
    assert len(said) == 2 and done["status"] == "complete" and done["step"] == 30
