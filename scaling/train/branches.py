"""Cooldown branches (Hägele et al. 2024): a WSD run with `cooldowns=D1,D2,...` trains the stable phase
once; at each branch's decay point its checkpoint seeds a branch run `<run_id>-cd<tokens>` that decays to
its own length. With the warmup fixed in tokens, a branch is the same computation as a WSD run of its
length trained from scratch (tests/train/test_branches.py pins that), for the cost of its decay alone.

A branch is seeded by one atomic rename: a folder holding the parent's checkpoint at the branch's decay
point, the parent's metrics up to it, and the branch's config.yaml appears as the branch's run directory,
or nothing does. The trainer knows none of this: the caller passes a `Branching` as train_run's
checkpoint hook, and says who trains the branches. A sweep's agent (or the trainer it starts) passes one
that queues each branch for the agents the moment it is seeded, so branches train in parallel with their
parent; `scaling train` passes one that only seeds, and trains the branches after the parent
(`train_branches`)."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import uuid
from collections.abc import Callable

from scaling.runs import RunDir, RunHome
from scaling.runs.files import CHECKPOINTS, METRICS, write_atomic
from scaling.train.plan import RunPlan, plan_run
from scaling.train.record import run_record

# Config keys a branch inherits unchanged (beyond the ones it sets): everything but its length, its id and
# its own name.
_OWN_KEYS = ("tokens", "flops_budget", "cooldowns", "run_id", "name", "branch_of")


def branch_plans(plan: RunPlan) -> list[RunPlan]:
    """The plans of a run's cooldown branches, shortest first (none without `cooldowns`). A length that
    rounds to the run's own steps is the run itself and gets no branch; two that round alike get one.
    A length within the warmup gives a plain run (`branch_of` unset): it cannot start from the parent."""
    cfg = plan.config
    if cfg.cooldowns is None:
        return []
    inherited = {k: v for k, v in cfg.to_dict().items() if k not in _OWN_KEYS}
    # Pinned, so the branch resolves exactly as its parent did even where the recipe would guess.
    inherited.update(batch_size=plan.batch_size, lr=plan.lr, warmup_tokens=cfg.warmup_tokens)
    out, seen = [], {plan.steps}
    for length in cfg.cooldown_lengths:
        branch = plan_run(cfg.replace(**{**{k: None for k in _OWN_KEYS}, **inherited, cfg.length.key: length,
                                         "branch_of": plan.run_id, "run_id": plan.run_id}))
        if branch.steps in seen:
            continue
        seen.add(branch.steps)
        if branch.warmup_steps != plan.warmup_steps:
            # Shorter than the shared warmup (clamped to its own length): no checkpoint of the parent is
            # a state of this run, so it is a plain WSD run of that length, trained from scratch.
            branch = plan_run(branch.config.replace(branch_of=None))
        run_id = f"{plan.run_id}-cd{branch.tokens}"
        out.append(dataclasses.replace(branch, run_id=run_id, config=branch.config.replace(run_id=run_id)))
    return out


class Branching:
    """train_run's checkpoint hook for cooldown branches: a checkpoint at each branch's decay point, from
    which the branch is seeded (each once). With `queue`, each branch of a run in a sweep joins the sweep's
    queue as soon as it can start: when seeded, or when the run opens for one that shares nothing with it."""

    def __init__(self, queue: bool = False):
        self.queue = queue
        self._plans: dict[str, list[RunPlan]] = {}

    def branches(self, plan: RunPlan) -> list[RunPlan]:
        if plan.run_id not in self._plans:
            self._plans[plan.run_id] = branch_plans(plan)
        return self._plans[plan.run_id]

    def steps(self, plan: RunPlan) -> frozenset[int]:
        return frozenset(b.stable_end for b in self.branches(plan) if b.config.branch_of is not None)

    def opened(self, plan: RunPlan, home: RunHome, files: RunDir, step: int) -> None:
        if self.queue and plan.config.sweep:
            for branch in self.branches(plan):
                if branch.config.branch_of is None:  # nothing to wait for: the agents may start it now
                    queue_branch(home, branch, after=plan.run_id)
        self.saved(plan, home, files, step)  # a crash between a cut's save and its seeding

    def saved(self, plan: RunPlan, home: RunHome, files: RunDir, step: int) -> None:
        """Seed the branches whose decay starts at or before `step` (from checkpoints already there)."""
        for branch in self.branches(plan):
            cut = branch.stable_end
            if branch.config.branch_of is None or cut > step or not os.path.isdir(
                    os.path.join(files.checkpoints, str(cut))):
                continue
            if seed_branch(files.checkpoints, branch, home, files.read_metrics()) and (
                    self.queue and branch.config.sweep):
                queue_branch(home, branch, after=plan.run_id)


def seed_branch(parent_checkpoints: str, branch: RunPlan, home: RunHome, parent_metrics: list[dict]) -> bool:
    """Make the branch's run directory from the parent's checkpoint at the branch's decay point; False when
    it exists already (seeded before, by this writer or another) or that checkpoint is not there."""
    step = branch.stable_end
    source = os.path.join(parent_checkpoints, str(step))
    target = home.run_dir(branch.run_id)
    if os.path.exists(target) or not os.path.isdir(source):
        return False
    # Staged under a hidden folder of the home: `reindex` reads */config.yaml, and a seed cut short by a
    # crash must not look like a run. The folder is named for its writer, so the next seed removes what
    # a killed one left (a copy of a checkpoint each) and never a live writer's.
    discard_dead_seeds(home)
    staging = os.path.join(home.root, SEEDING, f"{branch.run_id}@{_writer()}-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(source, os.path.join(staging, CHECKPOINTS, str(step)))
        rows = [r for r in parent_metrics if isinstance(r.get("step"), int) and r["step"] <= step]
        write_atomic(os.path.join(staging, METRICS), "".join(json.dumps(r) + "\n" for r in rows))
        RunDir(staging).write_record(run_record(branch))  # as the trainer writes it at start
        os.rename(staging, target)  # fails if another writer's seed landed first: theirs serves
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if os.path.isdir(target):
            return False
        raise
    return True


SEEDING = ".seeding"


def _writer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def discard_dead_seeds(home: RunHome) -> None:
    """Remove the staging folders of seeds cut short by processes of this host that are gone (and any
    not named for a writer). Another host's stays: its process cannot be checked from here."""
    folder = os.path.join(home.root, SEEDING)
    host = socket.gethostname()
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        writer = name.rpartition("@")[2].rpartition("-")[0]  # host-pid (hosts may hold dashes)
        wrote_host, _, pid = writer.rpartition("-")
        if "@" not in name or not pid.isdigit() or (wrote_host == host and not _alive(int(pid))):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def queue_branch(home: RunHome, branch: RunPlan, after: str) -> None:
    """Put a seeded branch in its sweep's queue, right after its parent `after`, for the agents to claim."""
    home.add_run(branch.config.sweep, branch.run_id, _given(branch), branch.queue_row(), after=after)


def _given(branch: RunPlan) -> dict:
    """The branch's config with defaults left out, as a sweep row holds a point's config."""
    defaults = type(branch.config).__dataclass_fields__
    return {k: v for k, v in branch.config.to_dict().items()
            if v is not None and (k not in defaults or defaults[k].default != v)}


def train_branches(plan: RunPlan, home: RunHome | str | None, train: Callable[[RunPlan], dict]) -> list[dict]:
    """Train a finished run's branches one after another (`train` is train_run with the caller's options):
    what the parent's process does when no agents share the work (it trained with `Branching()`). Each
    resumes from its seed."""
    return [train(branch) for branch in branch_plans(plan)]
