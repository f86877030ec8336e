"""The lease heartbeat: one thread that renews every claim an agent or a Ray driver holds, each quarter
lease, with the run's latest progress (what `sweep status` shows). A claim that cannot be renewed was
taken over (its holder was suspended past its lease, and another took the run): it is marked lost and
no longer renewed, and its holder stops the run without recording anything of it."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass

from scaling.errors import UsageError
from scaling.runs import Fence, RunHome, queue


@dataclass
class Claim:
    """One claim the heartbeat renews. `lost` is set by the heartbeat (or by the holder, when the trainer
    found its fence moved on); `progress` is asked at each beat."""
    run_id: str
    fence: Fence
    progress: Callable[[], dict | None]
    lost: bool = False
    last_progress: dict | None = None  # what the latest beat renewed the claim with


class Heartbeat(threading.Thread):
    """Renews the claims added to it until stopped. Start it after adding the claims known at once (an
    agent's run or pack); add and remove claims while it runs (a Ray driver's tasks come and go)."""

    def __init__(self, home: RunHome, lease_s: float, name: str = "lease"):
        super().__init__(daemon=True, name=name)
        self.home, self.lease_s = home, lease_s
        self._claims: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._stop_event = threading.Event()

    def add(self, run_id: str, fence: Fence, progress: Callable[[], dict | None] = lambda: None) -> Claim:
        claim = Claim(run_id, fence, progress)
        with self._lock:
            self._claims[run_id] = claim
        return claim

    def remove(self, claim: Claim) -> bool:
        """Stop renewing `claim`; True if it was still held."""
        with self._lock:
            self._claims.pop(claim.run_id, None)
        return not claim.lost

    def run(self) -> None:
        while not self._stop_event.wait(self.lease_s / 4):
            self.beat()

    def beat(self) -> None:
        """Renew every held claim once."""
        with self._lock:
            held = [c for c in self._claims.values() if not c.lost]
        for claim in held:
            try:
                progress = claim.progress()
                if queue.renew(self.home, claim.run_id, claim.fence.agent, self.lease_s, progress,
                               token=claim.fence.token):
                    claim.last_progress = progress
                else:
                    claim.lost = True
            except (sqlite3.Error, UsageError):  # a busy, full or briefly unreadable index: try again next beat
                continue

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join()
