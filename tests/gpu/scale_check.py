"""The accelerator-scale parts of tests/gpu/check.sh (issue 22), one subcommand each:

  scale      compile seconds, step time, MFU and memory of bf16 train steps at ~125M, ~350M, ~760M and ~1.3B
             parameters (32k vocabulary, seq 2048, a global batch of 256 x 2048 = 524k tokens through
             microbatches), a few steps each;
  attention  3 seeds x {xla, cudnn} of one small bf16 run (d128-L2): each kernel's eval loss against the
             spread of the seeds, to tell a kernel's bias from seed noise;
  remat      XLA's compiled memory and the step time of one shape under each remat policy (none/dots/full),
             through the `remat=` config key when RunConfig has it, else the model's REMAT_POLICIES.

`--dry` runs every code path on tiny shapes on any platform (CPU included: the cudnn arm becomes
attention=auto), so the script is tested where no GPU is lent. `--deadline` (Unix seconds) skips what would
start after it, so the whole check fits one call. Nothing here is collected by pytest.
Usage: python tests/gpu/scale_check.py scale|attention|remat [--dry] [--deadline T] [--home DIR]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import tempfile
import time

# Large targets: compile seconds must be a compilation's, not a read of JAX's persistent cache.
os.environ.setdefault("SCALING_COMPILATION_CACHE", "off")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from scaling import hardware  # noqa: E402
from scaling.config import RunConfig  # noqa: E402
from scaling.family import shape_for_params, shape_for_width  # noqa: E402
from scaling.train.limits import training_bytes  # noqa: E402
from scaling.train.plan import RunPlan  # noqa: E402
from scaling.train.step import attention_implementation, step_functions  # noqa: E402

GOALS = {"mfu_125m": 0.25, "mfu_350m_up": 0.40, "compile_1p3b_s": 60.0}  # issue 22 item 6, one H200
MICROBATCH_ACTIVATIONS = 40e9  # as sweeps/ladder-gpu.yaml: train/limits.py's estimate per microbatch


@dataclasses.dataclass(frozen=True)
class Ladder:
    targets: tuple[float, ...]
    vocab: int
    seq_len: int
    batch: int  # sequences per optimizer step (global)
    steps: int  # timed steps after one warm-up step
    activation_limit: float


FULL = Ladder((1.25e8, 3.5e8, 7.6e8, 1.3e9), 32768, 2048, 256, 2, MICROBATCH_ACTIVATIONS)
DRY = Ladder((2e4, 8e4), 256, 32, 8, 1, 2e5)  # each needs microbatches


def out(line: str) -> None:
    print(line, flush=True)


def platform() -> str:
    return jax.devices()[0].platform


def left(deadline: float | None) -> float:
    return math.inf if deadline is None else deadline - time.time()


def microbatches_for(shape, batch: int, dtype: str, limit: float) -> int:
    """The fewest microbatches (a power of two dividing `batch`) whose activation estimate is under `limit`."""
    m = 1
    while m < batch:
        cfg = RunConfig(d_model=shape.d_model, tokens=1.0, batch_size=batch, seq_len=shape.seq_len, dtype=dtype,
                        microbatches=m)
        _, activations = training_bytes(RunPlan(cfg, "check", shape, batch, 1, 0.0, 0, None))
        if activations <= limit:
            break
        m *= 2
    return m


def device_peak_bytes() -> int | None:
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - CPU and some backends have none
        return None
    return stats.get("peak_bytes_in_use")


def compile_and_time(shape, batch: int, microbatches: int, attention: str, steps: int, remat: str | None = None):
    """AOT-compile one train step (seconds, compiled memory), then run 1 + `steps` steps on random tokens."""
    kwargs = dict(microbatches=microbatches, attention=attention)
    if remat is not None:
        kwargs["remat"] = remat
    fns = step_functions(shape, "bfloat16", 0.9, 0.95, 0.1, 1.0, **kwargs)
    step = jax.jit(fns.update, donate_argnums=(0, 1))
    params, opt = jax.jit(fns.init)(np.uint32(0))
    x = jax.device_put(np.random.default_rng(0).integers(0, shape.vocab_size, (batch, shape.seq_len), np.int32))
    t0 = time.perf_counter()
    compiled = step.lower(params, opt, x, x, jnp.float32(1e-4)).compile()
    compile_s = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    temp = int(getattr(memory, "temp_size_in_bytes", 0) or 0) if memory is not None else 0
    params, opt, loss, _ = compiled(params, opt, x, x, jnp.float32(1e-4))
    loss.block_until_ready()
    t0 = time.perf_counter()
    for _ in range(steps):
        params, opt, loss, _ = compiled(params, opt, x, x, jnp.float32(1e-4))
    loss.block_until_ready()
    step_s = (time.perf_counter() - t0) / steps
    return {"compile_s": compile_s, "step_s": step_s, "temp_bytes": temp, "peak_bytes": device_peak_bytes(),
            "loss": float(loss)}


def ladder(args) -> int:
    spec = DRY if args.dry else FULL
    attention = attention_implementation(os.environ.get("LADDER_ATTN", "auto"), "bfloat16")
    ceiling, how = hardware.ceiling_flops()
    out(f"ladder: bf16, seq {spec.seq_len}, vocab {spec.vocab}, batch {spec.batch} x {spec.seq_len} = "
        f"{spec.batch * spec.seq_len:,} tokens per step, attention {attention}, layers scanned; "
        f"MFU against {ceiling / 1e12:.4g} TFLOP/s ({how})")
    out(f"{'target':>8} {'shape':>15} {'params':>14} {'micro':>5} {'compile':>8} {'s/step':>7} {'tokens/s':>10} "
        f"{'MFU':>6} {'MFU 6N':>6} {'temp GB':>8} {'peak GB':>8}")
    failures = 0
    for target in spec.targets:
        shape = shape_for_params(target, vocab_size=spec.vocab, seq_len=spec.seq_len)
        m = microbatches_for(shape, spec.batch, "bfloat16", spec.activation_limit)
        if left(args.deadline) < 30:
            out(f"{target:>8.3g} {shape.describe():>15} skipped: the check's time is spent")
            continue
        try:
            r = compile_and_time(shape, spec.batch, m, attention, spec.steps)
        except Exception as err:  # noqa: BLE001 - an out-of-memory or compile failure is a result to report
            failures += 1
            out(f"{target:>8.3g} {shape.describe():>15} FAILED: {str(err).splitlines()[0][:200]}")
            continue
        tokens_s = spec.batch * spec.seq_len / r["step_s"]
        mfu = hardware.mfu(tokens_s, shape.flops_per_token(), ceiling)
        mfu6 = hardware.mfu(tokens_s, 6 * shape.params, ceiling)
        peak = f"{r['peak_bytes'] / 1e9:8.1f}" if r["peak_bytes"] else f"{'-':>8}"
        out(f"{target:>8.3g} {shape.describe():>15} {shape.params:>14,} {m:>5} {r['compile_s']:>7.1f}s "
            f"{r['step_s']:>7.3f} {tokens_s:>10,.0f} {100 * mfu:>5.1f}% {100 * mfu6:>5.1f}% "
            f"{r['temp_bytes'] / 1e9:>8.3f} {peak}")
        if not args.dry:
            goal = GOALS["mfu_125m"] if target < 3e8 else GOALS["mfu_350m_up"]
            verdict = "met" if mfu >= goal else "NOT met"
            out(f"         goal MFU >= {goal:.0%}: {verdict}" + (
                f"; compile <= {GOALS['compile_1p3b_s']:.0f} s: "
                f"{'met' if r['compile_s'] <= GOALS['compile_1p3b_s'] else 'NOT met'}" if target >= 1e9 else ""))
    out("(MFU: the family's FLOPs/token, executed causal blocks, scaling/family.py; MFU 6N: 6 x params only; "
        "temp: XLA's compiled temporary memory; peak: the device's peak bytes in use so far)")
    return 1 if failures else 0


def attention_seeds(args) -> int:
    from scaling.train import plan_run, train_run

    kernels = ("xla", "auto") if args.dry or platform() != "gpu" else ("xla", "cudnn")
    base = dict(d_model=128, seq_len=256, batch_size=32, tokens=2e6, eval_tokens=32768, n_evals=2)
    if args.dry:
        base = dict(d_model=16, seq_len=32, batch_size=4, tokens=1024, eval_tokens=128, n_evals=1)
    home = args.home or tempfile.mkdtemp(prefix="attention-seeds-")
    losses: dict[str, list[float]] = {k: [] for k in kernels}
    out(f"attention: 3 seeds x {' / '.join(kernels)}, bf16, d{base['d_model']}, {base['tokens']:g} tokens "
        f"(batch {base['batch_size']} x {base['seq_len']}), eval loss per run")
    for seed in (0, 1, 2):
        for kernel in kernels:
            if left(args.deadline) < 20:
                out(f"  seed {seed} {kernel}: skipped: the check's time is spent")
                continue
            cfg = RunConfig.from_dict({**base, "dtype": "bfloat16", "attention": kernel, "seed": seed,
                                       "wandb": "off", "run_id": f"attn-{kernel}-s{seed}"})
            summary = train_run(plan_run(cfg), home)
            losses[kernel].append(float(summary["eval_loss"]))
            out(f"  seed {seed} {kernel:>5}: eval loss {losses[kernel][-1]:.5f}")
    a, b = kernels
    if min(len(losses[a]), len(losses[b])) < 2:
        out("attention: too few runs to compare")
        return 1
    mean = {k: statistics.fmean(v) for k, v in losses.items()}
    spread = {k: statistics.stdev(v) for k, v in losses.items()}
    diff = mean[b] - mean[a]
    # the standard error of a difference of two means of n seeds each
    se = math.sqrt(sum(spread[k] ** 2 / len(losses[k]) for k in kernels))
    t = diff / se if se > 0 else math.inf
    verdict = "within the seed noise" if abs(t) <= 3 else "systematic (|t| > 3)"
    out(f"attention: {a} {mean[a]:.5f} (seed sd {spread[a]:.5f}), {b} {mean[b]:.5f} (seed sd {spread[b]:.5f}); "
        f"{b} - {a} = {diff:+.5f} ({diff / mean[a]:+.2%}), t = {t:+.2f}: {verdict}")
    return 0


def remat(args) -> int:
    policies = ("none", "dots", "full")
    if args.dry:
        shape, batch = shape_for_width(16, n_layers=2, seq_len=32), 4
    else:  # ~350M at the ladder's microbatch of 16 sequences
        shape, batch = shape_for_params(3.5e8, vocab_size=32768, seq_len=2048), 16
    attention = attention_implementation(os.environ.get("LADDER_ATTN", "auto"), "bfloat16")
    via_config = "remat" in {f.name for f in dataclasses.fields(RunConfig)}
    out(f"remat: {shape.describe()} bf16, batch {batch} x {shape.seq_len}, attention {attention}; policies "
        f"through {'the remat= config key' if via_config else 'step_functions(remat=...) (no remat config key yet)'}")
    if via_config:
        from scaling.train import plan_run, train_run

        home = args.home or tempfile.mkdtemp(prefix="remat-")
        for policy in policies:  # the key reaches a run and its config.yaml
            cfg = RunConfig.from_dict(dict(d_model=16, seq_len=32, batch_size=4, tokens=512, eval_tokens=128, n_evals=1,
                                           wandb="off", remat=policy, run_id=f"remat-{policy}"))
            summary = train_run(plan_run(cfg), home)
            with open(os.path.join(home, f"remat-{policy}", "config.yaml")) as fh:
                recorded = f"remat: {policy}" in fh.read()
            out(f"  remat={policy}: a tiny run ends at {summary['eval_loss']:.5f}, config.yaml "
                f"{'records it' if recorded else 'does NOT record it'}")
    out(f"{'policy':>6} {'compile':>8} {'s/step':>7} {'temp GB':>8} {'loss':>8}")
    temps = {}
    for policy in policies:
        if left(args.deadline) < 20:
            out(f"{policy:>6} skipped: the check's time is spent")
            continue
        try:
            r = compile_and_time(shape, batch, 1, attention, 1 if args.dry else 2, remat=policy)
        except TypeError as err:  # a build whose step has no remat argument
            out(f"remat: not available in this build ({err})")
            return 1
        temps[policy] = r["temp_bytes"]
        out(f"{policy:>6} {r['compile_s']:>7.1f}s {r['step_s']:>7.3f} {r['temp_bytes'] / 1e9:>8.3f} {r['loss']:>8.4f}")
    if {"none", "full"} <= temps.keys():
        out(f"remat: full keeps {temps['full'] / max(temps['none'], 1):.2f}x the temporary memory of none"
            + (f", dots {temps['dots'] / max(temps['none'], 1):.2f}x" if "dots" in temps else ""))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=("scale", "attention", "remat"))
    p.add_argument("--dry", action="store_true", help="tiny shapes, any platform: every code path in seconds")
    p.add_argument("--deadline", type=float, default=None, help="Unix seconds: start nothing after it")
    p.add_argument("--home", default=None, help="run home for the runs this part trains (default: a temp folder)")
    args = p.parse_args(argv)
    out(f"{args.part}: jax {jax.__version__} on {hardware.device_description()}" + (" (dry)" if args.dry else ""))
    return {"scale": ladder, "attention": attention_seeds, "remat": remat}[args.part](args)


if __name__ == "__main__":
    sys.exit(main())
