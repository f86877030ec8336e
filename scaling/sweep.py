"""Sweeps: specs in W&B's sweep YAML format -> run configs in the run home, and the local agent.

The same spec file serves three engines: `wandb sweep` + `wandb agent` online (W&B's server chooses
points and the agent renders `command`), the local engine here (offline; grid and random only), and
SLURM through submitit (local agents as a job array, see slurm.py). So the local engine accepts exactly
the W&B keys it can honour and refuses the others (e.g. `early_terminate`) instead of ignoring them.

A grid over `params` x `flops_budget` is an isoFLOP design: the trainer derives each run's D = C / 6N.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from scaling.config import RunConfig, load_yaml
from scaling.errors import UsageError

# ---- the spec ------------------------------------------------------------------------------------
METHODS = ("grid", "random")
# Top-level keys the local engine honours (W&B's own, minus those below).
SPEC_KEYS = ("program", "method", "metric", "parameters", "command", "run_cap", "name", "description",
             "project", "entity")
# W&B keys whose behaviour the local engine does not implement: refused, because ignoring them would
# run a different sweep than the file describes.
WANDB_ONLY = {
    "early_terminate": "stops runs early from the server (hyperband); run this spec with `wandb sweep` "
                       "and `wandb agent`, or remove the key",
    "controller": "selects W&B's local controller; the local engine is its own controller",
    "job": "is for W&B Launch",
    "image_uri": "is for W&B Launch",
}
METHOD_HINTS = {
    "bayes": "needs W&B's server (Bayesian optimization over finished runs); the local engine runs grid "
             "and random: use `wandb sweep` and `wandb agent` for bayes",
    "custom": "needs W&B's server",
}
# Set per run by the engine; a spec that sets them would give every run the same id or group.
RESERVED = {"run_id": "each run's id", "sweep": "the sweep id"}

# distribution -> (required keys, {optional key: default})
DISTRIBUTIONS = {
    "constant": (("value",), {}),
    "categorical": (("values",), {"probabilities": None}),
    "int_uniform": (("min", "max"), {}),
    "uniform": (("min", "max"), {}),
    "q_uniform": (("min", "max"), {"q": 1.0}),
    "log_uniform": (("min", "max"), {}),
    "log_uniform_values": (("min", "max"), {}),
    "q_log_uniform": (("min", "max"), {"q": 1.0}),
    "q_log_uniform_values": (("min", "max"), {"q": 1.0}),
    "inv_log_uniform": (("min", "max"), {}),
    "inv_log_uniform_values": (("min", "max"), {}),
    "normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "log_normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_log_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "beta": ((), {"a": 1.0, "b": 1.0}),
    "q_beta": ((), {"a": 1.0, "b": 1.0, "q": 1.0}),
}
# W&B's agent expands these tokens of `command`; scaling train reads key=value (leading -- stripped).
ARG_MACROS = ("args", "args_no_hyphens")
OTHER_MACROS = ("env", "interpreter", "program")
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
EXAMPLE_COMMAND = "[${env}, ${interpreter}, -m, scaling.cli, train, ${args_no_hyphens}]"


@dataclass(frozen=True)
class Parameter:
    name: str
    distribution: str
    settings: dict  # value | values (+probabilities) | min, max, mu, sigma, q, a, b

    @property
    def discrete(self) -> list | None:
        if self.distribution == "constant":
            return [self.settings["value"]]
        if self.distribution == "categorical":
            return list(self.settings["values"])
        return None


@dataclass(frozen=True)
class SweepSpec:
    method: str
    parameters: tuple[Parameter, ...]
    command: tuple[str, ...]
    name: str | None = None
    program: str | None = None
    project: str | None = None
    metric: dict | None = None
    run_cap: int | None = None
    raw: dict = dataclasses.field(default_factory=dict, compare=False)


def load_spec(path: str) -> SweepSpec:
    data = load_yaml(path)
    if not data:
        raise UsageError(f"{path}: empty sweep spec (expected method, parameters and command)")
    spec = parse_spec(data, where=path)
    if spec.name is None:
        stem = os.path.splitext(os.path.basename(path))[0]
        spec = dataclasses.replace(spec, name=stem)
    return spec


def parse_spec(data: dict, where: str = "spec") -> SweepSpec:
    """Check a W&B sweep spec against what the local engine can run; every refusal is one line that
    names the key."""
    def fail(message: str):
        raise UsageError(f"{where}: {message}")

    if not isinstance(data, dict):
        fail("expected a mapping (method, parameters, command, ...)")
    for key in data:
        if key in WANDB_ONLY:
            fail(f"{key}: not supported by the local engine: it {WANDB_ONLY[key]}")
        if key not in SPEC_KEYS:
            fail(f"unknown key {key!r} (allowed: {', '.join(SPEC_KEYS)})")

    method = data.get("method")
    if method is None:
        fail(f"method: required ({' or '.join(METHODS)})")
    if method in METHOD_HINTS:
        fail(f"method: {method} {METHOD_HINTS[method]}")
    if method not in METHODS:
        fail(f"method: {method!r} is not a sweep method (allowed: {', '.join(METHODS)})")

    for key in ("name", "program", "project", "entity", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            fail(f"{key}: expected text, got {data[key]!r}")

    run_cap = data.get("run_cap")
    if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int) or run_cap < 1):
        fail(f"run_cap: expected a positive integer, got {run_cap!r}")
    if method == "random" and run_cap is None:
        fail("run_cap: required with method: random (how many points to draw; the local engine "
             "does not sample forever)")

    metric = data.get("metric")
    if metric is not None:
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
            fail("metric: expected {name: METRIC, goal: minimize|maximize}")
        extra = sorted(set(metric) - {"name", "goal", "target"})
        if extra:
            fail(f"metric: unknown key {extra[0]!r} (allowed: name, goal)")
        if metric.get("goal", "minimize") not in ("minimize", "maximize"):
            fail(f"metric.goal: {metric['goal']!r} (allowed: minimize, maximize)")
        if "target" in metric:
            fail("metric.target: not supported by the local engine (it stops the sweep when a run "
                 "reaches the target, which only W&B's server does); remove it or use `wandb sweep`")

    params = data.get("parameters")
    if not isinstance(params, dict) or not params:
        fail("parameters: required, a mapping of key: {value | values | distribution}")
    parsed = tuple(_parse_parameter(name, entry, fail) for name, entry in params.items())
    if method == "grid":
        for p in parsed:
            if p.discrete is None:
                fail(f"parameters.{p.name}: method: grid needs value or values, not distribution "
                     f"{p.distribution} (use method: random with run_cap)")
            if p.settings.get("probabilities") is not None:
                fail(f"parameters.{p.name}.probabilities: only used by method: random")

    command = data.get("command")
    if command is None:
        fail(f"command: required, e.g. {EXAMPLE_COMMAND} (W&B's default command would call the "
             "program without the train subcommand)")
    if not isinstance(command, list) or not command or not all(isinstance(c, (str, int, float)) for c in command):
        fail(f"command: expected a list of words, e.g. {EXAMPLE_COMMAND}")
    command = tuple(str(c) for c in command)
    macros = [c[2:-1] for c in command if c.startswith("${") and c.endswith("}")]
    for m in macros:
        if m not in ARG_MACROS + OTHER_MACROS:
            fail(f"command: ${{{m}}} is not supported: scaling train reads key=value "
                 "(use ${args_no_hyphens})")
    if sum(m in ARG_MACROS for m in macros) != 1:
        fail("command: needs exactly one of ${args_no_hyphens} or ${args} to pass the run's values")
    if "program" in macros and not data.get("program"):
        fail("command: uses ${program} but program is not set")
    spec = SweepSpec(method=method, parameters=parsed, command=command, name=data.get("name"),
                     program=data.get("program"), project=data.get("project"), metric=metric,
                     run_cap=run_cap, raw=data)
    try:
        train_overrides(render_command(spec, {}))
    except UsageError as err:
        fail(f"command: {err}")
    return spec


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _parse_parameter(name: str, entry, fail) -> Parameter:
    where = f"parameters.{name}"
    if name in RESERVED:
        fail(f"{where}: set by the sweep engine ({RESERVED[name]}); remove it")
    if name not in {f.name for f in dataclasses.fields(RunConfig)}:
        known = ", ".join(f.name for f in dataclasses.fields(RunConfig) if f.name not in RESERVED)
        fail(f"{where}: unknown key {name!r} (known keys: {known})")
    if not isinstance(entry, dict):
        fail(f"{where}: expected a mapping such as {{values: [...]}} or {{value: X}}, got {entry!r}")
    if "parameters" in entry:
        fail(f"{where}.parameters: nested parameters are not supported (run configs are flat)")
    dist = entry.get("distribution")
    if dist is None:  # W&B infers the distribution from the keys given
        if "value" in entry:
            dist = "constant"
        elif "values" in entry:
            dist = "categorical"
        elif "min" in entry and "max" in entry:
            dist = "int_uniform" if all(isinstance(entry[k], int) and not isinstance(entry[k], bool)
                                        for k in ("min", "max")) else "uniform"
        else:
            fail(f"{where}: give value, values, or a distribution with its bounds")
    if dist not in DISTRIBUTIONS:
        fail(f"{where}.distribution: {dist!r} is unknown (allowed: {', '.join(DISTRIBUTIONS)})")
    required, optional = DISTRIBUTIONS[dist]
    allowed = set(required) | set(optional) | {"distribution"}
    for key in entry:
        if key not in allowed:
            fail(f"{where}.{key}: not used by distribution {dist} (it takes {', '.join(required + tuple(optional)) or 'no keys'})")
    for key in required:
        if key not in entry:
            fail(f"{where}.{key}: required by distribution {dist}")
    settings = {k: entry.get(k, default) for k, default in optional.items()}
    settings.update({k: entry[k] for k in required})

    if dist == "constant":
        _check_scalar(f"{where}.value", settings["value"], fail)
    elif dist == "categorical":
        values = settings["values"]
        if not isinstance(values, list):
            fail(f"{where}.values: expected a list, got {values!r}")
        if not values:
            fail(f"{where}.values: empty list (nothing to sweep)")
        for i, v in enumerate(values):
            _check_scalar(f"{where}.values[{i}]", v, fail)
        probs = settings.get("probabilities")
        if probs is not None:
            if (not isinstance(probs, list) or len(probs) != len(values) or not all(_number(p) and p >= 0 for p in probs)
                    or not math.isclose(sum(probs), 1.0, rel_tol=1e-6)):
                fail(f"{where}.probabilities: expected {len(values)} non-negative numbers summing to 1")
    else:
        for key in set(required) | set(optional):
            value = settings[key]
            if not _number(value):
                hint = (" (YAML reads 1e-4 as text: write 1.0e-4)" if isinstance(value, str)
                        and re.fullmatch(r"[-+]?[\d.]+[eE][-+]?\d+", value) else "")
                fail(f"{where}.{key}: expected a number, got {value!r}{hint}")
        if "min" in settings and not settings["min"] < settings["max"]:
            fail(f"{where}: min={settings['min']} must be less than max={settings['max']}")
        if dist == "int_uniform" and not all(float(settings[k]).is_integer() for k in ("min", "max")):
            fail(f"{where}: int_uniform needs integer min and max")
        if dist.endswith("_values") and settings["min"] <= 0:
            fail(f"{where}.min: {dist} needs positive bounds (they are values, not exponents)")
        for key in ("sigma", "q", "a", "b"):
            if key in settings and settings[key] <= 0:
                fail(f"{where}.{key}: must be positive")
    return Parameter(name, dist, settings)


def _check_scalar(where: str, value, fail) -> None:
    if value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value)):
        return
    fail(f"{where}: expected a number, text or true/false, got {value!r}")


# ---- points -------------------------------------------------------------------------------------
def _sample(p: Parameter, rng):
    s = p.settings
    d = p.distribution
    if d == "constant":
        return s["value"]
    if d == "categorical":
        probs = s.get("probabilities")
        return s["values"][int(rng.choice(len(s["values"]), p=probs))]
    if d == "int_uniform":
        return int(rng.integers(int(s["min"]), int(s["max"]) + 1))
    if d in ("normal", "q_normal", "log_normal", "q_log_normal"):
        x = rng.normal(s["mu"], s["sigma"])
        x = math.exp(x) if "log" in d else x
    elif d in ("beta", "q_beta"):
        x = rng.beta(s["a"], s["b"])
    elif d in ("uniform", "q_uniform"):
        x = rng.uniform(s["min"], s["max"])
    elif d in ("log_uniform", "q_log_uniform"):  # bounds are natural-log exponents
        x = math.exp(rng.uniform(s["min"], s["max"]))
    elif d in ("log_uniform_values", "q_log_uniform_values"):
        x = math.exp(rng.uniform(math.log(s["min"]), math.log(s["max"])))
    elif d == "inv_log_uniform":  # X with log(1/X) uniform in [min, max]
        x = math.exp(-rng.uniform(s["min"], s["max"]))
    elif d == "inv_log_uniform_values":  # 1/X log-uniform between 1/max and 1/min
        x = 1.0 / math.exp(rng.uniform(math.log(1 / s["max"]), math.log(1 / s["min"])))
    else:  # pragma: no cover - DISTRIBUTIONS and this table are kept in step
        raise AssertionError(d)
    if d.startswith("q_"):
        x = round(x / s["q"]) * s["q"]
    return float(x)


def spec_seed(spec: SweepSpec) -> int:
    """Random sweeps draw from a seed derived from the spec's content: the same file gives the same
    points, so a rebuilt index re-derives the same queue."""
    text = json.dumps(spec.raw, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def enumerate_points(spec: SweepSpec) -> list[dict]:
    """The sweep's points as {key: value}: the grid's product in spec order (the first key varies
    slowest; duplicates dropped; cut at run_cap), or run_cap seeded random draws."""
    if spec.method == "grid":
        names = [p.name for p in spec.parameters]
        points, seen = [], set()
        for combo in itertools.product(*(p.discrete for p in spec.parameters)):
            key = json.dumps(combo, default=str)
            if key not in seen:
                seen.add(key)
                points.append(dict(zip(names, combo)))
        return points[:spec.run_cap] if spec.run_cap else points
    import numpy as np

    rng = np.random.default_rng(spec_seed(spec))
    return [{p.name: _sample(p, rng) for p in spec.parameters} for _ in range(spec.run_cap)]


# ---- the command W&B's agent runs ------------------------------------------------------------------
def render_command(spec: SweepSpec, values: dict, *, interpreter: str = "python", env: str = "/usr/bin/env") -> list[str]:
    """The argv `wandb agent` builds for one run: ${envvar:X} substituted inside words, whole-word
    macros expanded, values written as Python's str() of what the server sent (as W&B does)."""
    args = [f"{k}={v}" for k, v in values.items()]
    expand = {"env": [env], "interpreter": [interpreter], "program": [spec.program or ""],
              "args": ["--" + a for a in args], "args_no_hyphens": args}
    argv = []
    for word in spec.command:
        word = _ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), word)
        if word.startswith("${") and word.endswith("}"):
            argv += expand[word[2:-1]]
        else:
            argv.append(word)
    return argv


