"""The compiled training step: one jitted AdamW step per (shape, optimizer), cached so that a sweep's runs
of one shape share XLA's compiled code."""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from scaling.errors import UsageError
from scaling.family import STANDARD, ModelShape, Parametrization
from scaling.model import Transformer, hidden_matrices, matrix_rank
from scaling.train.mesh import MeshShape, batch_sharding, make_mesh, replicated, stacked_batch_sharding, tree_shardings


def compilation_cache_dir() -> str | None:
    """Where compiled steps persist across processes: $SCALING_COMPILATION_CACHE, else the user's cache
    folder; `off` turns it off."""
    setting = os.environ.get("SCALING_COMPILATION_CACHE")
    if setting is not None:
        return None if setting.strip().lower() in ("", "off", "0", "none") else setting
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "scaling", "jax")


def use_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache (a new process running a shape compiled before loads its
    step from disk instead of compiling it: most of a small run's startup). Call before the first jit."""
    if jax.config.jax_compilation_cache_dir:  # set already (here, or by the user): JAX reads it once
        return jax.config.jax_compilation_cache_dir
    directory = compilation_cache_dir()
    if directory is None:
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    # Every compilation, not only those over a second: a sweep's small models compile in well under one.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


# The kernel `attention=auto` runs on CPU: the fastest there, measured side by side with the layers scanned
# (benchmarks/bench_attention.py, benchmarks/results/cpu-attention-2026-12-03.txt): the block loop took
# 0.75-0.78x the one XLA call's step time at the demo's seq 128, 0.94x at d256-L4 seq 512, 0.81x at seq
# 1024 (medians; single d256 rounds overlap under load), and tied at d128 seq 256 (1.03x). XLA's CPU call
# computes the masked full square; the loop skips the key blocks above the diagonal.
CPU_ATTENTION = "blocks"


def attention_implementation(setting: str, dtype_name: str, head_dim: int | None = None) -> str:
    """The attention kernel a run executes (model.ATTENTION_KERNELS) for the config's `attention`.

    `auto`: cuDNN's fused flash kernel on NVIDIA GPUs where it applies (bf16/fp16 compute, compute
    capability 8.0 or newer, head_dim a multiple of 8 up to 128); XLA's one fused call on other
    accelerators (TPU: jax also ships Pallas flash and splash kernels under
    jax.experimental.pallas.ops.tpu, not wired in: no TPU to test them on); CPU_ATTENTION on CPU. So
    no accelerator runs a Python loop over query blocks. cuDNN's loss against XLA's (+1.5% eval loss at
    d128-L2 on an H200, one seed, bf16) is not yet known to be more than seed noise: tests/gpu/check.sh
    runs the seeds, and `attention=xla` is the fallback.
    An explicit kernel is run as asked, except cuDNN off an NVIDIA GPU or in float32 (refused)."""
    device = jax.devices()[0]
    if setting == "auto":
        if _cudnn_applies(device, dtype_name, head_dim):
            return "cudnn"
        return CPU_ATTENTION if device.platform == "cpu" else "xla"
    if setting == "cudnn" and not (_nvidia(device) and dtype_name in ("bfloat16", "float16")):
        raise UsageError(f"attention=cudnn needs an NVIDIA GPU and dtype=bfloat16 (this run: {device.platform}, "
                         f"{dtype_name})")
    return setting


def _nvidia(device) -> bool:
    version = str(getattr(getattr(device, "client", None), "platform_version", "")).lower()
    return device.platform in ("gpu", "cuda") and "rocm" not in version


def _cudnn_applies(device, dtype_name: str, head_dim: int | None) -> bool:
    """cuDNN's flash attention's own limits: Ampere or newer, half-precision inputs, head_dim <= 128 in
    multiples of 8 (outside them jax raises at compile time)."""
    if not _nvidia(device) or dtype_name not in ("bfloat16", "float16"):
        return False
    try:
        major = int(str(getattr(device, "compute_capability", "8.0")).split(".")[0])
    except ValueError:
        major = 0
    return major >= 8 and (head_dim is None or (head_dim % 8 == 0 and head_dim <= 128))


# The layer layout every run trains with (recorded in config.yaml as `layers`), on every platform: one
# block body in the compiled step, so tracing and compiling do not grow with depth, and one checkpoint
# layout for a run wherever it resumes. On CPU it costs 0-9% of the step's speed at the sweeps' small
# depths (side by side, alternating, median tokens/s scanned/unrolled at a light load: d64-L1 1.00x,
# d128-L2 0.94x, d256-L4 0.91x; `scaling bench --layout unrolled` measures it again). Kept: its compile
# time is flat in depth (d256: 10.5/5.3/4.8 s at L2/L8/L24 against the unrolled 3.0/4.4/11.8 s, plus
# 0.8/1.2/4.0 s of tracing) and the accelerators need the one code path.
LAYERS = "scanned"


def compute_dtype(setting: str):
    """float32 on CPU (where bf16 matmuls are slower), bf16 on accelerators, or the named dtype."""
    if setting == "auto":
        return jnp.float32 if jax.devices()[0].platform == "cpu" else jnp.bfloat16
    return jnp.dtype(setting)


@dataclass(frozen=True)
class Layout:
    """Where a run's arrays live: the mesh over which devices, and how many microbatches a step takes."""

    mesh: MeshShape
    device_ids: tuple[int, ...]  # jax device ids, in mesh order
    microbatches: int = 1

    @classmethod
    def single(cls) -> Layout:
        return cls(MeshShape(), (jax.devices()[0].id,))

    def make_mesh(self) -> Mesh:
        by_id = {d.id: d for d in jax.devices()}
        return make_mesh(self.mesh, [by_id[i] for i in self.device_ids])


class CompiledRun(NamedTuple):
    init: Callable  # seed -> (params, opt_state), placed by the rule table
    train_step: Callable  # (params, opt_state, x, y, lr) -> (params, opt_state, loss, grad_norm)
    eval_loss: Callable  # (params, x, y) -> mean loss
    # (params, opt_state, xs, ys, lrs, active) -> (params, opt_state, losses, grad_norms): len(lrs) steps in
    # one call (lax.scan); a step whose `active` is false leaves the state exactly as it was, so every call
    # has one length (one compilation) however the run's log points cut its steps.
    train_steps: Callable


class Placement(NamedTuple):
    mesh: Mesh
    batch: NamedSharding  # token batches: rows over every device
    replicated: NamedSharding
    steps: NamedSharding  # stacked batches (steps, rows, seq_len): rows over every device


@functools.lru_cache(maxsize=16)
def placement(layout: Layout) -> Placement:
    mesh = layout.make_mesh()
    return Placement(mesh, batch_sharding(mesh), replicated(mesh), stacked_batch_sharding(mesh))


class StepFunctions(NamedTuple):
    """The pure functions a run is made of, before any jit: the single and packed steps are built on them."""

    init: Callable  # seed -> (params, opt_state)
    update: Callable  # (params, opt_state, x, y, lr) -> (params, opt_state, loss, grad_norm)
    loss: Callable  # (params, x, y) -> mean loss


def adamw(beta1: float, beta2: float, weight_decay: float, grad_clip: float, width_multiplier: float | None = None):
    """AdamW with the learning rate left out: it is applied in the step from an argument, so the
    schedule (which depends on the run's length) does not force a recompilation.

    `width_multiplier` (muP's m): the hidden matrices' Adam update is scaled by 1/m, because an update of
    Theta(1) per coordinate moves a matrix's output by Theta(fan-in). It is scaled before the weight decay,
    so lr x weight_decay, the decay's timescale, is the same at every width (the `mup` package's MuAdamW)."""
    # no decay on norm scales (a scanned model's are (layers, d): its layer axis does not count)
    decay_mask = lambda params: jax.tree_util.tree_map_with_path(lambda path, p: matrix_rank(path, p) >= 2, params)
    per_layer = [] if width_multiplier is None else [optax.masked(optax.scale(1.0 / width_multiplier), hidden_matrices)]
    return optax.chain(
        optax.clip_by_global_norm(grad_clip) if grad_clip > 0 else optax.identity(),
        optax.scale_by_adam(b1=beta1, b2=beta2, eps=1e-8),
        *per_layer,
        optax.add_decayed_weights(weight_decay, mask=decay_mask),
    )


@functools.lru_cache(maxsize=16)
def step_functions(shape: ModelShape, dtype_name: str, beta1: float, beta2: float, weight_decay: float,
                   grad_clip: float, microbatches: int = 1, attention: str = "xla",
                   parametrization: Parametrization = STANDARD, layers: str = LAYERS,
                   remat: str = "none") -> StepFunctions:
    """`layers`: the model's layer layout (model.LAYER_LAYOUTS); runs train scanned, `unrolled` is the
    layout of runs written before the scan, kept for the tests that compare the two. `remat`: what the
    backward pass recomputes of each block (model.REMAT_POLICIES)."""
    dtype = jnp.dtype(dtype_name)
    model_of = functools.partial(Transformer, shape, dtype=dtype, attention=attention, parametrization=parametrization,
                                 layers=layers, remat=remat)
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: model_of(rngs=nnx.Rngs(0))))
    m = parametrization.width_multiplier(shape.d_model) if parametrization.mup else None
    tx = adamw(beta1, beta2, weight_decay, grad_clip, m)

    def init(seed):
        # The seed is traced (not static), so runs that differ only in seed share one compilation.
        model = model_of(rngs=nnx.Rngs(jax.random.key(seed)))
        params = nnx.state(model, nnx.Param)
        return params, tx.init(params)

    def loss_fn(params, x, y):
        logits = nnx.merge(graphdef, params)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def loss_and_grads(params, x, y):
        if microbatches == 1:
            return jax.value_and_grad(loss_fn)(params, x, y)
        # Microbatch j holds rows j, j + m, j + 2m, ...: every device keeps an equal share of each, so
        # accumulation adds no communication. Equal sizes make the mean of means the full mean.
        m = microbatches
        xs, ys = (t.reshape(t.shape[0] // m, m, t.shape[1]).swapaxes(0, 1) for t in (x, y))

        def accumulate(carry, xy):
            loss, grads = jax.value_and_grad(loss_fn)(params, *xy)
            return jax.tree.map(jnp.add, carry, (loss, grads)), None

        zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
        (loss, grads), _ = jax.lax.scan(accumulate, zeros, (xs, ys))
        return jax.tree.map(lambda t: t / m, (loss, grads))

    def update(params, opt_state, x, y, lr):
        loss, grads = loss_and_grads(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return params, opt_state, loss, optax.global_norm(grads)

    return StepFunctions(init, update, loss_fn)


def scanned(update: Callable) -> Callable:
    """`update` over a call's stacked steps (lax.scan). Steps whose `active` is all false (the padding of
    a short call) skip the computation; the state passes through them bit for bit."""
    def steps(params, opt_state, xs, ys, lrs, active):
        def one(carry, step):
            x, y, lr, on = step
            zeros = jnp.zeros(jnp.shape(on), jnp.float32)
            skip = lambda p, o, *_: (p, o, zeros, zeros)  # noqa: E731
            p, o, loss, norm = jax.lax.cond(jnp.any(on), update, skip, *carry, x, y, lr, on)
            return (p, o), (loss, norm)

        (params, opt_state), (losses, norms) = jax.lax.scan(one, (params, opt_state), (xs, ys, lrs, active))
        return params, opt_state, losses, norms
    return steps


@functools.lru_cache(maxsize=16)
def compiled_fns(shape: ModelShape, dtype_name: str, beta1: float, beta2: float, weight_decay: float,
                 grad_clip: float, layout: Layout | None = None, attention: str = "xla",
                 parametrization: Parametrization = STANDARD, layers: str = LAYERS, remat: str = "none") -> CompiledRun:
    """The jitted init, train step and eval for one shape, optimizer and layout; cached so a sweep's
    runs of the same shape reuse XLA's compiled code instead of tracing and compiling again."""
    layout = layout or Layout.single()
    mesh, batch, scalar, stacked = placement(layout)
    fns = step_functions(shape, dtype_name, beta1, beta2, weight_decay, grad_clip, layout.microbatches, attention,
                         parametrization, layers, remat)
    state = tree_shardings(jax.eval_shape(fns.init, jnp.uint32(0)), mesh)
    params_sharding, opt_sharding = state

    train_step = jax.jit(fns.update, donate_argnums=(0, 1),
                         in_shardings=(params_sharding, opt_sharding, batch, batch, scalar),
                         out_shardings=(params_sharding, opt_sharding, scalar, scalar))
    train_steps = jax.jit(scanned(lambda p, o, x, y, lr, on: fns.update(p, o, x, y, lr)), donate_argnums=(0, 1),
                          in_shardings=(params_sharding, opt_sharding, stacked, stacked, scalar, scalar),
                          out_shardings=(params_sharding, opt_sharding, scalar, scalar))
    eval_loss = jax.jit(fns.loss, in_shardings=(params_sharding, scalar, scalar), out_shardings=scalar)
    init_placed = jax.jit(fns.init, out_shardings=state)
    return CompiledRun(init_placed, train_step, eval_loss, train_steps)


class PackedRun(NamedTuple):
    """`pack_size` runs of one shape in one compiled step, every array with a leading run axis of pack_size."""

    init: Callable  # seeds (pack_size,) -> stacked (params, opt_state)
    # (params, opt_state, xs, ys, lrs, active) with xs, ys (steps_per_call, pack_size, batch, seq_len) and
    # lrs, active (steps_per_call, pack_size) -> (params, opt_state, losses and grad_norms (steps_per_call,
    # pack_size)); a run whose `active` is false at a step keeps its state exactly (it has finished, or
    # its slot is empty)
    train_steps: Callable


PACK_MODES = ("map", "vmap")


def default_pack_mode() -> str:
    """`vmap` on accelerators, where one small model leaves the device idle and a pack of them batch
    into larger kernels; `map` on CPU, where a single small run already keeps the cores busy and XLA's
    batched matmuls are slower than pack_size plain ones (measured: README, Performance)."""
    return "map" if jax.devices()[0].platform == "cpu" else "vmap"


@functools.lru_cache(maxsize=16)
def packed_fns(shape: ModelShape, dtype_name: str, beta1: float, beta2: float, weight_decay: float,
               grad_clip: float, attention: str = "xla", mode: str | None = None,
               parametrization: Parametrization = STANDARD, layers: str = LAYERS, remat: str = "none") -> PackedRun:
    """One run's step over a pack of runs on one device. `vmap` batches the runs' arithmetic into one set
    of kernels; `map` runs the single-run step for each in turn inside the call (lax.map), the same
    operations a run does alone, so its results match the run's alone bit for bit. Either way no value
    crosses the run axis, and a run whose `active` is false keeps its state exactly."""
    mode = mode or default_pack_mode()
    if mode not in PACK_MODES:
        raise UsageError(f"pack mode {mode!r}: allowed {', '.join(PACK_MODES)}")
    fns = step_functions(shape, dtype_name, beta1, beta2, weight_decay, grad_clip, 1, attention, parametrization,
                         layers, remat)

    def keep_if(on, new, old):
        return jax.tree.map(lambda n, o: jnp.where(on.reshape(on.shape + (1,) * (n.ndim - 1)), n, o), new, old)

    def vmapped(params, opt_state, x, y, lr, on):
        new_params, new_opt, loss, norm = jax.vmap(fns.update)(params, opt_state, x, y, lr)
        return (keep_if(on, new_params, params), keep_if(on, new_opt, opt_state),
                jnp.where(on, loss, 0.0), jnp.where(on, norm, 0.0))

    def mapped(params, opt_state, x, y, lr, on):
        def one(run):
            p, o, xi, yi, lri, oni = run
            skip = lambda p, o, *_: (p, o, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))  # noqa: E731
            return jax.lax.cond(oni, fns.update, skip, p, o, xi, yi, lri)
        return jax.lax.map(one, (params, opt_state, x, y, lr, on))

    update = vmapped if mode == "vmap" else mapped
    return PackedRun(jax.jit(jax.vmap(fns.init)), jax.jit(scanned(update), donate_argnums=(0, 1)))
