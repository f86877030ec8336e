"""One run in its own `python -m scaling.cli train` process: a crash or a leak stays in that run. The
parent watches the child's metrics for progress and forwards a stop as SIGTERM, which the trainer
turns into a checkpoint and `interrupted`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from scaling import preempt
from scaling.runs import RunHome
from scaling.runs.files import last_metrics_row, last_text_line


def train_isolated(home: RunHome, run_id: str, config: dict, *, on_metrics: Callable[[dict], None],
                   should_stop: Callable[[], bool]) -> tuple[dict | None, str | None]:
    """Run the trainer as a child process; returns (summary, None) or (None, why it failed)."""
    files = home.files(run_id)
    os.makedirs(files.path, exist_ok=True)
    argv = [sys.executable, "-m", "scaling.cli", "--home", home.root, "train", "--quiet",
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
    if summary and summary.get("run_id") == run_id and proc.returncode in (0, 1, 130):
        return summary, None
    return None, f"scaling train exited {proc.returncode}: {last_text_line(files.train_log)}"
