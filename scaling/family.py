"""The size recipe: a target parameter count (or a width) -> a ModelShape, and the exact accounting.

Recipe (`Recipe`, one frozen object for every size-dependent choice; `scaling family --recipe` prints it):
- width `d_model` is a multiple of 16 below 256 and of 64 from 256 up (SIMD / tensor-core friendly);
- depth `n_layers = clamp(round(d_model / 64), 1, 48)`: the GPT-3/Chinchilla aspect ratio of ~64-128
  width per layer, kept at the low end because small models gain more from depth;
- heads of 64 dimensions from width 256 up; below it up to 4 heads of at least 16 dimensions (narrower
  heads make the T x T attention tensors, not the matmuls, dominate a small model's step time);
- SwiGLU hidden size 8/3·d (GELU: 4·d), rounded up to the width multiple;
- peak learning rate and batch size from `default_lr` and `default_batch_size` below.
Given a target N, the recipe walks the allowed widths and picks the shape whose total parameter count
is nearest the target in log space, so `params=1e6` means "about 1e6 parameters, exactly this many".

Accounting (docs/contracts.md "Accounting"):
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


# ---- the parametrization ------------------------------------------------------------------------
PARAMETRIZATIONS = ("standard", "mup")


@dataclass(frozen=True)
class Parametrization:
    """How initialisation, per-layer learning rates and the output scale depend on width.

    `standard`: one init std (0.02) and one learning rate for every parameter, whatever the width.
    `mup`: muP for Adam (Yang et al. 2022, Tensor Programs V; the `mup` package's MuReadout and MuAdamW)
    relative to a base model `base_width` wide. With the width multiplier m = d_model / base_width:
    - hidden matrices (attention qkv and output, MLP up and down): init std / sqrt(m), Adam lr / m;
    - embedding, output layer and norm scales: the base init and lr;
    - logits x output_mult/m (the readout multiplier; with tied embeddings the shared matrix keeps the
      embedding's init and lr and only the readout is scaled, as the `mup` package's MuSharedReadout does).
      `output_mult` is a base-model hyperparameter like the lr (the `mup` package's `output_mult`): tuned
      at the base width, it transfers; the recipe's (`mup_output_mult`) was tuned on stdlib at width 64;
    - attention scores scaled by sqrt(d_head0)/d_head, d_head0 the base width's head size: 1/d_head as
      heads widen (q and k move together in training, so their dot product grows as d_head), and exactly
      the standard 1/sqrt(d_head) at the base width.
    At m = 1 and output_mult = 1 muP is therefore the standard parametrization exactly (tests/train/test_mup.py)."""

    name: str = "standard"
    base_width: int | None = None  # mup only
    output_mult: float = 1.0  # mup only: the base model's readout multiplier

    @classmethod
    def of(cls, name: str, base_width: int | None = None, output_mult: float | None = None,
           recipe: Recipe | None = None) -> Parametrization:
        """A run's parametrization from its config keys; base_width and output_mult default to the
        recipe's and are ignored under `standard` (so every standard run shares one compiled step)."""
        if name not in PARAMETRIZATIONS:
            raise UsageError(f"parametrization={name!r}: allowed {', '.join(PARAMETRIZATIONS)}")
        if name == "standard":
            return cls()
        recipe = recipe or RECIPE
        return cls(name, int(base_width or recipe.mup_base_width),
                   float(recipe.mup_output_mult if output_mult is None else output_mult))

    @classmethod
    def of_config(cls, cfg) -> Parametrization:
        """The parametrization a RunConfig asks for."""
        return cls.of(cfg.parametrization, cfg.base_width, cfg.output_mult)

    @property
    def mup(self) -> bool:
        return self.name == "mup"

    def width_multiplier(self, d_model: int) -> float:
        return d_model / self.base_width if self.mup else 1.0

    def attention_scale(self, head_dim: int) -> float | None:
        """The attention scores' multiplier (None: the standard 1/sqrt(head_dim))."""
        if not self.mup:
            return None
        return math.sqrt(self.base_width // RECIPE.n_heads(self.base_width)) / head_dim


STANDARD = Parametrization()


# ---- the recipe --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """Every size-dependent choice of the family, in one frozen object (see the module docstring)."""

    min_width: int = 16
    """The narrowest model."""
    max_width: int = 16384
    """The widest model `shape_for_params` considers."""
    small_width_multiple: int = 16
    """Widths below `large_width` are multiples of this (SIMD-friendly on CPU)."""
    large_width: int = 256
    """From this width up, widths are multiples of `large_width_multiple` and heads `large_head_dim` wide."""
    large_width_multiple: int = 64
    """Width multiple from `large_width` up (tensor-core friendly)."""
    width_per_layer: int = 64
    """Depth = round(width / this): the GPT-3/Chinchilla aspect ratio's low end (small models gain from depth)."""
    max_layers: int = 48
    """Depth is clamped to [1, max_layers]."""
    large_head_dim: int = 64
    """Head size from `large_width` up."""
    small_max_heads: int = 4
    """Below `large_width`: at most this many heads ..."""
    small_min_head_dim: int = 16
    """... each at least this wide (narrower heads make the T x T attention tensors dominate the step)."""
    swiglu_hidden_ratio: float = 8 / 3
    """SwiGLU hidden size / width, rounded up to the width multiple (same parameters as a 4x GELU MLP)."""
    gelu_hidden_ratio: float = 4.0
    """GELU hidden size / width."""
    lr_reference: float = 3e-3
    """Peak AdamW learning rate at `lr_reference_width`, scaled as 1/sqrt(width)."""
    lr_reference_width: int = 256
    """The width at which the peak learning rate is `lr_reference`."""
    lr_min: float = 3e-4
    """The learning-rate rule is clipped to [lr_min, lr_max]."""
    lr_max: float = 1e-2
    """Upper clip of the learning-rate rule."""
    mup_base_width: int = 64
    """parametrization=mup without base_width: the width whose hyperparameters transfer (cheap to tune on a CPU)."""
    mup_output_mult: float = 4.0
    """parametrization=mup without output_mult: the base model's readout multiplier. Tuned at width 64 on
    stdlib (sweeps/mup-transfer.yaml's runs): 1, 2, 4, 8 gave 1.77, 1.69, 1.66, ~1.7 nats at lr 5e-3;
    with 1 (the untuned default) muP trailed the standard parametrization at widths 128 and 256 (README)."""
    batch_size: int = 16
    """Sequences per step below `batch_doubling_from` parameters (keeps small CPU runs many steps long)."""
    batch_doubling_from: float = 1e7
    """From this many parameters up the batch doubles per decade (larger models tolerate larger batches) ..."""
    batch_max_doublings: int = 5
    """... at most this many times."""

    def width_multiple(self, d_model: int) -> int:
        return self.small_width_multiple if d_model < self.large_width else self.large_width_multiple

    def n_heads(self, d_model: int) -> int:
        """The head count at a width (heads of `large_head_dim` from `large_width`, else a few small ones)."""
        if d_model >= self.large_width and d_model % self.large_head_dim == 0:
            return d_model // self.large_head_dim
        return max(1, min(self.small_max_heads, d_model // self.small_min_head_dim))

    def allowed_widths(self) -> list[int]:
        step = self.small_width_multiple
        return [w for w in range(self.min_width, self.max_width + 1, step) if w % self.width_multiple(w) == 0]

    def fields(self) -> list[tuple[str, object, str]]:
        """(name, value, what it means) for every field, for `scaling family --recipe`."""
        docs = _field_docs(type(self))
        return [(f.name, getattr(self, f.name), docs.get(f.name, "")) for f in dataclasses.fields(self)]


def _field_docs(cls) -> dict[str, str]:
    """The docstring under each field of a dataclass, read from its source."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[node.target.id] = " ".join(str(after.value.value).split())
    return docs


RECIPE = Recipe()


def width_multiple(d_model: int, recipe: Recipe = RECIPE) -> int:
    return recipe.width_multiple(d_model)


def allowed_widths(recipe: Recipe = RECIPE) -> list[int]:
    return recipe.allowed_widths()


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
    recipe: Recipe = RECIPE,
) -> ModelShape:
    """The recipe's shape at a width; explicit n_layers, n_heads, d_ff override it."""
    if d_model < recipe.min_width or d_model % 2:
        raise UsageError(f"d_model={d_model}: must be an even integer >= {recipe.min_width}")
    if n_layers is None:
        n_layers = min(recipe.max_layers, max(1, round(d_model / recipe.width_per_layer)))
    if n_heads is None:
        n_heads = recipe.n_heads(d_model)
    if d_ff is None:
        ratio = recipe.swiglu_hidden_ratio if mlp == "swiglu" else recipe.gelu_hidden_ratio
        d_ff = _round_up(ratio * d_model, recipe.width_multiple(d_model))
    return ModelShape(vocab_size, d_model, n_layers, n_heads, d_ff, seq_len, mlp, tied, qk_norm)


def shape_for_params(target: float, *, recipe: Recipe = RECIPE, **kwargs) -> ModelShape:
    """The recipe's shape whose total parameter count is nearest `target` in log space."""
    if not (target > 0 and math.isfinite(target)):
        raise UsageError(f"params={target!r}: must be a positive number")
    best, best_gap = None, math.inf
    for width in recipe.allowed_widths():
        shape = shape_for_width(width, recipe=recipe, **kwargs)
        gap = abs(math.log(shape.params / target))
        if gap < best_gap:
            best, best_gap = shape, gap
        elif shape.params > target:  # counts grow with width: once past the target and worse, stop
            break
    return best


def recipe_sizes(*, recipe: Recipe = RECIPE, up_to: float = math.inf, **kwargs) -> list[int]:
    """Every total parameter count the recipe builds for these settings (vocab_size, seq_len, mlp, ...),
    smallest first, up to the first count above `up_to`: the family's reach, since `params=` snaps to one
    of these. The smallest is set by the embedding (a 4,096-token vocabulary alone is 65,536 at width 16)."""
    counts = []
    for width in recipe.allowed_widths():
        counts.append(shape_for_width(width, recipe=recipe, **kwargs).params)
        if counts[-1] > up_to:
            break
    return counts


def smallest_size(*, recipe: Recipe = RECIPE, **kwargs) -> int:
    """The smallest model the recipe builds for these settings (its narrowest width)."""
    return shape_for_width(recipe.min_width, recipe=recipe, **kwargs).params


def default_lr(shape: ModelShape, recipe: Recipe = RECIPE, parametrization: Parametrization | None = None) -> float:
    """Peak AdamW learning rate: `lr_reference` at `lr_reference_width`, scaled as 1/sqrt(width) (muP for
    Adam would be 1/width; the square root is the milder, commonly tuned compromise), clipped.

    Under muP the rule is read at the base width, for every width: muP scales each layer's rate with
    width itself (train.step), so the base model's rate is the one to give them all."""
    width = parametrization.base_width if parametrization is not None and parametrization.mup else shape.d_model
    lr = recipe.lr_reference * math.sqrt(recipe.lr_reference_width / width)
    return float(min(recipe.lr_max, max(recipe.lr_min, lr)))


def default_batch_size(shape: ModelShape, recipe: Recipe = RECIPE) -> int:
    """Sequences per step: `batch_size` below `batch_doubling_from` parameters, doubling per decade above."""
    if shape.params < recipe.batch_doubling_from:
        return recipe.batch_size
    decades = math.floor(math.log10(shape.params / recipe.batch_doubling_from)) + 1
    return int(recipe.batch_size * 2 ** min(recipe.batch_max_doublings, decades))
