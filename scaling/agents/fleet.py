"""A node's devices shared among agents: one `scaling sweep agent --devices ...` process per group of K
devices, supervised until all are done. A stop (SIGTERM) is passed on to every agent, which checkpoints
its run and releases it."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from scaling import preempt
from scaling.errors import UsageError
from scaling.runs import RunHome


@dataclass(frozen=True)
class AgentProcess:
    devices: tuple[int, ...]
    returncode: int


def device_groups(n_devices: int, per_run: int) -> list[tuple[int, ...]]:
    """Consecutive groups of `per_run` local device indices; devices left over stay idle."""
    if per_run < 1 or per_run > n_devices:
        raise UsageError(f"--devices-per-run {per_run}: allowed 1..{n_devices} (this machine has {n_devices})")
    return [tuple(range(i, i + per_run)) for i in range(0, n_devices - per_run + 1, per_run)]


def run_fleet(home: RunHome, sweep_id: str, groups: list[tuple[int, ...]], agent_args: list[str]) -> list[AgentProcess]:
    """Start one agent per device group and wait for them all; returns each one's exit code."""
    procs = []
    for group in groups:
        argv = [sys.executable, "-m", "scaling.cli", "--home", home.root, "sweep", "agent", sweep_id,
                "--devices", ",".join(map(str, group)), "--quiet", *agent_args]
        procs.append((group, subprocess.Popen(argv)))
    with preempt.sigterm_requests_stop():
        forwarded = False
        while any(p.poll() is None for _, p in procs):
            if preempt.stop_requested() and not forwarded:
                for _, p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
                forwarded = True
            time.sleep(0.5)
    return [AgentProcess(group, p.returncode) for group, p in procs]
