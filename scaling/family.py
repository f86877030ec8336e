"""The size recipe: a target parameter count (or a width) -> a ModelShape, and the exact accounting.

Recipe (one place for every size-dependent choice):
- width `d_model` is a multiple of 16 below 256 and of 64 from 256 up (SIMD / tensor-core friendly);
- depth `n_layers = clamp(round(d_model / 64), 1, 48)`: the GPT-3/Chinchilla aspect ratio of ~64-128
  width per layer, kept at the low end because small models gain more from depth;
- heads of 64 dimensions from width 256 up; below it up to 4 heads of at least 16 dimensions (narrower
  heads make the T x T attention tensors, not the matmuls, dominate a small model's step time);
- SwiGLU hidden size 8/3·d (GELU: 4·d), rounded up to the width multiple;
- peak learning rate and batch size from `default_lr` and `default_batch_size` below.
Given a target N, the recipe walks the allowed widths and picks the shape whose total parameter count
is nearest the target in log space, so `params=1e6` means "about 1e6 parameters, exactly this many".

Accounting (DESIGN.md "Accounting"):
- `params` counts every trainable parameter, embeddings included (Chinchilla); `params_nonembed`
  leaves out the token embedding and, when untied, the output matrix (Kaplan).
- `flops_per_token` is the training cost of one token: 3 x the forward cost (backward = 2 x forward),
  with the forward cost = 2 x every matmul weight (QKV, output projection, MLP, output layer) plus the
  attention matmuls. Causal-attention convention: we count QK^T and AV over the key blocks the model
  executes. Attention runs in query blocks of ATTENTION_BLOCK tokens, each over the keys up to its
  end, so with nb = T / ATTENTION_BLOCK blocks a fraction (nb + 1) / (2 nb) of the T x T square is
  computed (1 when T fits in one block); that is what XLA's cost analysis reports too. The useful
  (unmasked) half is `flops_per_token(causal_fraction=0.5)`.
  Norms, softmax, RoPE and the optimizer update are not counted (<2% at the sizes we train).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from scaling.errors import UsageError

MLP_KINDS = ("swiglu", "gelu")
# Causal attention runs in query blocks of this many tokens, skipping the key blocks wholly above the
# diagonal: a third less attention work than the masked full square at T = 256 (measured on CPU).
ATTENTION_BLOCK = 64


@dataclass(frozen=True)
class ModelShape:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    seq_len: int
    mlp: str = "swiglu"
    tied: bool = True
    qk_norm: bool = False

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{name}={value!r}: must be a positive integer")
        if self.d_model % self.n_heads:
            raise UsageError(
                f"n_heads={self.n_heads} does not divide d_model={self.d_model}; "
                f"allowed: a divisor of {self.d_model}"
            )
        if self.head_dim % 2:
            raise UsageError(f"head_dim={self.head_dim} (d_model/n_heads) must be even for rotary positions")
        if self.mlp not in MLP_KINDS:
            raise UsageError(f"mlp={self.mlp!r}: allowed {', '.join(MLP_KINDS)}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    # ---- exact parameter counts ---------------------------------------------------------------
    @property
    def layer_matmul_params(self) -> int:
        mlp_mats = 3 if self.mlp == "swiglu" else 2
        return 4 * self.d_model * self.d_model + mlp_mats * self.d_model * self.d_ff

    @property
    def layer_params(self) -> int:
        norms = 2 * self.d_model + (2 * self.head_dim if self.qk_norm else 0)
        return self.layer_matmul_params + norms

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.d_model * (1 if self.tied else 2)

    @property
    def params_nonembed(self) -> int:
        return self.n_layers * self.layer_params + self.d_model  # + final norm

    @property
    def params(self) -> int:
        return self.params_nonembed + self.embedding_params

    # ---- FLOPs ----------------------------------------------------------------------------------
    @property
    def attention_blocks(self) -> int:
        """Query blocks the causal attention is split into (see model.Attention)."""
        if self.seq_len > ATTENTION_BLOCK and self.seq_len % ATTENTION_BLOCK == 0:
            return self.seq_len // ATTENTION_BLOCK
        return 1

    @property
    def executed_attention_fraction(self) -> float:
        nb = self.attention_blocks
        return (nb + 1) / (2 * nb)

    def forward_flops_per_token(self, causal_fraction: float | None = None) -> int | float:
        matmuls = 2 * (self.n_layers * self.layer_matmul_params + self.d_model * self.vocab_size)
        # QK^T and AV: each T·d multiply-adds per token per layer over the full square.
        if causal_fraction is None:
            causal_fraction = self.executed_attention_fraction
        attention = 2 * 2 * self.n_layers * self.seq_len * self.d_model * causal_fraction
        return matmuls + attention

    def flops_per_token(self, causal_fraction: float | None = None) -> int | float:
        """Training FLOPs per token (forward + backward), see the module docstring."""
        return 3 * self.forward_flops_per_token(causal_fraction)

    def describe(self) -> str:
        return f"d{self.d_model}-L{self.n_layers}-H{self.n_heads}"

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.update(
            head_dim=self.head_dim,
            params=self.params,
            params_nonembed=self.params_nonembed,
            flops_per_token=self.flops_per_token(),
        )
        return out


# ---- the recipe --------------------------------------------------------------------------------
def width_multiple(d_model: int) -> int:
    return 16 if d_model < 256 else 64


def allowed_widths(max_width: int = 16384) -> list[int]:
    return [w for w in range(16, max_width + 1, 16) if w % width_multiple(w) == 0]


def _round_up(x: float, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


def shape_for_width(
    d_model: int,
    *,
    vocab_size: int = 256,
    seq_len: int = 256,
    mlp: str = "swiglu",
    tied: bool = True,
    qk_norm: bool = False,
    n_layers: int | None = None,
    n_heads: int | None = None,
    d_ff: int | None = None,
) -> ModelShape:
    if d_model < 16 or d_model % 2:
        raise UsageError(f"d_model={d_model}: must be an even integer >= 16")
    if n_layers is None:
        n_layers = min(48, max(1, round(d_model / 64)))
    if n_heads is None:
        n_heads = d_model // 64 if d_model >= 256 and d_model % 64 == 0 else max(1, min(4, d_model // 16))
    if d_ff is None:
        hidden = 8 * d_model / 3 if mlp == "swiglu" else 4 * d_model
        d_ff = _round_up(hidden, width_multiple(d_model))
    return ModelShape(vocab_size, d_model, n_layers, n_heads, d_ff, seq_len, mlp, tied, qk_norm)


def shape_for_params(target: float, **kwargs) -> ModelShape:
    """The recipe's shape whose total parameter count is nearest `target` in log space."""
    if not (target > 0 and math.isfinite(target)):
        raise UsageError(f"params={target!r}: must be a positive number")
    best, best_gap = None, math.inf
    for width in allowed_widths():
        shape = shape_for_width(width, **kwargs)
        gap = abs(math.log(shape.params / target))
        if gap < best_gap:
            best, best_gap = shape, gap
        elif shape.params > target:  # counts grow with width: once past the target and worse, stop
            break
    return best


def default_lr(shape: ModelShape) -> float:
    """Peak AdamW learning rate: 3e-3 at width 256, scaled as 1/sqrt(width) (muP-like for Adam would
    be 1/width; the square root is the milder, commonly tuned compromise), clipped to [3e-4, 1e-2]."""
    return float(min(1e-2, max(3e-4, 3e-3 * math.sqrt(256 / shape.d_model))))


def default_batch_size(shape: ModelShape) -> int:
    """Sequences per step: 16 x 256 tokens below 1e7 parameters (keeps small runs many steps long on
    a CPU), doubling per decade above it (larger models tolerate larger critical batches)."""
    if shape.params < 1e7:
        return 16
    return int(16 * 2 ** min(5, math.floor(math.log10(shape.params / 1e7)) + 1))
