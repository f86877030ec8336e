"""One run in its own `python -m scaling.cli train` process: a crash or a leak stays in that run. The
parent watches the child's metrics for progress and forwards a stop as SIGTERM, which the trainer
turns into a checkpoint and `interrupted`.

The child dies with its agent: Linux delivers SIGTERM to it when the agent exits, even by SIGKILL
(prctl PR_SET_PDEATHSIG, which the child sets on itself first thing, `die_with_parent`), so a killed
agent never leaves a trainer behind to race the agent that takes its run over. The child also carries
the claim's fencing token and checks it before every write, which covers what the signal cannot (another
OS, a lost race).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from scaling import preempt
from scaling.runs import Fence, RunHome
from scaling.runs.files import last_metrics_row, last_text_line

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int) -> None:
    """Called by the child trainer as it starts: SIGTERM (a checkpoint, then exit) when the agent that
    started it exits. Set in the child itself rather than in a preexec function, which is unsafe in an
    agent with a heartbeat thread; if the agent died before this call, the child stops at once."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def train_isolated(home: RunHome, run_id: str, config: dict, fence: Fence | None = None, *,
                   on_metrics: Callable[[dict], None],
                   should_stop: Callable[[], bool]) -> tuple[dict | None, str | None]:
    """Run the trainer as a child process; returns (summary, None) or (None, why it failed)."""
    files = home.files(run_id)
    os.makedirs(files.path, exist_ok=True)
    claim = ["--claimed-by", fence.agent, "--token", str(fence.token)] if fence is not None else []
    argv = [sys.executable, "-m", "scaling.cli", "--home", home.root, "train", "--quiet", *claim,
            "--die-with-parent", str(os.getpid()),
            *(f"{k}={v}" for k, v in config.items() if v is not None)]
    started = time.time()
    last_step = None
    with open(files.train_log, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        signalled = False
        while True:
            try:
                if proc.wait(timeout=1.0) is not None:
                    break
            except subprocess.TimeoutExpired:
                pass
            except KeyboardInterrupt:  # the terminal's Ctrl-C reached the child too; let it checkpoint
                preempt.request_stop()
            row = last_metrics_row(files.metrics)
            if row and row.get("step") != last_step:
                last_step = row.get("step")
                on_metrics(row)
            if (should_stop() or preempt.stop_requested()) and not signalled:
                proc.send_signal(signal.SIGTERM)
                signalled = True
    # A summary from an earlier attempt must not pass for this one's.
    fresh = os.path.exists(files.summary) and os.path.getmtime(files.summary) >= started - 1
    summary = files.read_summary() if fresh else None
    if summary and summary.get("run_id") == run_id and proc.returncode in (0, 1, 2, 130):
        return summary, summary.get("reason")
    return None, f"scaling train exited {proc.returncode}: {last_text_line(files.train_log)}"
