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
    devices: tuple[int, ...] | None  # None: an agent sharing every device (CPU cores) with the others
    returncode: int


def device_groups(n_devices: int, per_run: int, agents: int | None = None,
                  platform: str = "gpu") -> list[tuple[int, ...] | None]:
    """What each agent gets: consecutive groups of `per_run` local device indices (the first `agents` of
    them when given; devices left over stay idle). A CPU that XLA shows as one device for all its cores is
    shared instead: `agents` processes (default 1), which keeps the cores small models leave idle busy."""
    if platform == "cpu" and n_devices == 1:
        if per_run != 1:
            raise UsageError(f"--devices-per-run {per_run}: a CPU has one device; use --agents N to share its cores")
        return [None] * (agents or 1)
    if per_run < 1 or per_run > n_devices:
        raise UsageError(f"--devices-per-run {per_run}: allowed 1..{n_devices} (this machine has {n_devices})")
    groups = [tuple(range(i, i + per_run)) for i in range(0, n_devices - per_run + 1, per_run)]
    if agents is not None and agents > len(groups):
        raise UsageError(f"--agents {agents}: allowed 1..{len(groups)} ({n_devices} devices, {per_run} per run)")
    return groups[:agents] if agents else groups


def run_fleet(home: RunHome, sweep_id: str, groups: list[tuple[int, ...] | None], agent_args: list[str],
              on_tick=None, tick_s: float = 2.0) -> list[AgentProcess]:
    """Start one agent per group and wait for them all; returns each one's exit code. `on_tick()` is
    called every `tick_s` while they run, and once after (a display reads the index then)."""
    procs = []
    for group in groups:
        argv = [sys.executable, "-m", "scaling.cli", "--home", home.root, "sweep", "agent", sweep_id, "--quiet",
                *(["--devices", ",".join(map(str, group))] if group is not None else []), *agent_args]
        procs.append((group, subprocess.Popen(argv)))
    try:
        _supervise(procs, on_tick, tick_s)
    except KeyboardInterrupt:  # Ctrl-C reached the agents too; wait for them to checkpoint and release
        for _, p in procs:
            p.wait()
        raise
    return [AgentProcess(group, p.returncode) for group, p in procs]


def _supervise(procs: list, on_tick, tick_s: float) -> None:
    with preempt.sigterm_requests_stop():
        forwarded, next_tick = False, time.monotonic()
        while any(p.poll() is None for _, p in procs):
            if preempt.stop_requested() and not forwarded:
                for _, p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
                forwarded = True
            if on_tick is not None and time.monotonic() >= next_tick:
                on_tick()
                next_tick = time.monotonic() + tick_s
            time.sleep(0.5)
    if on_tick is not None:
        on_tick()
