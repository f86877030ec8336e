"""Issue #11 item 8: storage faults get one line and exit 2, and the run's state stays true: a home that
is a file or lies under one, a disk that fills up mid-run (ENOSPC on a small tmpfs), a read-only home
(where the commands that only read still work)."""
import json
import os
import time

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


@pytest.mark.slow  # a run, a full disk and a resume (6 s): out of the fast suite
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
        time.sleep(2.5)  # any claim the full index kept lapses (--lease 2)
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


def _metrics_steps(home, run_id):
    return [json.loads(line)["step"] for line in open(os.path.join(home, run_id, "metrics.jsonl"))]


@pytest.mark.slow  # the fast suite keeps a single run's full disk; this one is a packed agent's, end to end
def test_a_disk_that_fills_up_under_a_packed_agent_leaves_every_member_resumable_and_retry_requeues_the_failed(
        tmp_path, capsys):
    # Issue #23 item 1: three runs of one shape in one pack, a checkpoint every 5 of their 40 steps, on a
    # disk with room for a few of them.
    from faultlib import make_sweep, run

    sweep = {"tokens": {"values": [1280, 1216, 1152]}, "checkpoint_every": {"value": 5}}
    ref_home = str(tmp_path / "ref")
    ref = make_sweep(tmp_path, ref_home, sweep, name="p")
    assert main(["--home", ref_home, "sweep", "agent", ref, "--pack", "3", "--no-wait", "--quiet"]) == 0
    expected = [row(ref_home, f"{ref}-{i:03d}").summary["eval_loss"] for i in range(3)]
    capsys.readouterr()
    with tmpfs(tmp_path / "disk", "4m") as disk:
        home = os.path.join(disk, "runs")
        sid = make_sweep(tmp_path, home, sweep, name="p")
        runs = [f"{sid}-{i:03d}" for i in range(3)]
        filler = os.path.join(disk, "filler")
        with open(filler, "wb") as fh:
            st = os.statvfs(disk)
            fh.write(b"\0" * (st.f_bavail * st.f_frsize - 600 * 1024))  # a checkpoint each, not two
        agent = run(home, "sweep", "agent", sid, "--pack", "3", "--no-wait", "--quiet", "--lease", "2")  # real stderr
        assert agent.returncode == 2, agent.stderr[-3000:]
        # No traceback of the agent's or orbax's. Asyncio may still print "Event loop is closed", and at
        # exit "coroutine ... was never awaited", for a write tensorstore completes after orbax closed its
        # loop: noise from below, printed after the error line at times (CI's rehearsal), left to report.
        assert "orbax" not in agent.stderr and "scaling/" not in agent.stderr, agent.stderr
        errors = [line for line in agent.stderr.splitlines() if line.startswith("scaling sweep: error: ")]
        assert len(errors) == 1, agent.stderr
        last = errors[0]
        # the fault as a run met it, or as the index met it first (SQLite: "disk I/O error")
        assert f"no space left on device; free space (or make the home writable), then `scaling sweep retry {sid}`" \
            in last or "cannot write the index" in last, last
        saved = {r: (checkpoint_steps(home, r) or [0])[-1] for r in runs}
        assert any(saved.values())  # the test's point: some member had saved before the disk filled

        os.remove(filler)  # first: even a read-only look at the index needs room for SQLite's shared memory
        rows = [row(home, r) for r in runs]
        for r in rows:  # none is `failed` while its own record says it only stopped
            said = (r.summary or {}).get("status")
            if r.status == "running":  # its release found the index full too: the lease lapses, it is taken over
                continue
            assert r.status in ("interrupted", "failed"), vars(r)  # (a lease left by a failed release lapses)
            assert r.status == "interrupted" or ("no space left" in r.reason and said in (None, "failed")), vars(r)
        assert any(r.status in ("failed", "running") for r in rows)

        time.sleep(2.5)  # any claim the full index kept lapses (--lease 2)
        assert main(["--home", home, "sweep", "retry", sid]) == 0
        out = capsys.readouterr()
        assert "requeued" in out.err + out.out
        assert all(row(home, r).status in ("pending", "interrupted", "running") for r in runs)
        assert main(["--home", home, "sweep", "agent", sid, "--pack", "3", "--quiet"]) == 0
        for run_id, loss in zip(runs, expected):
            r = row(home, run_id)
            assert r.status == "complete" and r.summary["eval_loss"] == pytest.approx(loss, abs=1e-6), vars(r)
            steps = _metrics_steps(home, run_id)  # each resumed from its last checkpoint, not from scratch
            assert not saved[run_id] or steps.count(1) == 1, steps
            # At most the row of the step whose save filled the disk is lost (torn there, healed on resume).
            assert set(range(1, max(steps) + 1)) - set(steps) <= {saved[run_id]}, steps
