"""A watcher beside a `scaling sweep ray` driver that started Ray on its own machine: when the driver is
gone, however it went (SIGKILL included), it ends the Ray processes the driver left behind.

Ray ties its head processes (gcs_server, raylet) to the driver, but the agents raylet starts
(ray::DashboardAgent, ray::RuntimeEnvAgent) outlive a killed driver by a minute or more, and a driver
killed while Ray starts can leave more. The driver starts this watcher before `ray.init` and holds the
pipe on its stdin; the watcher learns the driver's Ray descendants twice a second, and when the pipe
closes (the driver exited or died) sends each one still running SIGTERM, then SIGKILL after GRACE_S.

Run as a script (`python ray_reaper.py DRIVER_PID`): it imports only the standard library, so it starts
in milliseconds and holds no JAX. Linux only (it reads /proc); elsewhere it waits and does nothing.
"""
from __future__ import annotations

import os
import select
import signal
import sys
import time

POLL_S = 0.5
GRACE_S = 3.0


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()  # the name, in (), may hold spaces
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":  # a zombie has ended; only its parent's wait is missing
        return None
    return int(fields[1]), int(fields[19])  # /proc/PID/stat fields 4 (ppid) and 22 (starttime)


def _is_ray(pid: int) -> bool:
    """Ray's programs run from its package folder; its Python workers and agents rename themselves ray::."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
    except OSError:
        return False
    return cmd.startswith(b"ray::") or b"/ray/" in cmd


def ray_descendants(root: int) -> dict[int, int]:
    """The Ray processes under `root` (children, theirs, ...) as {pid: start time}."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            children.setdefault(found[0], []).append((int(entry), found[1]))
    out, todo = {}, [root]
    while todo:
        for pid, start in children.get(todo.pop(), ()):
            if pid not in out:
                out[pid] = start
                todo.append(pid)
    return {pid: start for pid, start in out.items() if pid != os.getpid() and _is_ray(pid)}


def end(processes: dict[int, int], grace_s: float = GRACE_S) -> None:
    """SIGTERM each process still running (the same one: its start time matches), SIGKILL after grace_s."""
    def running():
        return [pid for pid, start in processes.items() if (_stat(pid) or (0, None))[1] == start]

    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        for pid in running():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait_s
        while running() and time.monotonic() < deadline:
            time.sleep(0.1)


def watch(driver: int, stdin: int = 0) -> None:
    """Learn the driver's Ray processes until `stdin` reaches its end, then end the ones still running."""
    known: dict[int, int] = {}
    while True:
        ready, _, _ = select.select([stdin], [], [], POLL_S)
        if ready and not os.read(stdin, 4096):
            break
        if os.path.isdir("/proc"):
            known.update(ray_descendants(driver))
    end(known)


if __name__ == "__main__":
    # Ctrl-C reaches the whole foreground process group, this watcher with the driver; a stop meant for
    # the driver must not end the watcher before the driver has gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    watch(int(sys.argv[1]))
