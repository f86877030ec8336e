"""The compiled training step: one jitted AdamW step per (shape, optimizer), cached so that a sweep's runs
of one shape share XLA's compiled code."""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from scaling.errors import UsageError
from scaling.family import ModelShape
from scaling.model import Transformer
from scaling.train.mesh import MeshShape, batch_sharding, make_mesh, replicated, tree_shardings


def attention_implementation(setting: str, dtype_name: str) -> str:
    """`auto` picks cuDNN's fused flash attention on NVIDIA GPUs in 16-bit, XLA's otherwise."""
    platform = jax.devices()[0].platform
    if setting == "auto":
        return "cudnn" if platform == "gpu" and dtype_name in ("bfloat16", "float16") else "xla"
    if setting == "cudnn" and (platform != "gpu" or dtype_name not in ("bfloat16", "float16")):
        raise UsageError(f"attention=cudnn needs an NVIDIA GPU and dtype=bfloat16 (this run: {platform}, {dtype_name})")
    return setting


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


class Placement(NamedTuple):
    mesh: Mesh
    batch: NamedSharding  # token batches: rows over every device
    replicated: NamedSharding


@functools.lru_cache(maxsize=16)
def placement(layout: Layout) -> Placement:
    mesh = layout.make_mesh()
    return Placement(mesh, batch_sharding(mesh), replicated(mesh))


@functools.lru_cache(maxsize=16)
def compiled_fns(shape: ModelShape, dtype_name: str, beta1: float, beta2: float, weight_decay: float,
                 grad_clip: float, layout: Layout | None = None, attention: str = "xla") -> CompiledRun:
    """The jitted init, train step and eval for one shape, optimizer and layout; cached so a sweep's
    runs of the same shape reuse XLA's compiled code instead of tracing and compiling again."""
    layout = layout or Layout.single()
    mesh, batch, scalar = placement(layout)
    dtype = jnp.dtype(dtype_name)
    abstract = nnx.eval_shape(lambda: Transformer(shape, rngs=nnx.Rngs(0), dtype=dtype, attention=attention))
    graphdef, _ = nnx.split(abstract)

    # AdamW with the learning rate left out: it is applied in the step from an argument, so the
    # schedule (which depends on the run's length) does not force a recompilation.
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # no decay on norm scales
    tx = optax.chain(
        optax.clip_by_global_norm(grad_clip) if grad_clip > 0 else optax.identity(),
        optax.scale_by_adam(b1=beta1, b2=beta2, eps=1e-8),
        optax.add_decayed_weights(weight_decay, mask=decay_mask),
    )

    def init(seed):
        # The seed is traced (not static), so runs that differ only in seed share one compilation.
        model = Transformer(shape, rngs=nnx.Rngs(jax.random.key(seed)), dtype=dtype, attention=attention)
        params = nnx.state(model, nnx.Param)
        return params, tx.init(params)

    state = tree_shardings(jax.eval_shape(init, jnp.uint32(0)), mesh)
    params_sharding, opt_sharding = state

    def loss_fn(params, x, y):
        logits = nnx.merge(graphdef, params)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def loss_and_grads(params, x, y):
        if layout.microbatches == 1:
            return jax.value_and_grad(loss_fn)(params, x, y)
        # Microbatch j holds rows j, j + m, j + 2m, ...: every device keeps an equal share of each, so
        # accumulation adds no communication. Equal sizes make the mean of means the full mean.
        m = layout.microbatches
        xs, ys = (t.reshape(t.shape[0] // m, m, t.shape[1]).swapaxes(0, 1) for t in (x, y))

        def accumulate(carry, xy):
            loss, grads = jax.value_and_grad(loss_fn)(params, *xy)
            return jax.tree.map(jnp.add, carry, (loss, grads)), None

        zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
        (loss, grads), _ = jax.lax.scan(accumulate, zeros, (xs, ys))
        return jax.tree.map(lambda t: t / m, (loss, grads))

    @functools.partial(jax.jit, donate_argnums=(0, 1),
                       in_shardings=(params_sharding, opt_sharding, batch, batch, scalar),
                       out_shardings=(params_sharding, opt_sharding, scalar, scalar))
    def train_step(params, opt_state, x, y, lr):
        loss, grads = loss_and_grads(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return params, opt_state, loss, optax.global_norm(grads)

    @functools.partial(jax.jit, in_shardings=(params_sharding, scalar, scalar), out_shardings=scalar)
    def eval_loss(params, x, y):
        return loss_fn(params, x, y)

    init_placed = jax.jit(init, out_shardings=state)
    return CompiledRun(init_placed, train_step, eval_loss)
