"""parametrization=mup: muP's initialisation, per-layer Adam learning rates, readout multiplier and attention
scale (family.Parametrization), checked by their mechanism and by the coordinate check of Yang et al. 2022
(Tensor Programs V, fig. 5): after a few Adam steps at one learning rate, every layer's activation scale
stays flat across widths under muP and grows with width under the standard parametrization."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scaling import data as data_lib
from scaling.cli import main
from scaling.config import RunConfig
from scaling.errors import UsageError
from scaling.family import RECIPE, STANDARD, Parametrization, default_lr, shape_for_width
from scaling.model import Transformer, hidden_matrices
from scaling.train import plan_run, train_run
from scaling.train.pack import pack_config, train_pack
from scaling.train.record import changed_keys, run_record
from scaling.train.step import step_functions

BASE = 64
MUP = Parametrization("mup", BASE)


def _summary(home, run_id):
    with open(os.path.join(home, run_id, "summary.json")) as fh:
        return json.load(fh)


# ---- config ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("items,message", [
    ({"parametrization": "mu-p"}, "parametrization='mu-p': allowed standard, mup"),
    ({"parametrization": "mup", "base_width": "0"}, "base_width=0: must be positive"),
    ({"parametrization": "mup", "base_width": "-64"}, "base_width=-64: must be positive"),
    ({"parametrization": "mup", "base_width": "6.5"}, "base_width='6.5': expected an integer"),
])
def test_parametrization_keys_are_refused_with_one_line_naming_key_and_value(items, message):
    with pytest.raises(UsageError) as err:
        RunConfig.from_dict({"d_model": 64, "tokens": 1e4, **items})
    assert str(err.value) == message and "\n" not in str(err.value)


def test_bad_parametrization_on_the_command_line_exits_2_with_one_line(home, tiny, capsys):
    assert main(["--home", home, "train", *tiny, "tokens=4e3", "parametrization=mup", "base_width=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "base_width=0" in err


def test_mup_default_lr_is_the_base_widths_at_every_width_and_the_base_width_is_recorded():
    # the recipe's rule read at the base width (64: 3e-3 x sqrt(256/64)), not at each run's own width
    for width in (64, 128, 256, 1024):
        plan = plan_run(RunConfig.from_dict({"d_model": width, "tokens": 1e5, "parametrization": "mup"}))
        assert plan.lr == pytest.approx(6e-3, rel=1e-12)
    plan = plan_run(RunConfig.from_dict({"d_model": 512, "tokens": 1e5, "parametrization": "mup", "base_width": 128}))
    assert plan.lr == default_lr(shape_for_width(128)) == pytest.approx(3e-3 * 2**0.5, rel=1e-12)
    # standard keeps its 1/sqrt(width) rule, and ignores a base_width
    plan = plan_run(RunConfig.from_dict({"d_model": 1024, "tokens": 1e5, "base_width": 64}))
    assert plan.lr == default_lr(plan.shape) == pytest.approx(1.5e-3, rel=1e-12)
    assert Parametrization.of("standard", 64, 2.0) == STANDARD
    assert Parametrization.of("mup") == Parametrization("mup", 64, RECIPE.mup_output_mult)
    # config.yaml records the base width and readout multiplier the recipe chose
    resolved = run_record(plan_run(RunConfig.from_dict({"d_model": 256, "tokens": 1e5, "parametrization": "mup"})))
    assert (resolved["resolved"]["base_width"], resolved["resolved"]["width_multiplier"],
            resolved["resolved"]["output_mult"]) == (64, 4.0, RECIPE.mup_output_mult)


def test_a_run_recorded_before_the_parametrization_keys_existed_is_the_same_config():
    new = {"config": RunConfig.from_dict({"d_model": 64, "tokens": 1e4}).to_dict()}
    old = {"config": {k: v for k, v in new["config"].items() if k not in ("parametrization", "base_width")}}
    assert changed_keys(old, new) == []
    mup = {"config": RunConfig.from_dict({"d_model": 64, "tokens": 1e4, "parametrization": "mup"}).to_dict()}
    assert changed_keys(old, mup) == ["parametrization"]


def test_a_mup_run_recorded_before_output_mult_existed_is_not_resumed_with_the_recipes_new_multiplier():
    # Such a run trained with logits x 1/m; resuming it under the recipe's output_mult would change the
    # model mid-run without a word. Given output_mult=1 it is the same run.
    def record(**keys):
        return run_record(plan_run(RunConfig.from_dict({"d_model": 128, "tokens": 1e4, "parametrization": "mup",
                                                         **keys})))
    before = record()
    del before["resolved"]["output_mult"]
    assert changed_keys(before, record()) == ["output_mult"]
    assert changed_keys(before, record(output_mult=1)) == []
    assert changed_keys(record(), record(output_mult=RECIPE.mup_output_mult)) == []
    assert changed_keys(record(output_mult=2), record(output_mult=3)) == ["output_mult"]


# ---- standard is unchanged; muP at the base width is standard but for the attention scale ------------
def test_parametrization_standard_trains_exactly_as_the_default(home, tiny):
    for run_id, extra in (("default", []), ("standard", ["parametrization=standard", "base_width=32"])):
        assert main(["--home", home, "train", *tiny, "tokens=2e4", f"run_id={run_id}", "wandb=off", *extra,
                     "--quiet"]) == 0
    a, b = _summary(home, "default"), _summary(home, "standard")
    assert (a["eval_loss"], a["train_loss"], a["lr"]) == (b["eval_loss"], b["train_loss"], b["lr"])


def _train(shape, parametrization, steps=3, lr=1e-2):
    """Params and losses after `steps` Adam steps on the corpus, from seed 0."""
    corpus = data_lib.load_corpus("stdlib")
    fns = step_functions(shape, "float32", 0.9, 0.95, 0.1, 1.0, parametrization=parametrization)
    params, opt = fns.init(jnp.uint32(0))
    losses = []
    for step in range(steps):
        w = jnp.asarray(data_lib.batch_windows(corpus, 0, step, 4, shape.seq_len))
        params, opt, loss, _ = jax.jit(fns.update)(params, opt, w[:, :-1], w[:, 1:], jnp.float32(lr))
        losses.append(float(loss))
    return params, losses


def test_mup_at_the_base_width_trains_exactly_as_standard():
    # Init, per-layer rates, readout and the attention scale sqrt(d_head0)/d_head all reduce to the
    # identity at m = 1, so the base model is the standard one bit for bit, attention over 16 tokens included.
    shape = shape_for_width(BASE, n_layers=1, seq_len=16)
    p_std, l_std = _train(shape, STANDARD)
    p_mup, l_mup = _train(shape, MUP)
    assert l_mup == l_std
    jax.tree.map(np.testing.assert_array_equal, p_mup, p_std)


def test_mup_attention_scale_is_one_over_d_head_as_heads_widen_and_standard_at_the_base():
    base = shape_for_width(BASE).head_dim
    assert MUP.attention_scale(base) == pytest.approx(base ** -0.5)
    for m in (2, 4):  # the recipe keeps 4 heads at these widths, so d_head grows with m
        head = shape_for_width(m * BASE).head_dim
        assert head == m * base and MUP.attention_scale(head) == pytest.approx(base ** -0.5 / m)
    assert MUP.attention_scale(64) == pytest.approx(base ** 0.5 / 64)  # wider models add heads of 64
    assert STANDARD.attention_scale(base) is None


def test_mup_readout_multiplier_is_the_base_models_output_mult_over_m():
    # The logits of the same weights are output_mult / m times the unscaled readout's: the multiplier is
    # the base model's (4 gives logits 4x those of 1 at every width), divided by how much wider the model is.
    shape = shape_for_width(2 * BASE, n_layers=1, seq_len=16)
    tokens = jnp.arange(32, dtype=jnp.int32).reshape(2, 16) % shape.vocab_size
    logits = {mult: np.asarray(Transformer(shape, rngs=nnx.Rngs(0), parametrization=Parametrization("mup", BASE, mult))
                               (tokens)) for mult in (1.0, 4.0)}
    assert Transformer(shape, rngs=nnx.Rngs(0), parametrization=Parametrization("mup", BASE, 4.0)).output_scale == 2.0
    np.testing.assert_allclose(logits[4.0], 4 * logits[1.0], rtol=1e-5, atol=1e-7)
    assert np.abs(logits[1.0]).max() > 1e-3


# ---- the mechanism, layer by layer ----------------------------------------------------------------------
def _leaves(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_mup_scales_hidden_init_by_root_m_and_their_adam_rate_by_m_and_the_readout_by_m():
    m, lr = 4, 1e-2
    wide = shape_for_width(m * BASE, n_layers=1, seq_len=16)
    base = _leaves(nnx.state(Transformer(shape_for_width(BASE, n_layers=1, seq_len=16), rngs=nnx.Rngs(0)), nnx.Param))
    model = Transformer(wide, rngs=nnx.Rngs(0), parametrization=MUP)
    assert model.output_scale == 1 / m and model.block_list()[0].attn.scale == pytest.approx(
        shape_for_width(BASE).head_dim ** -0.5 / m)
    init = nnx.state(model, nnx.Param)
    hidden = _leaves(hidden_matrices(init))
    assert sorted(k for k, h in hidden.items() if h) == [  # the scanned blocks: (layers, fan-in, fan-out)
        f"['blocks']['{a}']['{b}']['kernel'].value" for a, b in
        (("attn", "proj"), ("attn", "qkv"), ("mlp", "down"), ("mlp", "up"))]
    for key, value in _leaves(init).items():
        if key.endswith("scale.value"):
            continue  # norm scales start at one
        expected = base[key].std() / (m**0.5 if hidden[key] else 1)
        assert value.std() == pytest.approx(expected, rel=0.05), key
    # Adam's first step moves a coordinate by lr g / (|g| + eps): by lr at most (approached where |g| >> eps,
    # not everywhere: q and k barely get gradients at init), by lr / m in hidden matrices
    corpus = data_lib.load_corpus("stdlib")
    fns = step_functions(wide, "float32", 0.9, 0.95, 0.0, 0.0, parametrization=MUP)
    params, opt = fns.init(jnp.uint32(0))
    w = jnp.asarray(data_lib.batch_windows(corpus, 0, 0, 4, wide.seq_len))
    after = _leaves(jax.jit(fns.update)(params, opt, w[:, :-1], w[:, 1:], jnp.float32(lr))[0])
    for key, before in _leaves(params).items():
        step = np.abs(after[key] - before)
        assert step.max() == pytest.approx(lr / m if hidden[key] else lr, rel=1e-4), key


@pytest.mark.slow  # trains a pack and each run alone (5 s): out of the fast suite
def test_packed_mup_runs_train_as_they_do_alone_and_not_as_standard(home, tiny):
    def plans(prefix, **extra):
        base = dict(i.split("=") for i in tiny) | {"wandb": "off", "tokens": 4e3, "lr": 3e-3} | extra
        return [plan_run(RunConfig.from_dict(base | {"seed": s, "run_id": f"{prefix}{s}"})) for s in (0, 1)]

    mup = {"parametrization": "mup", "base_width": 8}
    alone = [train_run(p, home) for p in plans("alone", **mup)]
    packed = train_pack(plans("packed", **mup), home)
    standard = train_run(plans("std")[0], home)
    for a, b in zip(alone, packed):
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], abs=1e-5)
    assert abs(alone[0]["eval_loss"] - standard["eval_loss"]) > 1e-3
    config = dict(i.split("=") for i in tiny) | {"tokens": 4e3}
    assert pack_config(config | mup) != pack_config(config)  # never packed with standard runs


def test_a_stopped_mup_run_resumes_from_its_checkpoint_to_the_same_loss(home, tiny):
    def plan(run_id):
        base = dict(i.split("=") for i in tiny) | {"wandb": "off", "tokens": 4e3, "parametrization": "mup"}
        return plan_run(RunConfig.from_dict(base | {"base_width": 8, "run_id": run_id}))

    whole = train_run(plan("whole"), home)
    assert train_run(plan("cut"), home, stop_at_step=10)["status"] == "interrupted"
    resumed = train_run(plan("cut"), home)  # the optimizer state, muP's per-layer scale included, restored
    assert resumed["status"] == "complete" and resumed["eval_loss"] == pytest.approx(whole["eval_loss"], abs=1e-6)


# ---- the coordinate check -------------------------------------------------------------------------------
WIDTHS = (64, 128, 256, 512)
CHECK_STEPS, CHECK_LR, CHECK_BATCH, CHECK_SEQ = 3, 1e-2, 8, 64


def _activation_scales(parametrization: Parametrization, width: int) -> np.ndarray:
    """Mean |coordinate| of the embedding output, of each block's output and of the logits, on a held-out
    batch, after CHECK_STEPS Adam steps at CHECK_LR: one compiled call (init, steps, probe)."""
    shape = shape_for_width(width, n_layers=2, seq_len=CHECK_SEQ)
    fns = step_functions(shape, "float32", 0.9, 0.95, 0.1, 1.0, parametrization=parametrization)
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Transformer(shape, rngs=nnx.Rngs(0),
                                                               parametrization=parametrization)))
    corpus = data_lib.load_corpus("stdlib")
    windows = np.stack([data_lib.batch_windows(corpus, 0, s, CHECK_BATCH, CHECK_SEQ) for s in range(CHECK_STEPS)])
    probe = data_lib.batch_windows(corpus, 1, 0, CHECK_BATCH, CHECK_SEQ)[:, :-1]

    def run(windows, probe):
        def step(state, w):
            params, opt, _, _ = fns.update(*state, w[:, :-1], w[:, 1:], CHECK_LR)
            return (params, opt), None
        (params, _), _ = jax.lax.scan(step, fns.init(jnp.uint32(0)), windows)
        model = nnx.merge(graphdef, params)
        x = model.embed(probe.reshape(-1))
        outputs = [x]
        for block in model.block_list():
            x = block(x, probe.shape[0])
            outputs.append(x)
        outputs.append(model.readout(x))
        return jnp.stack([jnp.abs(o).mean() for o in outputs])

    return np.asarray(jax.jit(run)(jnp.asarray(windows), jnp.asarray(probe)))


@pytest.fixture(scope="module")
def slopes():
    """Per parametrization: the slope of log(activation scale) against log(width), for each layer."""
    out = {}
    for par in (STANDARD, MUP):
        scales = np.array([_activation_scales(par, w) for w in WIDTHS])
        out[par.name] = np.polyfit(np.log(WIDTHS), np.log(scales), 1)[0]
    return out


@pytest.mark.slow
def test_coordinate_check_activation_scales_stay_flat_across_widths_under_mup(slopes):
    # measured (embedding, block 1, block 2, logits): -0.009, 0.028, 0.036, -0.016. With one of muP's
    # scalings removed: without the hidden 1/m rate the blocks' are 2.2 and 2.0, without the 1/sqrt(m)
    # init block 1's is 0.31, without the readout multiplier the logits' is 0.56 (the attention scale
    # shows only later in training: its own test is above)
    assert np.all(np.abs(slopes["mup"]) < 0.15), slopes["mup"]


@pytest.mark.slow
def test_coordinate_check_activations_grow_with_width_under_standard(slopes):
    # measured: -0.11, 2.4, 2.6, 0.54: a step of Adam moves a hidden matrix's output by about lr x fan-in
    assert slopes["standard"][-1] > 0.3 and slopes["standard"].max() > 1.0, slopes["standard"]