def train_overrides(argv: list[str]) -> list[str]:
    """The key=value items of a rendered command, after checking that it is a `scaling train` call
    (the console script, `python -m scaling.cli`, or the scaling/cli.py program)."""
    if "train" not in argv:
        raise UsageError(f"{' '.join(argv)!r} does not call `scaling train`; expected e.g. {EXAMPLE_COMMAND}")
    i = argv.index("train")
    head = argv[:i]
    entry = any(os.path.basename(w) == "scaling" or w.endswith(os.path.join("scaling", "cli.py")) for w in head) or any(
        a == "-m" and b == "scaling.cli" for a, b in zip(head, head[1:]))
    if not entry:
        raise UsageError(f"{' '.join(head)!r} is not scaling's CLI; expected e.g. {EXAMPLE_COMMAND}")
    items = argv[i + 1:]
    if any(w.startswith("-") and "=" not in w for w in items):
        raise UsageError(f"{' '.join(items)!r}: options after train must be key=value")
    return items


# ---- registering a sweep ---------------------------------------------------------------------------
def new_sweep_id(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name or "sweep").strip("-.")[:32] or "sweep"
    return f"{slug}-{secrets.token_hex(3)}"


def plan_sweep_runs(spec: SweepSpec, sweep_id: str) -> list[dict]:
    """Each point as a run row: its config (validated; a bad type refuses the whole spec) and, if the
    trainer can run it, its plan (N, D, C, steps); a point it cannot run is `skipped` with the reason."""
    from scaling.train import plan_run

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
        except UsageError as err:
            row.update(status="skipped", reason=str(err))
        else:
            row.update(status="pending", plan={
                "params": plan.shape.params, "tokens": plan.tokens, "flops": plan.flops,
                "flops_model": plan.flops_model, "steps": plan.steps, "batch_size": plan.batch_size,
                "lr": plan.lr, "shape": plan.shape.describe()})
        runs.append(row)
    return runs


