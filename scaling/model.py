"""The Flax NNX decoder-only transformer: pre-norm RMSNorm, rotary positions, causal attention through
`jax.nn.dot_product_attention`, SwiGLU or GELU MLP, no biases, tied or untied embeddings, optional
QK-norm. Parameters are stored in float32; `dtype` is the compute dtype (bfloat16 on accelerators).
Standard or muP parametrization (family.Parametrization): muP changes the hidden init, the attention
scale and the readout multiplier here, and the per-layer learning rates in train.step.

Layers are `scanned` (every run's layout): the blocks' parameters stacked along a leading layer axis and
applied by one `jax.lax.scan`, so the compiled step holds one block body whatever the depth. `unrolled`
(a Python loop over `nnx.List`, the layout of runs written before the scan) stays reachable for the
equivalence tests and timing; its checkpoints convert to the stacked tree on restore (train.checkpoints)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from scaling.family import STANDARD, ModelShape, Parametrization

_INIT_STD = 0.02


def _dense(n_in: int, n_out: int, dtype, rngs: nnx.Rngs, std: float = _INIT_STD) -> nnx.Linear:
    return nnx.Linear(
        n_in, n_out, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
        kernel_init=nnx.initializers.normal(std), rngs=rngs,
    )


def rotary(x: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotary position embedding on (batch, seq, heads, head_dim); the tables are constants XLA folds."""
    seq, dim = x.shape[1], x.shape[-1]
    inv_freq = 1.0 / (base ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    angles = jnp.arange(seq, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    cos = jnp.cos(angles)[None, :, None, :].astype(x.dtype)
    sin = jnp.sin(angles)[None, :, None, :].astype(x.dtype)
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


# The causal-attention kernels a run can execute (config `attention`; `auto` is resolved in
# train.step.attention_implementation), each with the share of the T x T score square it computes, which
# flops_model counts (attention_fraction):
# - `xla`: one jax.nn.dot_product_attention call; XLA (CPU, GPU and TPU alike) computes the full square
#   and masks it: fraction 1.
# - `cudnn`: cuDNN's fused flash kernel (NVIDIA GPUs, bf16/fp16), one call; it skips the key tiles wholly
#   above the diagonal. Its tile size is the kernel's own, so we count the causal half (fraction 1/2):
#   the diagonal tiles' masked halves it also computes are left out, which keeps MFU a lower bound.
# - `blocks`: a loop of shape.attention_blocks query blocks, each over the keys up to its end: the lower
#   triangle of blocks, (nb + 1) / (2 nb) of the square (the convention family.py's docstring describes).
ATTENTION_KERNELS = ("xla", "cudnn", "blocks")
CUDNN_ATTENTION_FRACTION = 0.5
# The convention's name, recorded beside the kernel (config.yaml's resolved section, summary.json).
ATTENTION_CONVENTIONS = {"xla": "full_square", "cudnn": "causal_half", "blocks": "query_blocks"}


def attention_convention(kernel: str) -> str:
    """How flops_model counts `kernel`'s attention: the full square, the causal half, or the lower
    triangle of query blocks."""
    return ATTENTION_CONVENTIONS[kernel]


def attention_fraction(kernel: str, shape: ModelShape) -> float:
    """The share of the causal score square `kernel` computes at `shape` (see ATTENTION_KERNELS)."""
    if kernel == "blocks":
        return shape.executed_attention_fraction
    if kernel == "cudnn":
        return CUDNN_ATTENTION_FRACTION
    if kernel == "xla":
        return 1.0
    raise ValueError(f"attention kernel {kernel!r}: allowed {', '.join(ATTENTION_KERNELS)}")


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, n_blocks: int, implementation: str = "xla",
                     scale: float | None = None) -> jax.Array:
    """Causal attention over (batch, seq, heads, head_dim) with the kernel `implementation` (see
    ATTENTION_KERNELS): one fused call (`xla`, `cudnn`), or `n_blocks` query blocks that each attend only
    to the keys up to their own end (`blocks`): the same result as the masked full square, without
    computing the key blocks that lie wholly above the diagonal. `scale` multiplies the scores (None:
    1/sqrt(head_dim))."""
    if implementation in ("xla", "cudnn"):
        return jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True, implementation=implementation)
    if implementation != "blocks":
        raise ValueError(f"attention kernel {implementation!r}: allowed {', '.join(ATTENTION_KERNELS)}")
    if n_blocks == 1:
        return jax.nn.dot_product_attention(q, k, v, scale=scale, is_causal=True, implementation="xla")
    size = q.shape[1] // n_blocks
    outputs = []
    for i in range(n_blocks):
        end = (i + 1) * size
        mask = jnp.arange(end)[None, :] <= (i * size + jnp.arange(size))[:, None]
        outputs.append(jax.nn.dot_product_attention(q[:, i * size:end], k[:, :end], v[:, :end], scale=scale,
                                                    mask=mask[None, None], implementation="xla"))
    return jnp.concatenate(outputs, axis=1)


