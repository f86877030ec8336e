"""Registering a sweep: each point planned by the trainer (or skipped with the reason) and queued in
the run home in one transaction. A grid over `params` x `flops_budget` is an isoFLOP design: the
trainer derives each run's D = C / 6N."""
from __future__ import annotations

import json
import math
import os
import re
import secrets

from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.runs import RunHome
from scaling.sweep.points import enumerate_points
from scaling.sweep.spec import MAX_POINTS, SweepSpec, load_spec
from scaling.train import plan_run
from scaling.train.limits import check_plan, host_memory


def new_sweep_id(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name or "sweep").strip("-.")[:32] or "sweep"
    return f"{slug}-{secrets.token_hex(3)}"


def plan_sweep_runs(spec: SweepSpec, sweep_id: str) -> list[dict]:
    """Each point as a run row: its config (validated; a bad type refuses the whole spec) and, if the
    trainer can run it, its plan (N, D, C, steps); a point it cannot run is `skipped` with the reason."""
    points = enumerate_points(spec)
    width = max(3, len(str(len(points) - 1)))
    runs = []
    for i, point in enumerate(points):
        run_id = f"{sweep_id}-{i:0{width}d}"
        config = dict(point)
        if spec.project and "wandb_project" not in config:
            config["wandb_project"] = spec.project
        config.update(sweep=sweep_id, run_id=run_id)
        try:
            cfg = RunConfig.from_dict(config)
        except UsageError as err:
            raise UsageError(f"parameters: {err} (at point {_point_text(point)})") from None
        row = {"run_id": run_id, "config": config, "point": point}
        try:
            plan = plan_run(cfg)
            check_plan(plan, available=(math.inf, "any memory"))  # what no machine could run: skipped
        except UsageError as err:
            row.update(status="skipped", reason=str(err))
        else:
            try:  # memory is the agents' devices' to judge (a login node plans for GPUs): said, not skipped
                check_plan(plan, available=host_memory())
            except UsageError as err:
                row["memory"] = str(err)
            if cfg.warmup_tokens is None and plan.config.warmup_tokens is not None:
                # The planner fixed the warmup of a run with cooldown branches: the row keeps that value, so
                # the config the agent trains and the row it is checked against agree.
                config["warmup_tokens"] = plan.config.warmup_tokens
            if plan.config.recipe_sha256 is not None:
                # The recipe's fit JSONs as planned: an agent refuses the run if they were edited since,
                # rather than train an lr or batch the queue's plan does not show.
                config["recipe_sha256"] = plan.config.recipe_sha256
            row.update(status="pending", plan=plan.queue_row())
        runs.append(row)
    return runs


def _point_text(point: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items())


# Config keys that do not change what a run computes once its plan (shape, tokens, batch) is fixed.
SIZE_KEYS = ("run_id", "params", "d_model", "tokens", "flops_budget")
BOOKKEEPING_KEYS = ("sweep", "wandb_project")


def _run_key(config: dict, plan: dict, ignore: tuple = SIZE_KEYS) -> str:
    rest = {k: v for k, v in config.items() if k not in ignore}
    return json.dumps([plan["shape"], plan["tokens"], plan["batch_size"], rest], sort_keys=True, default=str)


def reuse_finished(home: RunHome, runs: list[dict]) -> int:
    """Mark each pending point identical to a completed run of the home (same model, tokens, batch and
    settings, whichever sweep ran it) as skipped, naming that run: it is not trained twice, and its result
    is already in the home's runs table. Returns how many points were reused."""
    if not os.path.exists(home.db_path):
        return 0
    ignore = SIZE_KEYS + BOOKKEEPING_KEYS
    done = {}
    for row in home.read("SELECT run_id, config, plan FROM runs WHERE status='complete' AND plan IS NOT NULL"):
        plan = json.loads(row["plan"]) if row["plan"] else None
        if plan and all(k in plan for k in ("shape", "tokens", "batch_size")):
            done.setdefault(_run_key(json.loads(row["config"] or "{}"), plan, ignore), row["run_id"])
    reused = 0
    for r in runs:
        if r["status"] != "pending":
            continue
        found = done.get(_run_key(r["config"], r["plan"], ignore))
        if found is not None:
            r.update(status="skipped", reason=f"reuses finished run {found} ({r['plan']['shape']}, "
                                              f"D={r['plan']['tokens']:,}): not queued again")
            r.pop("plan")
            reused += 1
    return reused


def duplicate_notes(runs: list[dict]) -> list[str]:
    """Points that resolve to the same model and length (e.g. two params targets the recipe rounds to
    one shape) would waste compute and put two copies of one point into a fit."""
    seen, notes = {}, []
    for r in runs:
        if r["status"] != "pending":
            continue
        plan = r["plan"]
        key = _run_key(r["config"], plan)
        if key in seen:
            notes.append(f"{seen[key]['run_id']} ({_point_text(seen[key]['point'])}) and {r['run_id']} "
                         f"({_point_text(r['point'])}) are the same run: {plan['shape']}, D={plan['tokens']:,}")
        else:
            seen[key] = r
    return notes


