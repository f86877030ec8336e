"""The family's train-step speed: steady-state seconds per step of the compiled step, for `scaling bench`."""
from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np

from scaling.train.step import compiled_fns


def time_train_step(shape, batch_size: int, steps: int, dtype: str = "float32") -> dict:
    """Steady-state seconds per optimizer step (compilation excluded) for one shape."""
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
