import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling.errors import UsageError
from scaling.family import ModelShape, default_batch_size, default_lr, shape_for_params, shape_for_width
from scaling.model import Transformer, count_params

SHAPES = [
    ModelShape(256, 16, 1, 4, 48, 32),
    ModelShape(256, 64, 2, 4, 176, 64, mlp="gelu"),
    ModelShape(256, 64, 2, 2, 176, 64, tied=False),
    ModelShape(256, 96, 3, 6, 256, 64, qk_norm=True),
    ModelShape(1000, 128, 2, 4, 352, 128, tied=False, qk_norm=True, mlp="gelu"),
    ModelShape(512, 32, 4, 8, 64, 16, tied=True, qk_norm=True),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s.describe()}-{s.mlp}-{'tied' if s.tied else 'untied'}")
def test_param_formula_equals_the_real_parameter_tree(shape):
    model = nnx.eval_shape(lambda: Transformer(shape, rngs=nnx.Rngs(0)))
    assert count_params(model) == shape.params
    embed = shape.vocab_size * shape.d_model * (1 if shape.tied else 2)
    assert shape.params_nonembed == shape.params - embed


@pytest.mark.parametrize("target", [1e4, 1e5, 1e6, 1e7, 1e8, 1e9])
def test_recipe_lands_near_the_target_and_shapes_divide(target):
    shape = shape_for_params(target)
    assert abs(math.log(shape.params / target)) < math.log(1.6)
    assert shape.d_model % shape.n_heads == 0 and shape.d_model % 16 == 0
    if shape.d_model >= 256:
        assert shape.d_model % 64 == 0 and shape.head_dim == 64


def test_recipe_is_monotone_in_size_and_defaults_are_sane():
    shapes = [shape_for_params(t) for t in np.geomspace(1e4, 1e9, 12)]
    counts = [s.params for s in shapes]
    assert counts == sorted(counts)
    lrs = [default_lr(s) for s in shapes]
    assert lrs == sorted(lrs, reverse=True) and all(3e-4 <= lr <= 1e-2 for lr in lrs)
    assert all(default_batch_size(s) >= 16 for s in shapes)


def test_shape_that_does_not_divide_is_refused_with_the_allowed_values():
    with pytest.raises(UsageError, match="n_heads=5 does not divide d_model=64"):
        shape_for_width(64, n_heads=5)


def test_causal_fraction_halves_only_the_attention_term():
    s = SHAPES[1]
    full, half = s.flops_per_token(causal_fraction=1.0), s.flops_per_token(causal_fraction=0.5)
    attention = 3 * 2 * 2 * s.n_layers * s.seq_len * s.d_model
    assert full - half == pytest.approx(attention / 2)


@pytest.mark.parametrize("width,layers,seq", [(64, 2, 64), (128, 2, 128), (256, 4, 256)])
def test_flops_formula_agrees_with_xla_cost_analysis_of_the_train_step(width, layers, seq):
    from scaling.train import compiled_fns

    shape = shape_for_width(width, n_layers=layers, seq_len=seq)
    batch = 8
    init, train_step, _ = compiled_fns(shape, "float32", 0.9, 0.95, 0.1, 1.0)
    params, opt_state = jax.eval_shape(init, np.uint32(0))
    x = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
    cost = train_step.lower(params, opt_state, x, x, jnp.float32(1e-3)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    formula = shape.flops_per_token() * batch * seq
    assert cost["flops"] == pytest.approx(formula, rel=0.10), (cost["flops"], formula)


def test_block_causal_attention_equals_the_masked_full_square():
    from scaling.model import causal_attention

    q, k, v = (jax.random.normal(jax.random.key(i), (2, 256, 2, 16)) for i in range(3))
    full = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    for n_blocks in (2, 4, 8):
        assert jnp.allclose(causal_attention(q, k, v, n_blocks), full, atol=1e-5)


def test_flops_count_the_executed_attention_blocks():
    assert shape_for_width(64, seq_len=64).executed_attention_fraction == 1.0
    assert shape_for_width(64, seq_len=128).executed_attention_fraction == 0.75
    assert shape_for_width(64, seq_len=256).executed_attention_fraction == 0.625
    assert shape_for_width(64, seq_len=100).attention_blocks == 1  # not a multiple of the block