class Attention(nnx.Module):
    def __init__(self, shape: ModelShape, dtype, rngs: nnx.Rngs, attention: str = "xla",
                 parametrization: Parametrization = STANDARD):
        d = shape.d_model
        self.implementation = attention
        self.n_heads, self.head_dim, self.n_blocks = shape.n_heads, shape.head_dim, shape.attention_blocks
        self.scale = parametrization.attention_scale(shape.head_dim)
        init = hidden_init_scale(shape, parametrization)
        # One fused QKV matmul: one large GEMM beats three small ones on CPU and GPU alike.
        self.qkv = _dense(d, 3 * d, dtype, rngs, std=_INIT_STD * init)
        self.proj = _dense(d, d, dtype, rngs, std=_INIT_STD / (2 * shape.n_layers) ** 0.5 * init)
        if shape.qk_norm:
            self.q_norm = nnx.RMSNorm(shape.head_dim, epsilon=1e-6, dtype=dtype, rngs=rngs)
            self.k_norm = nnx.RMSNorm(shape.head_dim, epsilon=1e-6, dtype=dtype, rngs=rngs)
        else:
            self.q_norm = self.k_norm = None

    def __call__(self, x: jax.Array, batch: int) -> jax.Array:
        tokens, d = x.shape
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        q, k, v = (t.reshape(batch, tokens // batch, self.n_heads, self.head_dim) for t in (q, k, v))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = rotary(q), rotary(k)
        return self.proj(causal_attention(q, k, v, self.n_blocks, self.implementation, self.scale).reshape(tokens, d))


class MLP(nnx.Module):
    def __init__(self, shape: ModelShape, dtype, rngs: nnx.Rngs, parametrization: Parametrization = STANDARD):
        self.kind, self.d_ff = shape.mlp, shape.d_ff
        n_up = 2 * shape.d_ff if shape.mlp == "swiglu" else shape.d_ff  # gate and up fused
        init = hidden_init_scale(shape, parametrization)
        self.up = _dense(shape.d_model, n_up, dtype, rngs, std=_INIT_STD * init)
        self.down = _dense(shape.d_ff, shape.d_model, dtype, rngs, std=_INIT_STD / (2 * shape.n_layers) ** 0.5 * init)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.up(x)
        if self.kind == "swiglu":
            gate, up = jnp.split(h, 2, axis=-1)
            h = jax.nn.silu(gate) * up
        else:
            h = jax.nn.gelu(h)
        return self.down(h)


class Block(nnx.Module):
    def __init__(self, shape: ModelShape, dtype, rngs: nnx.Rngs, attention: str = "xla",
                 parametrization: Parametrization = STANDARD):
        self.attn_norm = nnx.RMSNorm(shape.d_model, epsilon=1e-6, dtype=dtype, rngs=rngs)
        self.attn = Attention(shape, dtype, rngs, attention, parametrization)
        self.mlp_norm = nnx.RMSNorm(shape.d_model, epsilon=1e-6, dtype=dtype, rngs=rngs)
        self.mlp = MLP(shape, dtype, rngs, parametrization)

    def __call__(self, x: jax.Array, batch: int) -> jax.Array:
        x = x + self.attn(self.attn_norm(x), batch)
        return x + self.mlp(self.mlp_norm(x))


LAYER_LAYOUTS = ("scanned", "unrolled")
# What the backward pass keeps of a block's forward pass: everything (none recomputed), the matmul outputs
# (the rest recomputed), or nothing but the block's input (all recomputed): memory traded for FLOPs.
REMAT_POLICIES = {"none": None, "dots": jax.checkpoint_policies.checkpoint_dots,
                  "full": jax.checkpoint_policies.nothing_saveable}


class Transformer(nnx.Module):
    def __init__(self, shape: ModelShape, *, rngs: nnx.Rngs, dtype=jnp.float32, attention: str = "xla",
                 parametrization: Parametrization = STANDARD, layers: str = "scanned", remat: str = "none"):
        if layers not in LAYER_LAYOUTS or remat not in REMAT_POLICIES or attention not in ATTENTION_KERNELS:
            raise ValueError(f"layers={layers!r}, remat={remat!r}, attention={attention!r}: allowed "
                             f"{', '.join(LAYER_LAYOUTS)}; {', '.join(REMAT_POLICIES)}; {', '.join(ATTENTION_KERNELS)}")
        self.shape, self.layers, self.remat = shape, layers, remat
        # muP's readout multiplier output_mult/m: without the 1/m the logits' change after an Adam step grows
        # with width; output_mult is the base model's own (tuned at the base width, like its lr).
        self.output_scale = (parametrization.output_mult / parametrization.width_multiplier(shape.d_model)
                             if parametrization.mup else None)
        self.embed = nnx.Embed(
            shape.vocab_size, shape.d_model, dtype=dtype, param_dtype=jnp.float32,
            embedding_init=nnx.initializers.normal(_INIT_STD), rngs=rngs,
        )
        # Built one by one in either layout, so a seed draws the same weights scanned as unrolled.
        blocks = [Block(shape, dtype, rngs, attention, parametrization) for _ in range(shape.n_layers)]
        self.blocks = nnx.List(blocks) if layers == "unrolled" else stack_blocks(blocks)
        self.final_norm = nnx.RMSNorm(shape.d_model, epsilon=1e-6, dtype=dtype, rngs=rngs)
        self.unembed = None if shape.tied else _dense(shape.d_model, shape.vocab_size, dtype, rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """Token ids (batch, seq) -> float32 logits (batch, seq, vocab).

        Activations are kept as a (batch * seq, d_model) matrix between attention calls: the weight
        gradients are then plain 2-D matmuls, which XLA's CPU backend runs twice as fast as the same
        contraction over (batch, seq)."""
        batch, seq = tokens.shape
        x = self.embed(tokens.reshape(batch * seq))
        blocks = self.block_list() if self.layers == "unrolled" else [self.blocks]
        graphdef, _ = nnx.split(blocks[0])
        apply = lambda params, x: nnx.merge(graphdef, params)(x, batch)  # noqa: E731
        if self.remat != "none":
            apply = jax.checkpoint(apply, policy=REMAT_POLICIES[self.remat])
        if self.layers == "unrolled":
            for block in blocks:
                x = apply(nnx.state(block), x)
        else:
            x, _ = jax.lax.scan(lambda x, params: (apply(params, x), None), x, nnx.state(self.blocks))
        return self.readout(x).reshape(batch, seq, -1)

    def block_list(self) -> list[Block]:
        """The blocks in order, one module each (the scanned layout's are slices of its stacked arrays)."""
        if self.layers == "unrolled":
            return list(self.blocks)
        graphdef, stacked = nnx.split(self.blocks)
        return [nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], stacked)) for i in range(self.shape.n_layers)]

    def readout(self, x: jax.Array) -> jax.Array:
        """The residual stream (tokens, d_model) -> float32 logits (tokens, vocab)."""
        x = self.final_norm(x)
        logits = (self.embed.attend(x) if self.unembed is None else self.unembed(x)).astype(jnp.float32)
        return logits if self.output_scale is None else logits * self.output_scale