def _point_text(point: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items())


def duplicate_notes(runs: list[dict]) -> list[str]:
    """Points that resolve to the same model and length (e.g. two params targets the recipe rounds to
    one shape) would waste compute and put two copies of one point into a fit."""
    seen, notes = {}, []
    for r in runs:
        if r["status"] != "pending":
            continue
        rest = {k: v for k, v in r["config"].items() if k not in ("run_id", "params", "d_model", "tokens", "flops_budget")}
        key = json.dumps([r["plan"]["shape"], r["plan"]["tokens"], r["plan"]["batch_size"], rest], sort_keys=True, default=str)
        if key in seen:
            notes.append(f"{seen[key]['run_id']} ({_point_text(seen[key]['point'])}) and {r['run_id']} "
                         f"({_point_text(r['point'])}) are the same run: {r['plan']['shape']}, D={r['plan']['tokens']:,}")
        else:
            seen[key] = r
    return notes


def create_sweep(home, path: str) -> dict:
    """Register a spec's points in the run home; returns {sweep_id, name, runs, notes}. Any refusal
    happens before anything is written."""
    from scaling.store import RunHome

    home = home if isinstance(home, RunHome) else RunHome(home)
    spec = load_spec(path)
    sweep_id = new_sweep_id(spec.name)
    try:
        runs = plan_sweep_runs(spec, sweep_id)
    except UsageError as err:
        raise UsageError(f"{path}: {err}") from None
    if all(r["status"] == "skipped" for r in runs):
        raise UsageError(f"{path}: no point can run; e.g. {_point_text(runs[0]['point'])}: {runs[0]['reason']}")
    notes = duplicate_notes(runs)
    if spec.method == "grid" and spec.run_cap and spec.run_cap < _grid_size(spec):
        notes.append(f"run_cap={spec.run_cap} keeps the first {spec.run_cap} of {_grid_size(spec)} grid points")
    home.register_sweep(sweep_id, spec.name, spec.raw, [{k: v for k, v in r.items() if k != "point"} for r in runs])
    return {"sweep_id": sweep_id, "name": spec.name, "method": spec.method, "runs": runs, "notes": notes}


