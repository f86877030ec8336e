"""The ceiling MFU is measured against: this machine's matmul FLOP/s (measured, cached), or a stated
peak for accelerators whose dense bf16 peak is published."""
from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp

# Dense bf16 peaks (FLOP/s) from the vendors' datasheets; used only on accelerators.
STATED_PEAKS = {
    "NVIDIA H100": 989e12, "NVIDIA H200": 989e12, "NVIDIA A100": 312e12, "TPU v4": 275e12,
    "TPU v5 lite": 197e12, "TPU v5p": 459e12,
}


def _cache_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "scaling", "ceiling.json")


def measure_matmul_flops(n: int = 2048, seconds: float = 1.0, dtype: str = "float32") -> float:
    """Best-of-repeats FLOP/s of an n x n matmul under jit: the highest rate this backend reaches."""
    a = jnp.ones((n, n), dtype=dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        f(a).block_until_ready()
        best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def device_key() -> str:
    dev = jax.devices()[0]
    return f"{dev.platform}:{dev.device_kind}:{os.cpu_count()}:jax{jax.__version__}"


def ceiling_flops(refresh: bool = False) -> tuple[float, str]:
    """(FLOP/s, how it was obtained and when). Accelerators use the stated peak; CPUs one measurement per
    machine, cached, so `train` and `bench` divide by the same figure (a fresh measurement on a loaded
    machine differs by 2x from one minute to the next). `refresh` measures again and replaces it."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        for prefix, peak in STATED_PEAKS.items():
            if dev.device_kind.startswith(prefix):
                return peak, f"stated bf16 peak of {dev.device_kind}"
    key, path = device_key(), _cache_path()
    cache = _read_cache(path)
    entry = cache.get(key)
    if isinstance(entry, (int, float)):  # written before the measurement kept its time
        entry = {"flops": float(entry), "measured_at": None}
    if isinstance(entry, dict) and not refresh:
        return float(entry["flops"]), f"fp32 matmul {_when(entry.get('measured_at'))} on {key}, cached"
    value, now = measure_matmul_flops(), time.time()
    cache[key] = {"flops": value, "measured_at": now}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as fh:
            json.dump(cache, fh)
        os.replace(path + ".tmp", path)  # an agent reading it meanwhile sees the old file or the new one
    except OSError:
        pass
    return value, f"fp32 matmul {_when(now)} on {key}"


def _read_cache(path: str) -> dict:
    try:
        with open(path) as fh:
            cache = json.load(fh)
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _when(measured_at: float | None) -> str:
    if not isinstance(measured_at, (int, float)):
        return "measured (time not recorded)"
    return "measured " + time.strftime("%Y-%m-%d %H:%M", time.localtime(measured_at))


def run_ceiling(n_devices: int) -> float:
    """The ceiling of a run over `n_devices`: accelerators add up; CPU "devices" (XLA's virtual host
    devices) share the cores whose matmul rate was measured, so the machine's ceiling stands."""
    ceiling, _ = ceiling_flops()
    return ceiling if jax.devices()[0].platform == "cpu" else ceiling * n_devices


def mfu(tokens_per_s: float | None, flops_per_token: float, ceiling: float | None) -> float | None:
    """Model FLOPs utilization: the model's FLOPs per second over the ceiling (None without one, or
    without a measured speed)."""
    if not ceiling or not tokens_per_s:
        return None
    return tokens_per_s * flops_per_token / ceiling


def device_description() -> str:
    dev = jax.devices()[0]
    return f"{dev.device_kind} ({dev.platform}), jax {jax.__version__}"
