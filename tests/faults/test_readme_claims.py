"""The README's reliability claims that had no test, each shown with real processes, signals and files:
a torn metrics line is healed on resume; write_atomic keeps the old file when a write dies midway; a run
whose agents die three times is marked failed; a SLURM array task at its time limit checkpoints and
releases its run as interrupted. (SIGTERM to `scaling train`: test_sigterm.py; `--isolate` exactly once:
test_isolate.py.)"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from faultlib import ROOT, env, kill, last_step, make_sweep, row, run, start, summary, tmpfs, wait_for

from scaling.runs import read_metrics

TORN = b'{"step": 99, "tokens": 12672, "lo'


@pytest.mark.slow
def test_a_torn_metrics_line_is_healed_on_resume(home, tiny):
    args = [*tiny, "tokens=12800", "checkpoint_every=5", "wandb=off", "run_id=torn", "--quiet"]  # 100 steps
    proc = start(home, "train", *args)
    wait_for(lambda: last_step(home, "torn") >= 40, 300, "step 40", alive=proc)
    kill(proc, signal.SIGKILL)
    proc.wait()
    path = os.path.join(home, "torn", "metrics.jsonl")
    with open(path, "ab") as fh:  # what a crash in the middle of a write leaves behind
        fh.write(TORN)
    assert run(home, "train", *args).returncode == 0
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    assert lines[-1] == b""  # ends with a newline
    broken = [line for line in lines[:-1] if not _parses(line)]
    assert broken == [TORN]  # the torn line stands alone; the rows after it are whole
    assert read_metrics(path)[-1]["step"] == 100 and summary(home, "torn")["status"] == "complete"


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


WRITER = """
import sys
from scaling.runs.files import write_atomic
try:
    write_atomic(sys.argv[1], "new " * int(sys.argv[2]))
except Exception as err:
    print(type(err).__name__, err, file=sys.stderr)
    sys.exit(2)
"""


def test_write_atomic_keeps_the_old_file_when_the_disk_fills_midway(tmp_path):
    with tmpfs(tmp_path / "disk", "256k") as disk:
        path = os.path.join(disk, "summary.json")
        with open(path, "w") as fh:
            fh.write('{"old": true}\n')
        out = subprocess.run([sys.executable, "-c", WRITER, path, str(200_000)], capture_output=True, text=True,
                             env=env(), cwd=ROOT, timeout=120)
        assert out.returncode == 2 and "StorageError" in out.stderr and "no space left" in out.stderr
        with open(path) as fh:
            assert fh.read() == '{"old": true}\n'
        assert os.listdir(disk) == ["summary.json"]  # and the half-written temporary file is gone


def test_write_atomic_keeps_the_old_file_when_the_writer_is_killed_midway(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text('{"old": true}\n')
    for _ in range(5):  # the kill must land while the new file is being written
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(60_000_000)], env=env(), cwd=ROOT)
        tmp = wait_for(lambda p=proc: _temporary(tmp_path) or p.poll() is not None, 120, "the temporary file",
                       every=0.001)
        kill(proc, signal.SIGKILL)
        proc.wait()
        assert path.read_text() == '{"old": true}\n'
        if isinstance(tmp, list) and proc.returncode == -signal.SIGKILL:
            break
        path.write_text('{"old": true}\n')
    else:
        pytest.fail("never caught the writer in the middle of its write")


def _temporary(folder) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(".tmp-")]


@pytest.mark.slow
def test_a_run_whose_agent_dies_three_times_is_marked_failed(tmp_path, home):
    sid = make_sweep(tmp_path, home, {"tokens": {"value": 200 * 2 * 16}, "checkpoint_every": {"value": 50}},
                     name="deaths")
    run_id = f"{sid}-000"
    for death in (1, 2, 3):
        agent = start(home, "sweep", "agent", sid, "--quiet", "--lease", "1")
        wait_for(lambda n=death: (r := row(home, run_id)) is not None and r.status == "running" and r.attempts == n,
                 300, f"claim number {death}", alive=agent)
        kill(agent, signal.SIGKILL)  # as the out-of-memory killer would
        agent.wait()
        time.sleep(1.2)  # the lease lapses
    last = start(home, "sweep", "agent", sid, "--quiet", "--lease", "1")
    out, err = last.communicate(timeout=300)
    assert last.returncode == 0, err[-3000:]
    r = row(home, run_id)
    assert r.status == "failed" and r.attempts == 3
    assert r.reason == "its agent died 3 times while running it (out of memory?)"
    status = run(home, "sweep", "status", sid)
    assert "failed  " + run_id in status.stdout and "died 3 times" in status.stdout


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGUSR2, signal.SIGUSR1])
def test_a_slurm_array_task_at_its_time_limit_checkpoints_and_releases_its_run_as_interrupted(tmp_path, home,
                                                                                              signum):
    pytest.importorskip("submitit")
    sid = make_sweep(tmp_path, home, {"d_model": {"value": 32}, "seq_len": {"value": 32}, "batch_size": {"value": 8},
                                      "tokens": {"value": 400 * 8 * 32}, "n_evals": {"value": 2}}, name="slurm")
    run_id = f"{sid}-000"
    # The submitting command returns at once; the array task lives on (its output must not be our pipe).
    submitted = start(home, "sweep", "slurm", sid, "--executor", "local", "--parallel", "1", "--lease", "30",
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert submitted.wait(timeout=120) == 0
    task = wait_for(lambda: _task_process(os.path.join(home, ".slurm")), 300, "the array task's process")
    wait_for(lambda: last_step(home, run_id) >= 40, 300, "step 40")
    os.kill(task, signum)  # what SLURM sends before the time limit (submitit asks for USR2)
    wait_for(lambda: not os.path.exists(f"/proc/{task}") or _zombie(task), 120, "the task to end")
    s, r = summary(home, run_id), row(home, run_id)
    assert s["status"] == "interrupted" and 40 <= s["step"] < 400
    assert (r.status, r.lease_until) == ("interrupted", None)  # released, not failed, and not held
    assert os.path.isdir(os.path.join(home, run_id, "checkpoints", str(s["step"])))
    resumed = run(home, "sweep", "agent", sid, "--quiet")
    assert resumed.returncode == 0 and summary(home, run_id)["status"] == "complete"
    assert row(home, run_id).attempts == 2


def _task_process(folder: str) -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "submitit.core._submit" in cmd and folder in cmd and not _zombie(int(entry)):
                return int(entry)
    return None


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