def create_sweep(home: RunHome | str | None, path: str) -> dict:
    """Register a spec's points in the run home; any refusal happens before anything is written.

    Args:
        home: the run home.
        path: a sweep spec in W&B's YAML format.
    Returns:
        {sweep_id, name, method, runs (each with run_id, status, config, plan or reason, point), notes}.
    """
    home = RunHome.of(home)
    spec = load_spec(path)
    size = spec.run_cap if spec.method == "random" else min(_grid_size(spec), spec.run_cap or math.inf)
    if size > MAX_POINTS:
        raise UsageError(f"{path}: {size:,} points; allowed: at most {MAX_POINTS:,} per sweep "
                         "(set run_cap, or split the grid into several sweeps)")
    home.check_folder()
    sweep_id = new_sweep_id(spec.name)
    try:
        runs = plan_sweep_runs(spec, sweep_id)
    except UsageError as err:
        raise UsageError(f"{path}: {err}") from None
    resolved = resolve_validates(home, runs, path)
    reused = reuse_finished(home, runs)
    if reused == len(runs):
        raise UsageError(f"{path}: every point is a finished run of {home.root} (e.g. {runs[0]['reason']}); "
                         "nothing to queue: fit the runs there")
    if all(r["status"] == "skipped" for r in runs):
        raise UsageError(f"{path}: no point can run; e.g. {_point_text(runs[0]['point'])}: {runs[0]['reason']}")
    notes = resolved + duplicate_notes(runs) + memory_notes(runs)
    if reused:
        notes.append(f"{reused} point(s) reuse finished runs; {sum(r['status'] == 'pending' for r in runs)} "
                     "new run(s) queued")
    if spec.method == "grid" and spec.run_cap and spec.run_cap < _grid_size(spec):
        notes.append(f"run_cap={spec.run_cap} keeps the first {spec.run_cap} of {_grid_size(spec)} grid points")
    home.register_sweep(sweep_id, spec.name, spec.raw,
                        [{k: v for k, v in r.items() if k not in ("point", "memory")} for r in runs])
    return {"sweep_id": sweep_id, "name": spec.name, "method": spec.method, "runs": runs, "notes": notes}


def memory_notes(runs: list[dict]) -> list[str]:
    """One note for the queued points this machine could not train for memory: queued all the same, since
    an agent checks its own devices before it trains (and records `failed`, with the reason, on one too
    small), and a sweep for GPUs is often registered on a login node without any."""
    over = [r for r in runs if r.get("memory") and r["status"] == "pending"]
    if not over:
        return []
    return [f"{len(over)} queued point(s) need more memory than this machine has; they are for agents on larger "
            f"devices (an agent here would record them failed), e.g. {over[0]['run_id']}: {over[0]['memory']}"]


def resolve_validates(home: RunHome, runs: list[dict], path: str) -> list[str]:
    """A ladder point's `validates` may give the checked sweep's name (sweeps/ladder.yaml says `validates:
    demo`, the ids being per home): each run's config gets the id of the home's newest sweep of that name, so
    the runs table names the runs it checks. Returns a note per name resolved; refuses a name or id the home
    does not have, before anything is written."""
    given = sorted({r["config"]["validates"] for r in runs if r["config"].get("validates")})
    if not given:
        return []
    known = home.sweeps() if os.path.exists(home.db_path) else []
    ids, notes, to_id = {s["sweep_id"] for s in known}, [], {}
    for value in given:
        named = [s["sweep_id"] for s in known if s["name"] == value]
        if value in ids:
            to_id[value] = value
        elif named:
            to_id[value] = named[-1]
            notes.append(f"validates: {value} is sweep {named[-1]}"
                         + (f" (the newest of {len(named)} sweeps of that name)" if len(named) > 1 else ""))
        else:
            listed = ", ".join(s["sweep_id"] for s in known[-8:]) or "none"
            raise UsageError(f"{path}: validates={value}: no sweep of that id or name in {home.root} "
                             f"(known: {listed}); a ladder run checks a sweep that ran there")
    for r in runs:
        if r["config"].get("validates"):
            r["config"]["validates"] = to_id[r["config"]["validates"]]
    return notes


def _grid_size(spec: SweepSpec) -> int:
    return max(1, len(spec.points)) * math.prod(len(p.discrete) for p in spec.parameters)


def require_sweep(home: RunHome, sweep_id: str) -> dict:
    """The registered sweep, or a UsageError that lists the known ones."""
    found = home.sweep(sweep_id)
    if found is None:
        known = [s["sweep_id"] for s in home.sweeps()]
        hint = f" (known: {', '.join(known[-8:])})" if known else " (create one: scaling sweep create SPEC.yaml)"
        raise UsageError(f"no sweep {sweep_id!r} in {home.root}{hint}")
    return found


def find_or_create_sweep(home: RunHome, spec_path: str) -> tuple[str, bool]:
    """The sweep registered from this same spec before (so a rerun continues it), or a new one;
    returns (sweep_id, created)."""
    spec = load_spec(spec_path)
    for found in reversed(home.sweeps() if os.path.exists(home.db_path) else []):
        if found["name"] == spec.name and home.sweep(found["sweep_id"])["spec"] == spec.raw:
            return found["sweep_id"], False
    return create_sweep(home, spec_path)["sweep_id"], True
