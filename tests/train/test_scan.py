"""Scanned layers (model.py): the blocks stacked on a leading layer axis and applied by one lax.scan. The
same numbers as the unrolled loop the runs before it used, one block body in the compiled step whatever
the depth, and old runs' unrolled checkpoints resuming under the scanned layout."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from scaling import data as data_lib
from scaling.config import RunConfig
from scaling.family import shape_for_width
from scaling.train import loop
from scaling.train.loop import train_run
from scaling.train.plan import plan_run
from scaling.train.step import compiled_fns, packed_fns, step_functions

STEPS, BATCH, SEQ = 40, 4, 32


def _eval_loss_after_training(n_layers: int, layers: str) -> float:
    shape = shape_for_width(16, n_layers=n_layers, seq_len=SEQ)
    fns = compiled_fns(shape, "float32", 0.9, 0.95, 0.1, 1.0, layers=layers)
    corpus = data_lib.load_corpus("stdlib")
    params, opt = fns.init(np.uint32(3))
    for step in range(STEPS):
        w = data_lib.batch_windows(corpus, 3, step, BATCH, SEQ)
        params, opt, _, _ = fns.train_step(params, opt, w[:, :-1], w[:, 1:], np.float32(3e-3))
    held_out = data_lib.batch_windows(corpus, 99, 0, 4 * BATCH, SEQ)
    return float(fns.eval_loss(params, held_out[:, :-1], held_out[:, 1:]))


@pytest.mark.parametrize("n_layers", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_scanned_layers_train_to_the_unrolled_eval_loss_at_fp32(n_layers):
    unrolled = _eval_loss_after_training(n_layers, "unrolled")
    scanned = _eval_loss_after_training(n_layers, "scanned")
    assert scanned == pytest.approx(unrolled, abs=1e-6)


def _dots_in_step(n_layers: int, layers: str) -> int:
    shape = shape_for_width(16, n_layers=n_layers, seq_len=SEQ)
    fns = step_functions(shape, "float32", 0.9, 0.95, 0.1, 1.0, layers=layers)
    params, opt = jax.eval_shape(fns.init, np.uint32(0))
    x = jax.ShapeDtypeStruct((BATCH, SEQ), jnp.int32)
    # the optimized HLO: the lowered text shares repeated bodies through calls, so it cannot see an unroll
    compiled = jax.jit(fns.update).lower(params, opt, x, x, jnp.float32(1e-3)).compile().as_text()
    return sum(line.count(" dot(") for line in compiled.splitlines())


def test_the_scanned_step_holds_one_block_body_whatever_the_depth():
    assert _dots_in_step(2, "scanned") == _dots_in_step(6, "scanned")
    assert _dots_in_step(6, "unrolled") > _dots_in_step(2, "unrolled")  # the count does see depth


@pytest.mark.slow  # two packed compilations: about a minute on two busy cores
def test_a_vmapped_pack_of_scanned_models_trains_as_the_mapped_pack():
    shape = shape_for_width(16, n_layers=2, seq_len=SEQ)
    corpus = data_lib.load_corpus("stdlib")
    w = np.stack([np.stack([data_lib.batch_windows(corpus, r, s, BATCH, SEQ) for r in range(2)]) for s in range(3)])
    lrs, on = np.full((3, 2), 3e-3, np.float32), np.ones((3, 2), bool)
    losses = {}
    for mode in ("map", "vmap"):
        fns = packed_fns(shape, "float32", 0.9, 0.95, 0.1, 1.0, mode=mode)
        params, opt = fns.init(np.arange(2, dtype=np.uint32))
        losses[mode] = np.asarray(fns.train_steps(params, opt, w[..., :-1], w[..., 1:], lrs, on)[2])
    np.testing.assert_allclose(losses["vmap"], losses["map"], atol=1e-5)
    assert losses["map"][0, 0] != losses["map"][0, 1]  # two runs, not one twice


def test_a_run_checkpointed_unrolled_resumes_scanned_to_the_same_loss(home, tiny, monkeypatch):
    """A run directory written before the scan (unrolled checkpoints, `blocks/<i>/...`) resumes under
    the scanned layout, its layers stacked on restore, and ends where an uninterrupted run ends."""
    def plan(run_id):
        items = dict(i.split("=") for i in tiny) | {"wandb": "off", "tokens": 4e3, "n_layers": 2, "run_id": run_id}
        return plan_run(RunConfig.from_dict(items))

    whole = train_run(plan("whole"), home)
    with monkeypatch.context() as old_code:
        old_code.setattr(loop, "compiled_fns", functools.partial(compiled_fns, layers="unrolled"))
        assert train_run(plan("old"), home, stop_at_step=10)["status"] == "interrupted"
    resumed = train_run(plan("old"), home)
    assert resumed["status"] == "complete" and resumed["step"] > 10
    assert resumed["eval_loss"] == pytest.approx(whole["eval_loss"], abs=1e-6)
    with open(f"{home}/old/config.yaml") as fh:
        assert yaml.safe_load(fh)["resolved"]["layers"] == "scanned"


@pytest.mark.slow  # compiles four depths (13 s): out of the fast suite
def test_bench_compile_only_compiles_each_depth_without_data_and_reports_seconds_and_memory(home):
    # A process of its own, as a user runs it: in this test process the suite's persistent compilation
    # cache is already in use (JAX decides that once per process), and a cache read is no compilation.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "scaling.cli", "--home", home, "bench", "--compile-only",
                          "--d-model", "16", "--layers", "1", "3", "--seq-len", "32", "--batch-size", "4"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.strip().startswith("d16")]
    assert [r[0] for r in rows] == ["d16-L1-H1", "d16-L3-H1"] and all(r[2] == "scanned" for r in rows)
    seconds, memory = [float(r[4].rstrip("s")) for r in rows], [float(r[7]) for r in rows]
    assert all(s > 0 for s in seconds) and memory[1] > memory[0] > 0  # deeper: more stored activations


def test_bench_refuses_a_depth_below_one_in_one_line(capsys):
    from scaling.cli import main

    assert main(["bench", "--compile-only", "--d-model", "16", "--layers", "0"]) == 2
    assert "--layers [0]" in capsys.readouterr().err


@pytest.mark.perf
def test_scanned_compile_time_grows_at_most_one_and_a_half_times_from_l4_to_l48():
    from scaling.train.bench import compile_train_step

    jax.config.update("jax_enable_compilation_cache", False)
    cpu = [compile_train_step(shape_for_width(256, n_layers=n, seq_len=256), 16)["compile_cpu_s"] for n in (4, 48)]
    assert cpu[1] / cpu[0] <= 1.5, cpu


def _remat_step(remat: str, n_layers: int = 3):
    shape = shape_for_width(32, n_layers=n_layers, seq_len=64)
    fns = step_functions(shape, "float32", 0.9, 0.95, 0.1, 1.0, remat=remat)
    params, opt = fns.init(jnp.uint32(0))
    w = data_lib.batch_windows(data_lib.load_corpus("stdlib"), 0, 0, BATCH, 64)
    step = jax.jit(fns.update)
    x = jax.ShapeDtypeStruct((BATCH, 64), jnp.int32)
    temp = step.lower(params, opt, x, x, jnp.float32(0)).compile().memory_analysis().temp_size_in_bytes
    for _ in range(3):
        params, opt, loss, _ = step(params, opt, w[:, :-1], w[:, 1:], jnp.float32(3e-3))
    return float(loss), temp


@pytest.mark.slow  # three compilations
def test_remat_recomputes_the_same_losses_in_less_temporary_memory():
    none, dots, full = (_remat_step(r) for r in ("none", "dots", "full"))
    assert dots[0] == pytest.approx(none[0], abs=1e-6) and full[0] == pytest.approx(none[0], abs=1e-6)
    assert full[1] < none[1], (none[1], dots[1], full[1])  # what `full` keeps: each block's input alone
