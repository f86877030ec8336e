"""`scaling bench`: this machine's matmul ceiling, and the family's train-step speed and MFU against it."""
from __future__ import annotations

import time

import numpy as np

from scaling import hardware
from scaling.family import shape_for_width


def time_train_step(shape, batch_size: int, steps: int, dtype: str = "float32") -> dict:
    """Steady-state seconds per optimizer step (compilation excluded) for one shape."""
    import jax
    import jax.numpy as jnp

    from scaling.train import compiled_fns

    init, train_step, _ = compiled_fns(shape, dtype, 0.9, 0.95, 0.1, 1.0)
    params, opt_state = init(np.uint32(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, shape.vocab_size, (batch_size, shape.seq_len)), jnp.int32)
    lr = jnp.float32(1e-3)
    t0 = time.perf_counter()
    params, opt_state, loss, _ = train_step(params, opt_state, x, x, lr)
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    for _ in range(2):  # warm caches and allocator
        params, opt_state, loss, _ = train_step(params, opt_state, x, x, lr)
    loss.block_until_ready()
    t0 = time.perf_counter()
    for _ in range(steps):
        params, opt_state, loss, _ = train_step(params, opt_state, x, x, lr)
    loss.block_until_ready()
    step_s = (time.perf_counter() - t0) / steps
    tokens = batch_size * shape.seq_len
    return {"shape": shape.describe(), "params": shape.params, "step_ms": 1e3 * step_s, "compile_s": compile_s,
            "tokens_per_s": tokens / step_s, "model_flops_per_s": shape.flops_per_token() * tokens / step_s}


def run(args) -> None:
    import jax

    ceiling, how = hardware.ceiling_flops(refresh=True)
    print(f"device   {jax.devices()[0].device_kind} ({jax.devices()[0].platform}), jax {jax.__version__}")
    print(f"ceiling  {ceiling / 1e9:,.1f} GFLOP/s  ({how})")
    print(f"{'shape':>14} {'params':>12} {'ms/step':>9} {'tokens/s':>10} {'GFLOP/s':>9} {'MFU':>6} {'compile':>8}")
    for width in args.d_model:
        shape = shape_for_width(width, n_layers=args.layers, seq_len=args.seq_len)
        r = time_train_step(shape, args.batch_size, args.steps)
        print(f"{r['shape']:>14} {r['params']:>12,} {r['step_ms']:>9.1f} {r['tokens_per_s']:>10,.0f} "
              f"{r['model_flops_per_s'] / 1e9:>9.1f} {100 * r['model_flops_per_s'] / ceiling:>5.1f}% "
              f"{r['compile_s']:>7.1f}s")
    print(f"(batch {args.batch_size} x seq {args.seq_len}; FLOPs from scaling.family, 3 x forward, executed causal-attention blocks)")
