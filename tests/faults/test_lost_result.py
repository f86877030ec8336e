"""Issue #11 item 2: a finished run's result survives a torn or missing summary.json (or config.yaml). It
is restored from the index, or recomputed by evaluating the final checkpoint; never replaced by less."""
import json
import os
import sqlite3

import pytest
from faultlib import row

from scaling.cli import main

TORN = '{"run_id": "r", "status": "comp'


def _train(home, tiny, *extra):
    return main(["--home", home, "train", *tiny, "tokens=3840", "run_id=r", "wandb=off", "--quiet", *extra])


def _summary(home):
    with open(os.path.join(home, "r", "summary.json")) as fh:
        return json.load(fh)


def _forget_index(home):
    with sqlite3.connect(os.path.join(home, "scaling.db")) as conn:
        conn.execute("DELETE FROM runs")


@pytest.mark.parametrize("damage", ["torn summary", "missing summary", "missing config", "torn summary, no config"])
def test_a_completed_run_rerun_after_losing_its_files_keeps_its_loss(home, tiny, damage, capsys):
    assert _train(home, tiny) == 0
    before = _summary(home)
    run = os.path.join(home, "r")
    if "torn summary" in damage:
        with open(os.path.join(run, "summary.json"), "w") as fh:
            fh.write(TORN)
    if "missing summary" in damage:
        os.remove(os.path.join(run, "summary.json"))
    if "config" in damage:
        os.remove(os.path.join(run, "config.yaml"))
    _forget_index(home)  # the result is not kept elsewhere either: only the final checkpoint has it
    assert _train(home, tiny) == 0
    after = _summary(home)
    assert after["status"] == "complete"
    assert after["eval_loss"] == pytest.approx(before["eval_loss"], abs=1e-6)  # recomputed, not None
    assert after["train_loss"] == pytest.approx(before["train_loss"], abs=1e-6)  # from the last metrics row
    assert os.path.exists(os.path.join(run, "config.yaml"))
    assert row(home, "r").status == "complete" and row(home, "r").summary["eval_loss"] == after["eval_loss"]
    assert "eval loss" in capsys.readouterr().out


def test_a_torn_summary_is_restored_from_the_index_without_training(home, tiny, monkeypatch):
    assert _train(home, tiny) == 0
    before = _summary(home)
    with open(os.path.join(home, "r", "summary.json"), "w") as fh:
        fh.write(TORN)
    os.remove(os.path.join(home, "r", "config.yaml"))
    import scaling.train.loop as loop

    monkeypatch.setattr(loop, "run_loop", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert _train(home, tiny) == 0
    assert _summary(home) == before
    assert os.path.exists(os.path.join(home, "r", "config.yaml"))


def test_a_finished_result_is_never_replaced_by_a_lesser_summary(home, tiny):
    from scaling.runs import LocalTracker, RunHome, RunWriter

    assert _train(home, tiny) == 0
    before = _summary(home)
    writer = RunWriter(RunHome(home), "r", [LocalTracker(os.path.join(home, "r"))])
    kept = writer.finish({**before, "status": "interrupted", "eval_loss": None, "train_loss": float("nan")})
    assert kept == before and _summary(home) == before
