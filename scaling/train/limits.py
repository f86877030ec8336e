"""What a plan asks of the machine, checked before anything is written: a run that cannot fit in memory, or
whose schedule alone would not, is refused in one line instead of failing (or swapping) minutes later."""
from __future__ import annotations

import dataclasses
import os

from scaling.display import number
from scaling.errors import UsageError
from scaling.model import attention_fraction
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


# Remat policies from least recomputed to most (model.REMAT_POLICIES): `auto` on an accelerator takes the
# first whose memory fits.
REMAT_ORDER = ("none", "dots", "full")


def layer_activations(plan: RunPlan, remat: str) -> float:
    """Elements per token one block keeps for the backward pass under `remat`, a lower bound. `none`: the
    block's input and its norm, the rotated q and k, v, the attention probabilities (heads x the keys
    the kernel computes, three such arrays as XLA keeps them; cuDNN keeps one statistic per head), the attention output,
    the second residual and its norm, the MLP's pre-activations and hidden units. `dots`: the block's
    input and the matmul outputs (qkv, scores, attention output, projection, MLP up and down), the rest
    recomputed. `full`: the block's input alone."""
    s = plan.shape
    d, up = s.d_model, (2 if s.mlp == "swiglu" else 1) * s.d_ff
    kernel = plan.attention_kernel
    scores = s.n_heads if kernel == "cudnn" else s.n_heads * s.seq_len * attention_fraction(kernel, s)
    if remat == "full":
        return d
    if remat == "dots":
        return 7 * d + up + scores
    # beside the probabilities XLA keeps two more score-sized arrays without remat (the masked scores and
    # the softmax's exponentials): compiled temp memory at d64-L4 seq 256 fell 61 MiB from none to dots,
    # about three score squares per layer (benchmarks/results/cpu-remat-memory-2026-12-03.txt)
    return 8 * d + up + s.d_ff + 3 * scores


def training_bytes(plan: RunPlan, remat: str | None = None) -> tuple[float, float]:
    """A lower bound on training memory: (optimizer state, activations of one step) under `remat` (default
    the plan's, else none). Activations: what backward keeps of every layer (layer_activations), one
    layer's matmul outputs while `full` recomputes it, and the logits with their gradient, in float32;
    the true figure is higher (benchmarks/results/cpu-remat-memory-2026-12-03.txt), so a refusal is
    never wrong."""
    s = plan.shape
    remat = remat or plan.remat or "none"
    microbatches = max(1, int(getattr(plan.config, "microbatches", 1) or 1))
    rows = plan.batch_size / microbatches * s.seq_len
    width = 2 if plan.config.dtype == "bfloat16" else 4
    per_token = s.n_layers * layer_activations(plan, remat)
    if remat == "full":  # the layer being recomputed holds at least its matmul outputs
        per_token += layer_activations(plan, "dots")
    activations = rows * (per_token * width + 2 * s.vocab_size * 4)
    return STATE_BYTES_PER_PARAM * s.params + 8.0 * plan.steps, activations


def choose_remat(plan: RunPlan, available: tuple[float, str] | None = None, platform: str | None = None) -> str:
    """The remat policy a run trains with: the config's, when it names one; for `auto`, none on CPU
    (recomputing costs CPU time and its RAM is ample) and elsewhere the least recomputation that fits
    `available` (default device_memory(); `full` when none fits: check_plan then says what would).
    `platform` None (planning, no device started): as on an accelerator."""
    if plan.config.remat != "auto":
        return plan.config.remat
    if platform == "cpu":
        return "none"
    limit, _ = available or device_memory()
    return next((r for r in REMAT_ORDER if sum(training_bytes(plan, r)) <= limit), REMAT_ORDER[-1])


def resolve_plan(plan: RunPlan, dtype_name: str, platform: str) -> RunPlan:
    """The plan with the attention kernel and remat policy this machine runs (RunPlan.attention, .remat):
    what the run records, compiles and counts its FLOPs by."""
    from scaling.train.step import attention_implementation

    attention = attention_implementation(plan.config.attention, dtype_name, plan.shape.head_dim)
    plan = dataclasses.replace(plan, attention=attention)
    return dataclasses.replace(plan, remat=choose_remat(plan, platform=platform))


def _fits(plan: RunPlan, limit: float, remat: str, microbatches: int | None = None) -> bool:
    if microbatches is not None:
        plan = dataclasses.replace(plan, config=plan.config.replace(microbatches=microbatches))
    return sum(training_bytes(plan, remat)) <= limit


def what_would_fit(plan: RunPlan, limit: float, remat: str) -> str:
    """The remat policies, else the smallest microbatches count (a divisor of the batch), that would fit."""
    remats = [r for r in REMAT_ORDER if r != remat and _fits(plan, limit, r)]
    if remats:
        return " or ".join(f"remat={r}" for r in remats)
    for policy in (remat, "full"):
        k = next((k for k in range(2, plan.batch_size + 1) if plan.batch_size % k == 0
                  and _fits(plan, limit, policy, k)), None)
        if k is not None:
            return f"microbatches={k}" + (f" with remat={policy}" if policy != remat else "")
    return "a smaller batch_size"


def check_plan(plan: RunPlan, available: tuple[float, str] | None = None) -> None:
    """Refuse, naming the key, a plan the machine cannot run: more steps than MAX_STEPS, a vocab_size the
    corpus does not use, or a model and batch that need more memory than the device has.

    Args:
        plan: from plan_run (resolve_plan's: its remat; before it, the policy choose_remat would take).
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
    # unresolved: as this machine's devices would take it (device_memory started them), or, checked against
    # a given memory (a sweep planned on its host), as an accelerator would
    platform = None if available is not None else _platform()
    remat = plan.remat or choose_remat(plan, (limit, what), platform)
    state, activations = training_bytes(plan, remat)
    if state + activations <= limit:
        return
    need = f"at least {number((state + activations) / 1e9, 3)} GB to train with remat={remat}, more than {what} " \
           f"({number(limit / 1e9, 3)} GB)"
    if state > limit / 2:
        size = f"params={cfg.params:g}" if cfg.params is not None else f"d_model={cfg.d_model}"
        raise UsageError(f"{size}: {plan.shape.describe()} with N={plan.shape.params:.3g} needs {need}; "
                         "allowed: a smaller model")
    raise UsageError(f"batch_size={plan.batch_size} x seq_len={plan.shape.seq_len} needs {need}; "
                     f"allowed: {what_would_fit(plan, limit, remat)}")


def _platform() -> str:
    import jax

    return jax.local_devices()[0].platform
