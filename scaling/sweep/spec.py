"""Sweep specs in W&B's sweep YAML format, checked against what the local engine can run.

The same spec file serves three engines: `wandb sweep` + `wandb agent` online (W&B's server chooses
points and the agent renders `command`), the local engine here (offline; grid and random only), and
SLURM through submitit. So the local engine accepts exactly the W&B keys it can honour and refuses the
others (e.g. `early_terminate`) instead of ignoring them.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass

from scaling.config import RunConfig, load_yaml
from scaling.errors import UsageError
from scaling.sweep.command import ARG_MACROS, EXAMPLE_COMMAND, OTHER_MACROS, render_command, train_overrides

METHODS = ("grid", "random")
# A sweep's runs (points times their seed replicates) are planned one by one at creation; past this many
# a typo (a 1e6-point grid, seeds: 100000000) would plan for hours, or exhaust memory, with nothing to show.
MAX_POINTS = 10_000
# Top-level keys the local engine honours (W&B's own, minus those below).
SPEC_KEYS = ("program", "method", "metric", "parameters", "command", "run_cap", "name", "description",
             "project", "entity", "seeds", "points")
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
    # Seed replicates per point (the local engine's extension of W&B's format; online, sweep a `seed`
    # parameter instead): `seeds_where` limits them to the points with those parameter values.
    seeds: int = 1
    seeds_where: dict | None = None
    # Listed configurations (the local engine's extension, for designs that are not a product, such as
    # an isoFLOP plan whose sizes differ per budget): each is combined with the grid of `parameters`.
    points: tuple[dict, ...] = ()
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
    names the key.

    Args:
        data: the spec as parsed YAML.
        where: the file's name, for messages.
    Returns:
        The SweepSpec.
    Raises:
        UsageError: the first thing wrong with the spec.
    """
    def fail(message: str):
        raise UsageError(f"{where}: {message}")

    if not isinstance(data, dict):
        fail("expected a mapping (method, parameters, command, ...)")
    for key in data:
        if key in WANDB_ONLY:
            fail(f"{key}: not supported by the local engine: it {WANDB_ONLY[key]}")
        if key not in SPEC_KEYS:
            fail(f"unknown key {key!r} (allowed: {', '.join(SPEC_KEYS)})")
    for key in ("name", "program", "project", "entity", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            fail(f"{key}: expected text, got {data[key]!r}")
    method = _method(data, fail)
    run_cap = _run_cap(data, method, fail)
    metric = _metric(data.get("metric"), fail)
    points = _listed_points(data.get("points"), method, fail)
    parsed = _parameters(data.get("parameters"), method, fail, optional=bool(points))
    clash = sorted({k for pt in points for k in pt} & {p.name for p in parsed})
    if clash:
        fail(f"points: {clash[0]!r} is also a parameter; give it in one place")
    command = _command(data, fail)
    seeds, seeds_where = _seeds(data.get("seeds"), parsed, fail, {k for pt in points for k in pt})
    spec = SweepSpec(method=method, parameters=parsed, command=command, name=data.get("name"),
                     program=data.get("program"), project=data.get("project"), metric=metric,
                     run_cap=run_cap, seeds=seeds, seeds_where=seeds_where, points=points, raw=data)
    try:
        train_overrides(render_command(spec, {}))
    except UsageError as err:
        fail(f"command: {err}")
    return spec


def _method(data: dict, fail) -> str:
    method = data.get("method")
    if method is None:
        fail(f"method: required ({' or '.join(METHODS)})")
    if method in METHOD_HINTS:
        fail(f"method: {method} {METHOD_HINTS[method]}")
    if method not in METHODS:
        fail(f"method: {method!r} is not a sweep method (allowed: {', '.join(METHODS)})")
    return method


def _run_cap(data: dict, method: str, fail) -> int | None:
    run_cap = data.get("run_cap")
    if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int) or run_cap < 1):
        fail(f"run_cap: expected a positive integer, got {run_cap!r}")
    if method == "random" and run_cap is None:
        fail("run_cap: required with method: random (how many points to draw; the local engine "
             "does not sample forever)")
    return run_cap


def _listed_points(value, method: str, fail) -> tuple[dict, ...]:
    """`points: [{key: value, ...}, ...]`: configurations listed one by one (grid only)."""
    if value is None:
        return ()
    if method != "grid":
        fail("points: only with method: grid (the listed points are run as given)")
    if not isinstance(value, list) or not value:
        fail(f"points: expected a non-empty list of mappings such as {{params: 2.0e+4, flops_budget: 1.0e+11}}, "
             f"got {value!r}")
    known = {f.name for f in dataclasses.fields(RunConfig)}
    out = []
    for i, point in enumerate(value):
        if not isinstance(point, dict) or not point:
            fail(f"points[{i}]: expected a mapping of key: value, got {point!r}")
        for key, v in point.items():
            if key in RESERVED:
                fail(f"points[{i}].{key}: set by the sweep engine ({RESERVED[key]}); remove it")
            if key not in known:
                fail(f"points[{i}].{key}: unknown key {key!r} (known keys: "
                     f"{', '.join(sorted(k for k in known if k not in RESERVED))})")
            _check_scalar(f"points[{i}].{key}", v, fail)
        out.append(dict(point))
    return tuple(out)


def _seeds(value, parameters: tuple[Parameter, ...], fail, listed: set = frozenset()) -> tuple[int, dict | None]:
    """`seeds: K`, or `seeds: {count: K, where: {key: value or [values]}}` for some points only."""
    if value is None:
        return 1, None
    count, where = (value.get("count"), value.get("where")) if isinstance(value, dict) else (value, None)
    if isinstance(value, dict):
        extra = sorted(set(value) - {"count", "where"})
        if extra:
            fail(f"seeds.{extra[0]}: unknown key (allowed: count, where)")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        fail(f"seeds: expected a positive number of replicates per point, or {{count: K, where: {{...}}}}, "
             f"got {count!r}")
    if count > MAX_POINTS:
        fail(f"seeds: {count:,} replicates per point; allowed: at most {MAX_POINTS:,} runs per sweep")
    if any(p.name == "seed" for p in parameters) or "seed" in listed:
        fail("seeds: the parameters already sweep `seed`; give one or the other")
    if where is not None:
        names = {p.name for p in parameters} | set(listed)
        if not isinstance(where, dict) or not where:
            fail(f"seeds.where: expected a mapping of parameter: value or [values], got {where!r}")
        for key in where:
            if key not in names:
                fail(f"seeds.where.{key}: not a parameter of this sweep (parameters: {', '.join(sorted(names))})")
        where = {k: list(v) if isinstance(v, list) else [v] for k, v in where.items()}
    return count, where


def _metric(metric, fail) -> dict | None:
    if metric is None:
        return None
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
    return metric


def _parameters(params, method: str, fail, optional: bool = False) -> tuple[Parameter, ...]:
    if optional and params is None:
        return ()
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
    return parsed


def _command(data: dict, fail) -> tuple[str, ...]:
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
    return command


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
            takes = ", ".join(required + tuple(optional)) or "no keys"
            fail(f"{where}.{key}: not used by distribution {dist} (it takes {takes})")
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
            if (not isinstance(probs, list) or len(probs) != len(values)
                    or not all(_number(p) and p >= 0 for p in probs)
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
