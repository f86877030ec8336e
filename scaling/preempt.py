"""Preemption: SIGTERM (a scheduler's or an agent's request to stop) becomes a flag that the training
loop reads between steps, so the signal never lands inside a checkpoint save or a database write. The
loop then checkpoints, records `interrupted` and returns; the run resumes later from that checkpoint.

One flag per process: an agent and the trainer it runs in-process share it, so one SIGTERM stops both
at the next safe point.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_requested = threading.Event()
_depth = 0


def request_stop() -> None:
    """Ask the running loop (and the agent around it) to stop at the next safe point."""
    _requested.set()


def stop_requested() -> bool:
    return _requested.is_set()


def _handler(signum, frame) -> None:
    _requested.set()


@contextmanager
def sigterm_requests_stop(*extra_signals: int):
    """While inside, SIGTERM (and `extra_signals`) set the stop flag instead of killing the process.

    The outermost entry clears a stale flag from an earlier, finished session. Off the main thread
    (where Python cannot install handlers) only `request_stop` sets the flag.
    """
    global _depth
    if _depth == 0:
        _requested.clear()
    main = threading.current_thread() is threading.main_thread()
    previous = {}
    if main:
        for sig in (signal.SIGTERM, *extra_signals):
            previous[sig] = signal.signal(sig, _handler)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for sig, old in previous.items():
            signal.signal(sig, old)