def hidden_init_scale(shape: ModelShape, parametrization: Parametrization) -> float:
    """The hidden matrices' init std relative to the base model's: 1/sqrt(m) under muP (fan-in grows by m),
    exactly 1 otherwise."""
    return 1.0 / math.sqrt(parametrization.width_multiplier(shape.d_model))


def stack_blocks(blocks: list[Block]) -> Block:
    """One Block whose every parameter has a leading layer axis (block i's values at index i)."""
    graphdef, first = nnx.split(blocks[0])
    stacked = jax.tree.map(lambda *layers: jnp.stack(layers), first, *(nnx.state(b) for b in blocks[1:]))
    return nnx.merge(graphdef, stacked)


def _key(entry) -> object:
    for field in ("key", "name", "idx"):
        if hasattr(entry, field):
            return getattr(entry, field)
    return str(entry)


def layer_stacked(path) -> bool:
    """True for a leaf of the scanned blocks (its leading axis is the layer), anywhere in a tree of
    parameters or of optimizer state: the path passes `blocks` and goes on by name, not by layer index."""
    keys = [_key(entry) for entry in path]
    return any(k == "blocks" and i + 1 < len(keys) and not isinstance(keys[i + 1], int) for i, k in enumerate(keys))


def matrix_rank(path, leaf) -> int:
    """The leaf's dimensions apart from the layer axis: what a per-array rule (decay, sharding, muP) reads."""
    return leaf.ndim - layer_stacked(path)


def hidden_matrices(params) -> object:
    """True at muP's hidden weights, the matrices inside the blocks (both their dimensions grow with width),
    False at the embedding, the output layer and the norm scales: the per-layer learning-rate mask."""
    def hidden(path, leaf) -> bool:
        return _key(path[0]) == "blocks" and matrix_rank(path, leaf) >= 2
    return jax.tree_util.tree_map_with_path(hidden, params)


def count_params(model: nnx.Module) -> int:
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
