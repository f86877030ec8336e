"""Issue #11 item 8: storage faults get one line and exit 2, and the run's state stays true: a home that
is a file or lies under one, a disk that fills up mid-run (ENOSPC on a small tmpfs), a read-only home
(where the commands that only read still work)."""
import json
import os

import pytest
import yaml
from faultlib import COMMAND, TINY_SWEEP, checkpoint_steps, remount, row, tmpfs, tree

from scaling.cli import main


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


def _spec(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "method": "grid", "command": COMMAND,
                                    "parameters": {**TINY_SWEEP, "tokens": {"values": [320, 352]}}}))
    return str(path)


COMMANDS = {
    "train": lambda tiny, spec: ["train", *tiny, "tokens=640", "run_id=x", "wandb=off", "--quiet"],
    "sweep create": lambda tiny, spec: ["sweep", "create", spec],
    "sweep agent": lambda tiny, spec: ["sweep", "agent", "nosuch", "--quiet"],
    "sweep status": lambda tiny, spec: ["sweep", "status"],
    "runs": lambda tiny, spec: ["runs"],
    "runs --reindex": lambda tiny, spec: ["runs", "--reindex"],
}


@pytest.mark.parametrize("where", ["a file", "under a file"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_home_that_is_a_file_gets_one_line_and_exit_2(tmp_path, tiny, capsys, where, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder\n")
    home = str(blocker) if where == "a file" else str(blocker / "runs")
    before = tree(tmp_path)
    assert main(["--home", home, *COMMANDS[command](tiny, _spec(tmp_path))]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(blocker) in line and "file" in line
    assert tree(tmp_path) == before | {"s.yaml": os.path.getsize(tmp_path / "s.yaml")}


def test_a_disk_that_fills_up_mid_run_fails_the_run_in_one_line_and_it_resumes_when_there_is_room(
        tmp_path, tiny, capsys):
    items = [*tiny, "tokens=6400", "run_id=full", "wandb=off", "checkpoint_every=5", "--quiet"]  # 50 steps
    assert main(["--home", str(tmp_path / "ref"), "train", *items]) == 0
    with open(tmp_path / "ref" / "full" / "summary.json") as fh:
        reference = json.load(fh)
    capsys.readouterr()
    with tmpfs(tmp_path / "disk", "2m") as disk:
        home = os.path.join(disk, "runs")
        filler = os.path.join(disk, "filler")
        with open(filler, "wb") as fh:  # leave room for a few checkpoints, not for the whole run
            st = os.statvfs(disk)
            fh.write(b"\0" * (st.f_bavail * st.f_frsize - 300 * 1024))
        assert main(["--home", home, "train", *items]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("scaling train: error: run full")
        assert "no space left on device" in err
        with open(os.path.join(home, "full", "summary.json")) as fh:
            s = json.load(fh)
        assert s["status"] == "failed" and "no space left" in s["reason"] and s["step"] < 50
        assert row(home, "full").status == "failed"  # not left `running`
        leftovers = [n for n in os.listdir(os.path.join(home, "full", "checkpoints")) if "tmp" in n]
        assert leftovers == []
        saved = checkpoint_steps(home, "full")[-1]

        os.remove(filler)
        assert main(["--home", home, "train", *items]) == 0
        with open(os.path.join(home, "full", "summary.json")) as fh:
            s = json.load(fh)
        assert s["status"] == "complete" and s["eval_loss"] == pytest.approx(reference["eval_loss"], abs=1e-6)
        steps = [json.loads(line)["step"] for line in open(os.path.join(home, "full", "metrics.jsonl"))]
        assert steps.count(saved + 1) == 2 and steps.count(1) == 1  # resumed from its last checkpoint


def test_a_read_only_home_can_be_read_and_refuses_writes_in_one_line(tmp_path, tiny, capsys):
    spec = _spec(tmp_path)
    with tmpfs(tmp_path / "disk", "8m") as disk:
        home = os.path.join(disk, "runs")
        assert main(["--home", home, "train", *tiny, "tokens=640", "run_id=done", "wandb=off", "--quiet"]) == 0
        assert main(["--home", home, "sweep", "create", spec]) == 0
        sweep_id = capsys.readouterr().out.split()[-1]
        remount(disk, "ro")
        before = tree(disk)

        assert main(["--home", home, "runs"]) == 0
        assert "done" in capsys.readouterr().out
        assert main(["--home", home, "runs", "--csv", "-"]) == 0
        assert "done" in capsys.readouterr().out
        assert main(["--home", home, "sweep", "status"]) == 0
        assert sweep_id in capsys.readouterr().out
        assert main(["--home", home, "sweep", "status", sweep_id]) == 0
        assert "2 pending" in capsys.readouterr().out

        for argv in (["train", *tiny, "tokens=640", "run_id=new", "wandb=off", "--quiet"],
                     ["train", *tiny, "tokens=640", "run_id=done", "wandb=off", "checkpoint_every=3", "--quiet"],
                     ["sweep", "create", spec], ["sweep", "agent", sweep_id, "--quiet"], ["runs", "--reindex"]):
            assert main(["--home", home, *argv]) == 2, argv
            err = capsys.readouterr().err
            line = err.strip().splitlines()[-1]
            assert "Traceback" not in err and "read-only" in line, (argv, err)
        assert tree(disk) == before