def _grid_size(spec: SweepSpec) -> int:
    return math.prod(len(p.discrete) for p in spec.parameters)


def require_sweep(home, sweep_id: str) -> dict:
    found = home.sweep(sweep_id)
    if found is None:
        known = [s["sweep_id"] for s in home.sweeps()]
        hint = f" (known: {', '.join(known[-8:])})" if known else " (create one: scaling sweep create SPEC.yaml)"
        raise UsageError(f"no sweep {sweep_id!r} in {home.root}{hint}")
    return found


# ---- status -------------------------------------------------------------------------------------------
def sweep_status(home, sweep_id: str) -> dict:
    """Counts by status, the runs in flight, and an ETA: the remaining runs' planned model FLOPs at the
    seconds per FLOP this sweep's finished runs took, shared among the agents holding live leases."""
    from scaling.store import RunHome

    home = home if isinstance(home, RunHome) else RunHome(home)
    info = require_sweep(home, sweep_id)
    runs = home.sweep_runs(sweep_id)
    now = time.time()
    counts = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    live = [r for r in runs if r["status"] == "running" and r["lease_until"] and r["lease_until"] > now]
    live_ids = {r["run_id"] for r in live}
    agents = {r["claimed_by"] for r in live}
    done = [r for r in runs if r["status"] in ("complete", "diverged") and r["summary"]]
    spent = sum(r["summary"].get("wall_s") or 0 for r in done)
    work = sum(r["summary"].get("flops_model") or 0 for r in done)
    remaining = 0.0
    for r in runs:
        planned = (r["plan"] or {}).get("flops_model") or 0
        if r["run_id"] in live_ids:
            p = r["progress"] or {}
            remaining += planned * (1 - p.get("step", 0) / max(1, p.get("steps") or 1))
        elif r["status"] in ("pending", "interrupted", "running"):
            remaining += planned
    eta = remaining * spent / work / max(1, len(agents)) if work > 0 else None
    current = [{"run_id": r["run_id"], "agent": r["claimed_by"], "attempts": r["attempts"],
                "lease_left_s": r["lease_until"] - now, **(r["progress"] or {})} for r in live]
    stale = [r["run_id"] for r in runs if r["status"] == "running" and r["run_id"] not in live_ids]
    problems = [(r["run_id"], r["status"], r["reason"]) for r in runs if r["status"] in ("failed", "skipped")]
    return {"sweep_id": sweep_id, "name": info["name"], "created": info["created"], "total": len(runs),
            "counts": counts, "current": current, "agents": len(agents), "stale": stale, "eta_s": eta,
            "problems": problems}


