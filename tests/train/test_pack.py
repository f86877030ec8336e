import json
import os

import pytest

from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.runs import read_metrics
from scaling.train import plan_run, train_run
from scaling.train.pack import train_pack

# Runs that differ in everything a pack allows: seed, learning rate, schedule and length.
VARIANTS = [{"seed": 0, "tokens": 6e3}, {"seed": 1, "tokens": 4e3, "lr": 3e-3},
            {"seed": 2, "tokens": 5e3, "schedule": "wsd", "n_evals": 5}]


def _plans(tiny, prefix, **extra):
    base = dict(i.split("=") for i in tiny) | {"wandb": "off"} | extra
    return [plan_run(RunConfig.from_dict(base | v | {"run_id": f"{prefix}{i}"})) for i, v in enumerate(VARIANTS)]


def _metrics(home, run_id):
    return read_metrics(os.path.join(home, run_id, "metrics.jsonl"))


def test_packed_runs_end_as_they_do_alone_each_with_its_own_run_directory(home, tiny):
    alone = [train_run(p, home) for p in _plans(tiny, "alone")]
    packed = train_pack(_plans(tiny, "packed"), home)
    for a, b in zip(alone, packed):
        assert b["status"] == "complete" and b["run_id"].startswith("packed")
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], abs=1e-5)
        assert (b["steps"], b["tokens"], b["flops"], b["lr"]) == (a["steps"], a["tokens"], a["flops"], a["lr"])
        rows_a, rows_b = _metrics(home, a["run_id"]), _metrics(home, b["run_id"])
        assert [r["step"] for r in rows_b] == [r["step"] for r in rows_a]
        for ra, rb in zip(rows_a, rows_b):
            assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-5)
            assert rb.get("eval_loss") == pytest.approx(ra.get("eval_loss"), abs=1e-5)
        with open(os.path.join(home, b["run_id"], "summary.json")) as fh:
            assert json.load(fh)["eval_loss"] == b["eval_loss"]
        assert os.listdir(os.path.join(home, b["run_id"], "checkpoints"))


def test_a_stopped_pack_resumes_packed_or_alone_to_the_same_losses(home, tiny):
    whole = train_pack(_plans(tiny, "whole"), home)
    cut = train_pack(_plans(tiny, "cut"), home, stop_at_step=15)
    assert [s["status"] for s in cut] == ["interrupted"] * 3 and [s["step"] for s in cut] == [15] * 3
    plans = _plans(tiny, "cut")
    resumed = [train_run(plans[0], home)] + train_pack(plans[1:], home)  # one alone, two packed
    for w, r in zip(whole, resumed):
        assert r["status"] == "complete"
        assert r["eval_loss"] == pytest.approx(w["eval_loss"], abs=1e-5)
    again = train_pack(plans, home)  # finished runs are not trained again
    assert [a["eval_loss"] for a in again] == [r["eval_loss"] for r in resumed]


def test_runs_of_different_shapes_are_not_packed(tiny):
    plans = _plans(tiny, "x")
    other = plan_run(plans[0].config.replace(d_model=32, run_id="y"))
    with pytest.raises(UsageError, match="one shape, batch size and optimizer"):
        train_pack([plans[0], other])


def test_each_packed_run_has_its_own_wandb_run_with_its_final_loss(home, tiny, offline_run):
    plans = [plan_run(RunConfig.from_dict(dict(i.split("=") for i in tiny)
                                          | {"tokens": 4e3, "seed": seed, "run_id": f"wb{seed}", "wandb": "offline"}))
             for seed in (0, 1)]
    summaries = train_pack(plans, home)
    for s in summaries:
        rec = offline_run(os.path.join(home, s["run_id"], "wandb"), "eval_loss")
        assert rec["id"] == s["run_id"]
        assert rec["summary"]["eval_loss"] == pytest.approx(s["eval_loss"])
        assert any("eval/loss" in row for row in rec["history"])


def test_a_storage_fault_in_one_packed_run_fails_it_alone_and_its_pack_mates_stop_resumably(home, tiny, monkeypatch):
    import errno

    from scaling.runs.files import StorageError
    from scaling.train import checkpoints

    plans = _plans(tiny, "disk", checkpoint_every=10)
    real_save = checkpoints.Checkpoints.save

    def save(self, step, state):  # run disk1's disk fills up at its first checkpoint
        if f"{os.sep}disk1{os.sep}" in str(self.manager.directory):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, step, state)

    monkeypatch.setattr(checkpoints.Checkpoints, "save", save)
    with pytest.raises(StorageError, match="run disk1 stopped at step 10"):
        train_pack(plans, home)
    ended = {}
    for plan in plans:
        with open(os.path.join(home, plan.run_id, "summary.json")) as fh:
            ended[plan.run_id] = json.load(fh)
    assert ended["disk1"]["status"] == "failed" and "no space left" in ended["disk1"]["reason"]
    assert [(ended[r]["status"], ended[r]["step"]) for r in ("disk0", "disk2")] == [("interrupted", 10)] * 2
    monkeypatch.setattr(checkpoints.Checkpoints, "save", real_save)
    assert [s["status"] for s in train_pack(plans, home)] == ["complete"] * 3  # each resumes
