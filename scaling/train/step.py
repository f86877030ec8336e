"""The compiled training step: one jitted AdamW step per (shape, optimizer), cached so that a sweep's runs
of one shape share XLA's compiled code."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from scaling.family import ModelShape
from scaling.model import Transformer


def compute_dtype(setting: str):
    """float32 on CPU (where bf16 matmuls are slower), bf16 on accelerators, or the named dtype."""
    if setting == "auto":
        return jnp.float32 if jax.devices()[0].platform == "cpu" else jnp.bfloat16
    return jnp.dtype(setting)


@functools.lru_cache(maxsize=16)
def compiled_fns(shape: ModelShape, dtype_name: str, beta1: float, beta2: float, weight_decay: float,
                 grad_clip: float):
    """(init, train_step, eval_loss) for one shape and optimizer; cached so a sweep's runs of the same
    shape reuse XLA's compiled code instead of tracing and compiling again."""
    dtype = jnp.dtype(dtype_name)
    abstract = nnx.eval_shape(lambda: Transformer(shape, rngs=nnx.Rngs(0), dtype=dtype))
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
        model = Transformer(shape, rngs=nnx.Rngs(jax.random.key(seed)), dtype=dtype)
        params = nnx.state(model, nnx.Param)
        return params, tx.init(params)

    def loss_fn(params, x, y):
        logits = nnx.merge(graphdef, params)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, x, y, lr):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return params, opt_state, loss, optax.global_norm(grads)

    @jax.jit
    def eval_loss(params, x, y):
        return loss_fn(params, x, y)

    return jax.jit(init), train_step, eval_loss
