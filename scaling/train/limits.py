"""What a plan asks of the machine, checked before anything is written: a run that cannot fit in memory, or
whose schedule alone would not, is refused in one line instead of failing (or swapping) minutes later."""
from __future__ import annotations

import os

from scaling.display import number
from scaling.errors import UsageError
from scaling.train.plan import RunPlan

# The learning-rate schedule is one array of `steps` floats, made up front; 1e8 steps (weeks of a
# large run) is far beyond any run here, and its schedule still fits in memory.
MAX_STEPS = 100_000_000
# Bytes per parameter while training: fp32 weights, gradients and Adam's two moments.
STATE_BYTES_PER_PARAM = 16


def host_memory() -> tuple[float, str]:
    """(bytes, what they are): this machine's RAM, read without starting JAX (planning a sweep must not
    take an accelerator that agents are using)."""
    return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")), "this machine's RAM"


def device_memory() -> tuple[float, str]:
    """(bytes, what they are): the accelerators' memory, or this machine's RAM for CPU runs."""
    import jax

    devices = jax.local_devices()
    if devices and devices[0].platform != "cpu":
        try:
            limit = sum((d.memory_stats() or {}).get("bytes_limit", 0) for d in devices)
        except Exception:  # noqa: BLE001 - a backend without memory_stats
            limit = 0
        if limit:
            return float(limit), f"the memory of {len(devices)} {devices[0].device_kind}"
    return host_memory()


def training_bytes(plan: RunPlan) -> tuple[float, float]:
    """A lower bound on training memory: (optimizer state, activations of one step). Activations: what
    backward keeps of each layer (inputs of the matmuls, the MLP's hidden units) and the logits with
    their gradient, in the compute dtype; the true figure is higher, so a refusal is never wrong."""
    s = plan.shape
    microbatches = max(1, int(getattr(plan.config, "microbatches", 1) or 1))
    rows = plan.batch_size / microbatches * s.seq_len
    width = 2 if plan.config.dtype == "bfloat16" else 4
    per_layer = 6 * s.d_model + 3 * s.d_ff
    activations = rows * (s.n_layers * per_layer * width + 2 * s.vocab_size * 4)
    return STATE_BYTES_PER_PARAM * s.params + 8.0 * plan.steps, activations


def check_plan(plan: RunPlan, available: tuple[float, str] | None = None) -> None:
    """Refuse, naming the key, a plan the machine cannot run: more steps than MAX_STEPS, a vocab_size the
    corpus does not use, or a model and batch that need more memory than the device has.

    Args:
        plan: from plan_run.
        available: (bytes, description) to check against; default `device_memory()`.
    Raises:
        UsageError: one line naming the key, the value and what is allowed.
    """
    cfg = plan.config
    if cfg.vocab_size is not None and cfg.vocab_size != plan.corpus.vocab_size:
        raise UsageError(f"vocab_size={cfg.vocab_size}: corpus={cfg.corpus!r} has its own vocabulary of "
                         f"{plan.corpus.vocab_size} tokens; vocab_size applies only to token files (FILE.bin)")
    if plan.steps > MAX_STEPS:
        raise UsageError(f"{cfg.length} is {plan.steps:.3g} steps of {plan.tokens_per_step:,} tokens; allowed: at "
                         f"most {MAX_STEPS:.0e} steps ({MAX_STEPS * plan.tokens_per_step:.3g} tokens) per run")
    limit, what = available or device_memory()
    state, activations = training_bytes(plan)
    if state + activations <= limit:
        return
    need = f"at least {number((state + activations) / 1e9, 3)} GB to train, more than {what} " \
           f"({number(limit / 1e9, 3)} GB)"
    if state > limit / 2:
        size = f"params={cfg.params:g}" if cfg.params is not None else f"d_model={cfg.d_model}"
        raise UsageError(f"{size}: {plan.shape.describe()} with N={plan.shape.params:.3g} needs {need}; "
                         "allowed: a smaller model")
    raise UsageError(f"batch_size={plan.batch_size} x seq_len={plan.shape.seq_len} needs {need}; allowed: a "
                     "smaller batch_size (or microbatches=K on a sharded run)")
