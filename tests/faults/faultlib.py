"""Real processes, real signals, real files: what the fault tests share."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import yaml

from scaling.runs import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMAND = ["${env}", "${interpreter}", "-m", "scaling.cli", "train", "${args_no_hyphens}"]
# One shape and one seed for every run of a sweep, so an agent compiles once (see tests/sweep).
TINY_SWEEP = {"d_model": {"value": 16}, "seq_len": {"value": 16}, "batch_size": {"value": 2},
              "corpus": {"value": "synthetic"}, "n_evals": {"value": 1}, "eval_tokens": {"value": 64},
              "wandb": {"value": "off"}}


def env() -> dict:
    """The environment of a child `scaling` process: this checkout first on the path, W&B offline."""
    out = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), WANDB_MODE="offline",
               WANDB_SILENT="true", PYTHONUNBUFFERED="1")
    out.pop("WANDB_API_KEY", None)
    return out


def start(home: str, *args: str, stdout=subprocess.PIPE, stderr=subprocess.PIPE) -> subprocess.Popen:
    """`scaling --home HOME ARGS...` as a child process."""
    return subprocess.Popen([sys.executable, "-m", "scaling.cli", "--home", home, *args], stdout=stdout,
                            stderr=stderr, text=True, env=env(), cwd=ROOT)


def run(home: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaling.cli", "--home", home, *args], capture_output=True,
                          text=True, env=env(), cwd=ROOT, timeout=timeout)


def wait_for(predicate, timeout: float, what: str, every: float = 0.02, alive: subprocess.Popen | None = None):
    """Poll until `predicate()` is truthy (and return it); fail naming `what` after `timeout` seconds, or
    as soon as the process `alive` has exited."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            out, err = alive.communicate()
            pytest.fail(f"process exited {alive.returncode} while waiting for {what}: {err[-3000:]}")
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def last_step(home: str, run_id: str) -> int:
    rows = read_metrics(os.path.join(home, run_id, "metrics.jsonl"))
    return rows[-1]["step"] if rows else 0


def summary(home: str, run_id: str) -> dict | None:
    try:
        with open(os.path.join(home, run_id, "summary.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def checkpoint_steps(home: str, run_id: str) -> list[int]:
    folder = os.path.join(home, run_id, "checkpoints")
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(folder) else []


def row(home: str, run_id: str) -> SimpleNamespace | None:
    """A run's row of the index, read with sqlite3 itself (not through the code under test)."""
    path = os.path.join(home, "scaling.db")
    if not os.path.exists(path):
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    conn.row_factory = sqlite3.Row
    try:
        found = conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
    finally:
        conn.close()
    if found is None:
        return None
    values = dict(found)
    values["summary"] = json.loads(values["summary"]) if values.get("summary") else None
    return SimpleNamespace(**values)


def make_sweep(tmp_path, home: str, parameters: dict, name: str = "t") -> str:
    from scaling import sweep

    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "method": "grid", "parameters": {**TINY_SWEEP, **parameters},
                                    "command": COMMAND}))
    return sweep.create_sweep(home, str(path))["sweep_id"]


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill(proc: subprocess.Popen | int, sig=signal.SIGKILL) -> None:
    pid = proc if isinstance(proc, int) else proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@contextlib.contextmanager
def tmpfs(path, size: str):
    """A small RAM file system at `path` (root only), for a disk that fills up or turns read-only."""
    os.makedirs(path, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path, mode: str) -> None:
    """Make a mounted tmpfs read-only (`ro`) or writable again (`rw`)."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True)


def tree(root) -> dict[str, int]:
    """Every file and folder under root with its size (folders: -1): to show that nothing was written."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = -1
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = os.path.getsize(p)
    return out
