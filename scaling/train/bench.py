"""The family's train-step speed: steady-state seconds per step of the compiled step, for `scaling bench`
and the benchmarks. A StepTimer keeps its state between measurements, so a benchmark can alternate it
with another (the PyTorch peer) and compare the two under the same load."""
from __future__ import annotations

import time

import jax
import numpy as np

from scaling.model import attention_fraction
from scaling.train.step import (
    LAYERS,
    attention_implementation,
    compiled_fns,
    packed_fns,
    step_functions,
    use_compilation_cache,
)


class StepTimer:
    """Times `pack` runs of one shape trained together (1: a single run), `steps_per_call` steps per call,
    on random tokens of `batch_size` x seq_len."""

    def __init__(self, shape, batch_size: int, steps_per_call: int = 1, pack: int = 1, dtype: str = "float32",
                 layers: str = LAYERS, attention: str | None = None):
        use_compilation_cache()
        self.shape, self.batch_size, self.steps_per_call, self.pack = shape, batch_size, steps_per_call, pack
        rng = np.random.default_rng(0)
        self.attention = attention = attention or attention_implementation("auto", dtype, shape.head_dim)
        lead = (steps_per_call, pack) if pack > 1 else (steps_per_call,)
        if pack > 1:
            fns = packed_fns(shape, dtype, 0.9, 0.95, 0.1, 1.0, attention, layers=layers)
            self.state = fns.init(np.arange(pack, dtype=np.uint32))
            self.fn = fns.train_steps
        else:
            fns = compiled_fns(shape, dtype, 0.9, 0.95, 0.1, 1.0, attention=attention, layers=layers)
            self.state = fns.init(np.uint32(0))
            self.fn = fns.train_step if steps_per_call == 1 else fns.train_steps
        tokens = rng.integers(0, shape.vocab_size, (*lead, batch_size, shape.seq_len))
        self.x = jax.device_put(tokens[0] if steps_per_call == 1 and pack == 1 else tokens).astype(np.int32)
        self.args = ((np.float32(1e-3),) if steps_per_call == 1 and pack == 1 else
                     (np.full(lead, 1e-3, np.float32), np.ones(lead, bool)))
        t0 = time.perf_counter()
        self._call()
        self.compile_s = time.perf_counter() - t0

    def _call(self) -> None:
        params, opt_state, loss, _ = self.fn(*self.state, self.x, self.x, *self.args)
        self.state = (params, opt_state)
        return loss

    def seconds_per_step(self, steps: int) -> float:
        """Wall seconds per optimizer step (of every run in the pack) over about `steps` steps."""
        calls = max(1, round(steps / self.steps_per_call))
        self._call().block_until_ready()  # warm caches and the allocator
        t0 = time.perf_counter()
        for _ in range(calls):
            loss = self._call()
        loss.block_until_ready()
        return (time.perf_counter() - t0) / (calls * self.steps_per_call)

    @property
    def tokens_per_step(self) -> int:
        return self.pack * self.batch_size * self.shape.seq_len


def time_train_step(shape, batch_size: int, steps: int, dtype: str = "float32", steps_per_call: int = 1,
                    pack: int = 1, layers: str = LAYERS, attention: str | None = None) -> dict:
    """Steady-state seconds per optimizer step (compilation excluded) for one shape; tokens/s counts every
    run of a pack. Model FLOPs count the attention the kernel that ran computes (model.attention_fraction)."""
    timer = StepTimer(shape, batch_size, steps_per_call, pack, dtype, layers, attention)
    step_s = timer.seconds_per_step(steps)
    tokens = timer.tokens_per_step
    flops_per_token = shape.flops_per_token(attention_fraction(timer.attention, shape))
    return {"shape": shape.describe(), "params": shape.params, "step_ms": 1e3 * step_s, "compile_s": timer.compile_s,
            "attention": timer.attention, "flops_per_token": flops_per_token,
            "tokens_per_s": tokens / step_s, "model_flops_per_s": flops_per_token * tokens / step_s}


def compile_train_step(shape, batch_size: int, dtype: str = "float32", layers: str = LAYERS,
                       attention: str | None = None, remat: str = "none") -> dict:
    """Lower and compile one shape's train step ahead of time, from abstract shapes alone (no parameters,
    no data, no step): the seconds each took and XLA's compiled memory (bytes). The persistent
    compilation cache is left as the process has it; `scaling bench --compile-only` turns it off, so
    the seconds are a compilation's, not a disk read's."""
    import jax.numpy as jnp

    attention = attention or attention_implementation("auto", dtype, shape.head_dim)
    fns = step_functions(shape, dtype, 0.9, 0.95, 0.1, 1.0, attention=attention, layers=layers, remat=remat)
    # A jit of its own, not compiled_fns' cached one: a step this process compiled already would be
    # looked up, not compiled.
    step = jax.jit(lambda *args: fns.update(*args), donate_argnums=(0, 1))
    params, opt_state = jax.eval_shape(fns.init, np.uint32(0))
    x = jax.ShapeDtypeStruct((batch_size, shape.seq_len), jnp.int32)
    t0 = time.perf_counter()
    lowered = step.lower(params, opt_state, x, x, jax.ShapeDtypeStruct((), jnp.float32))
    t1, cpu = time.perf_counter(), time.process_time()
    compiled = lowered.compile()
    t2, cpu = time.perf_counter(), time.process_time() - cpu
    memory = compiled.memory_analysis()
    read = lambda name: int(getattr(memory, name, 0) or 0) if memory is not None else 0  # noqa: E731
    return {"shape": shape.describe(), "params": shape.params, "layers": layers, "attention": attention,
            "remat": remat, "lower_s": t1 - t0,
            # CPU seconds too: on a shared machine wall seconds measure the load as much as the compiler
            "compile_s": t2 - t1, "compile_cpu_s": cpu, "argument_bytes": read("argument_size_in_bytes"),
            "output_bytes": read("output_size_in_bytes"), "temp_bytes": read("temp_size_in_bytes")}
