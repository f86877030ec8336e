"""Every write of one run's state in one place, each checked against the run's claim.

A trainer started by an agent holds a claim with a fencing token (index.py). Before it appends a metrics
row, saves a checkpoint or records its end, it shows the token; once another agent has taken the run
over (this one was suspended past its lease, or its agent died and the lease lapsed) the token is stale
and the write is refused with `LeaseLost`. The summary and the index row are written together inside
one SQLite write transaction that checks the token first, so even a writer stopped between the check
and the write cannot replace what the new holder recorded.

And a finished result is never replaced by less: a summary that is complete with a finite eval loss is
not overwritten by one that is not.
"""
from __future__ import annotations

import math

from scaling.runs.files import LocalTracker, RunDir
from scaling.runs.records import Fence, LeaseLost
from scaling.runs.store import RunStore


def is_result(summary: dict | None) -> bool:
    """A finished run's result: status complete and a finite final eval loss."""
    loss = (summary or {}).get("eval_loss")
    return (bool(summary) and summary.get("status") == "complete" and isinstance(loss, (int, float))
            and not isinstance(loss, bool) and math.isfinite(loss))


class RunWriter:
    """The trackers of one run (its directory first, then W&B), with the run's row in the index and the
    claim's fence checked before each write. Used as the training loop's tracker."""

    def __init__(self, home: RunStore, run_id: str, trackers: list, *, fence: Fence | None = None,
                 sweep_id: str | None = None, index: bool = True):
        self.home, self.run_id, self.fence, self.sweep_id, self.index = home, run_id, fence, sweep_id, index
        self.local = [t for t in trackers if isinstance(t, LocalTracker)]
        self.others = [t for t in trackers if not isinstance(t, LocalTracker)]
        self.config: dict = {}
        self.lost = False

    @property
    def files(self) -> RunDir:
        return self.home.files(self.run_id)

    def check(self) -> None:
        """Raise LeaseLost (and remember it) when the claim was taken over."""
        if self.lost or not self.home.owns(self.run_id, self.fence):
            self.lost = True
            raise LeaseLost(f"run {self.run_id}: {self.fence} was taken over by another agent")

    def start(self, record: dict) -> None:
        self.check()
        self.config = record["config"]
        for t in self.local + self.others:
            t.start(record)
        if self.index and not self.home.record_state(self.run_id, "running", self.config, sweep_id=self.sweep_id,
                                                     fence=self.fence):
            self.lost = True
            raise LeaseLost(f"run {self.run_id}: {self.fence} was taken over by another agent")

    def log(self, row: dict) -> None:
        self.check()
        for t in self.local + self.others:
            t.log(row)

    def finish(self, summary: dict, reason: str | None = None) -> dict:
        """Record the run's end: summary.json and the index row together, if the fence still holds; returns
        what is recorded (the stored result when it is better than `summary`). Raises LeaseLost otherwise."""
        kept = self.files.read_summary()
        if is_result(kept) and not is_result(summary):
            summary = kept  # never replace a finished result by less
        if reason and summary.get("status") != "complete":
            summary = {**summary, "reason": reason}

        def write() -> None:
            for t in self.local:
                t.finish(summary)

        if self.index:
            if not self.home.record_state(self.run_id, summary["status"], self.config, summary,
                                          sweep_id=self.sweep_id, reason=summary.get("reason"), fence=self.fence,
                                          write=write):
                self.lost = True
                self.abandon()
                raise LeaseLost(f"run {self.run_id}: {self.fence} was taken over by another agent")
        else:
            write()
        for t in self.others:
            t.finish(summary)
        return summary

    def abandon(self) -> None:
        """Close the run's files without recording anything (its claim was taken over)."""
        for t in self.local:
            t.close()
        for t in self.others:
            try:
                t.finish({"status": "lost"})
            except Exception:  # noqa: BLE001 - a back end's own trouble must not mask the lost claim
                pass
        self.others = []