# ---- the local agent ------------------------------------------------------------------------------------
def agent_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class _Heartbeat(threading.Thread):
    """Renews a claim's lease every quarter lease while the run lives, with the run's latest progress;
    notices when the claim was lost (the lease lapsed, e.g. the process was suspended, and another
    agent took the run)."""

    def __init__(self, home, run_id: str, agent: str, lease_s: float, progress: Callable[[], dict | None]):
        super().__init__(daemon=True, name=f"lease-{run_id}")
        self.home, self.run_id, self.agent, self.lease_s, self.progress = home, run_id, agent, lease_s, progress
        self.lost = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        import sqlite3

        while not self._stop_event.wait(self.lease_s / 4):
            try:
                if not self.home.renew(self.run_id, self.agent, self.lease_s, self.progress()):
                    self.lost = True
                    return
            except sqlite3.Error:  # a busy or briefly unreadable database: try again next beat
                continue

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


class Agent:
    """Claims runs of one sweep and trains them until none is left (or `count` are done).

    In-process by default, so runs of one shape reuse compiled code (train.compiled_fns is cached by
    shape); `isolate` runs each in its own `python -m scaling.cli train` process instead (a crash or a
    leak stays in one run). While other agents hold live claims the agent waits (`wait`), so that the
    run of an agent that dies is taken over once its lease lapses; SIGTERM finishes the current run's
    checkpoint, releases it, and stops. `on_event(kind, **data)` feeds a display."""

    def __init__(self, home, sweep_id: str, *, lease_s: float = 60.0, isolate: bool = False,
                 overrides: dict | None = None, wait: bool = True, max_attempts: int = 3,
                 max_failures_in_a_row: int = 3, on_event: Callable | None = None):
        from scaling.store import RunHome

        if not lease_s > 0:
            raise UsageError(f"--lease {lease_s}: must be positive seconds")
        self.home = home if isinstance(home, RunHome) else RunHome(home)
        require_sweep(self.home, sweep_id)
        RunConfig.from_dict({"d_model": 16, "tokens": 1, **(overrides or {})})  # refuse bad overrides now
        self.sweep_id, self.lease_s, self.isolate = sweep_id, lease_s, isolate
        self.overrides, self.wait, self.max_attempts = dict(overrides or {}), wait, max_attempts
        self.max_failures_in_a_row = max_failures_in_a_row
        self.on_event = on_event or (lambda kind, **data: None)
        self.name = agent_name()
        self.stop_requested = False
        self.results: list[dict] = []

    # -- the loop
    def run(self, count: int | None = None) -> list[dict]:
        previous = self._install_sigterm()
        failures = 0
        try:
            while not self.stop_requested and (count is None or len(self.results) < count):
                row = self.home.claim(self.sweep_id, self.name, self.lease_s, self.max_attempts)
                if row is None:
                    counts = self.home.sweep_counts(self.sweep_id)
                    busy = counts.get("running", 0)
                    if self.wait and busy:
                        self.on_event("waiting", running=busy)
                        time.sleep(min(5.0, self.lease_s / 2))
                        continue
                    break
                result = self._run_one(row)
                self.results.append(result)
                failures = failures + 1 if result["status"] == "failed" else 0
                if failures >= self.max_failures_in_a_row:
                    self.on_event("stopped", reason=f"{failures} runs in a row failed")
                    break
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return self.results

    def _install_sigterm(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            self.stop_requested = True

        return signal.signal(signal.SIGTERM, handler)

    def _progress_event(self, state: dict) -> None:
        self.on_event("progress", run_id=state["run_id"], **{k: state.get(k) for k in (
            "step", "steps", "loss", "eval_loss", "tokens_per_s")})

    def _run_one(self, row: dict) -> dict:
        run_id = row["run_id"]
        t_claim = time.perf_counter()
        state = {"run_id": run_id, "steps": (row.get("plan") or {}).get("steps")}
        counts = self.home.sweep_counts(self.sweep_id)
        self.on_event("claimed", run=row, done=_done(counts), total=_total(counts))
        progress = lambda: {k: state[k] for k in ("step", "steps", "loss", "eval_loss") if k in state} or None
        beat = _Heartbeat(self.home, run_id, self.name, self.lease_s, progress)
        beat.start()
        # Anything not caught below (SystemExit, KeyboardInterrupt outside the training loop) releases
        # the run as resumable; only an error of the run itself marks it failed.
        status, reason, summary = None, None, None
        try:
            config = {**row["config"], **self.overrides}
            if self.isolate:
                summary, reason = self._train_subprocess(run_id, config, state, beat)
            else:
                summary = self._train_in_process(config, state, beat)
            status = summary["status"] if summary else "failed"
        except UsageError as err:
            status, reason = "failed", str(err)
        except Exception as err:  # a bug or a broken environment: record it, keep the sweep going
            traceback.print_exc(file=sys.stderr)
            status, reason = "failed", f"{type(err).__name__}: {err}"
        finally:
            beat.stop()
            if not beat.lost:
                # Failed runs record why; any other status was written by the trainer itself.
                self.home.release(run_id, self.name, "failed" if status == "failed" else None, reason)
        if status == "interrupted" and not beat.lost:
            self.stop_requested = True
        counts = self.home.sweep_counts(self.sweep_id)
        result = {"run_id": run_id, "status": "lost" if beat.lost else status, "reason": reason,
                  "summary": summary, "resumed": row.get("resumed", False),
                  "wall_s": time.perf_counter() - t_claim,
                  "startup_s": state["t_first"] - t_claim if "t_first" in state else None}
        self.on_event("finished", **result, done=_done(counts), total=_total(counts))
        return result

    def _train_in_process(self, config: dict, state: dict, beat: _Heartbeat) -> dict:
        from scaling.train import Interrupted, plan_run, train_run

        plan = plan_run(RunConfig.from_dict(config))

        def on_progress(p) -> None:
            state.setdefault("t_first", time.perf_counter())
            state.update(step=p.step, steps=p.steps, loss=p.loss, eval_loss=p.eval_loss, tokens_per_s=p.tokens_per_s)
            self._progress_event(state)
            if beat.lost:
                raise Interrupted("lease lost: another agent took this run")
            if self.stop_requested:
                raise Interrupted("agent asked to stop")

        return train_run(plan, self.home, on_progress=on_progress)

    def _train_subprocess(self, run_id: str, config: dict, state: dict, beat: _Heartbeat):
        from scaling.track import read_json

        run_dir = self.home.run_dir(run_id)
        os.makedirs(run_dir, exist_ok=True)
        argv = [sys.executable, "-m", "scaling.cli", "--home", self.home.root, "train", "--quiet",
                *(f"{k}={v}" for k, v in config.items() if v is not None)]
        metrics = os.path.join(run_dir, "metrics.jsonl")
        log_path = os.path.join(run_dir, "train.log")
        summary_path = os.path.join(run_dir, "summary.json")
        started = time.time()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            signalled = False
            while True:
                try:
                    if proc.wait(timeout=1.0) is not None:
                        break
                except subprocess.TimeoutExpired:
                    pass
                except KeyboardInterrupt:  # the terminal's Ctrl-C reached the child too; let it checkpoint
                    self.stop_requested = True
                last = _last_line(metrics)
                if last and last.get("step") != state.get("step"):
                    state.setdefault("t_first", time.perf_counter())
                    state.update(step=last["step"], loss=last.get("loss"), eval_loss=last.get("eval_loss"),
                                 tokens_per_s=last.get("tokens_per_s"))
                    self._progress_event(state)
                if (beat.lost or self.stop_requested) and not signalled:
                    proc.send_signal(signal.SIGTERM)  # the trainer checkpoints and exits as interrupted
                    signalled = True
        # A summary from an earlier attempt must not pass for this one's.
        fresh = os.path.exists(summary_path) and os.path.getmtime(summary_path) >= started - 1
        summary = read_json(summary_path) if fresh else None
        if summary and summary.get("run_id") == run_id and proc.returncode in (0, 1, 130):
            return summary, None
        return None, f"scaling train exited {proc.returncode}: {_last_text_line(log_path)}"


def _last_line(path: str) -> dict | None:
    """The last complete JSON line of a growing metrics file, reading only its tail."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            lines = fh.read().split(b"\n")
    except OSError:
        return None
    for line in reversed(lines[:-1] if lines and lines[-1] else lines):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def _last_text_line(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            lines = [l.strip() for l in fh if l.strip()]
        return lines[-1][:300] if lines else "(no output)"
    except OSError:
        return "(no log)"


def _done(counts: dict) -> int:
    return sum(counts.get(s, 0) for s in ("complete", "diverged", "failed"))


def _total(counts: dict) -> int:
    return sum(n for s, n in counts.items() if s != "skipped")
