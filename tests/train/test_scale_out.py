"""One run over many devices and processes: the same numbers as on one device, whatever the mesh, the
accumulation, the device count a checkpoint is resumed on, or the number of processes.

CPU stands in for accelerators: XLA_FLAGS=--xla_force_host_platform_device_count=N gives a process N
devices, and jax.distributed joins processes over localhost with gloo collectives. The device count is
fixed when JAX starts, so each case runs in its own interpreter."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from jax.sharding import PartitionSpec

from scaling.cli import main
from scaling.errors import UsageError
from scaling.runs import read_metrics
from scaling.train.mesh import MeshShape, partition

TOL = 1e-5
RUN = ["d_model=64", "seq_len=64", "batch_size=16", "tokens=40960", "eval_tokens=1024", "n_evals=2", "wandb=off"]


def _env(devices: int) -> dict:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}


def _train(home, devices: int, *items, wait=True):
    argv = [sys.executable, "-m", "scaling.cli", "--home", str(home), "train", *RUN, *items, "--quiet"]
    proc = subprocess.Popen(argv, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return proc


def _eval_loss(home, run_id) -> float:
    with open(os.path.join(home, run_id, "summary.json")) as fh:
        return json.load(fh)["eval_loss"]


# ---- the rule table and refusals (in-process, one device) ----------------------------------------------
def test_matrices_shard_their_largest_divisible_dimension_over_fsdp_and_vectors_replicate():
    assert partition((64, 192), 4) == PartitionSpec(None, "fsdp")  # QKV: output features
    assert partition((256, 64), 4) == PartitionSpec("fsdp", None)  # the embedding table: vocabulary
    assert partition((64, 64), 4) == PartitionSpec(None, "fsdp")  # a tie goes to the output dimension
    assert partition((6, 10), 4) == PartitionSpec()  # nothing divides: replicated, never uneven
    assert partition((64,), 4) == PartitionSpec()  # norm scales
    assert partition((), 4) == PartitionSpec()  # Adam's step count
    assert partition((64, 192), 1) == PartitionSpec()  # no fsdp axis: plain data parallel
    assert partition((64, 192), 2) == PartitionSpec(None, "fsdp")  # the smallest fsdp axis shards too


def test_the_scanned_layer_axis_is_never_sharded_and_the_rule_applies_to_the_rest():
    import jax
    import numpy as np

    from scaling.family import shape_for_width
    from scaling.train.mesh import tree_shardings
    from scaling.train.step import step_functions

    # 8 layers: the largest dimension fsdp divides would be the layer axis of a (8, 4, 6) array
    assert partition((8, 4, 6), 4, stacked=True) == PartitionSpec(None, "fsdp", None)
    assert partition((4, 64), 4, stacked=True) == PartitionSpec(None)  # stacked norm scales: replicated
    assert partition((8, 64, 192), 4, stacked=True) == PartitionSpec(None, None, "fsdp")
    fns = step_functions(shape_for_width(64, n_layers=4, seq_len=32), "float32", 0.9, 0.95, 0.1, 1.0)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("data", "fsdp"))
    specs = {jax.tree_util.keystr(p): s.spec for p, s in jax.tree_util.tree_leaves_with_path(
        tree_shardings(jax.eval_shape(fns.init, np.uint32(0)), mesh))}
    # the optimizer's copies of the blocks carry the layer axis too: every one found and left whole
    stacked = [k for k in specs if "['blocks']['" in k]
    assert len(stacked) == 3 * 6 and all(specs[k] == PartitionSpec(None) for k in stacked), specs


def test_mesh_settings_parse_and_bad_ones_name_what_is_allowed():
    assert MeshShape.parse(None, 8) == MeshShape(data=8)
    assert MeshShape.parse("data:2,fsdp:4", 8) == MeshShape(data=2, fsdp=4)
    assert MeshShape.parse("fsdp:8", None).devices == 8  # planning away from the devices: syntax only
    assert MeshShape.parse("", None) == MeshShape(data=1) and MeshShape.parse("data:2,fsdp:1", 2).fsdp == 1
    for bad in ("fsdp:x", "fsdp", "fsdp:0"):
        with pytest.raises(UsageError, match=r"expected axis:size pairs over data, fsdp \(e.g. data:8, fsdp:8, "):
            MeshShape.parse(bad, 1)


def test_device_indices_run_from_0_and_a_missing_one_is_named_with_the_range_this_process_sees():
    import jax

    from scaling.train.mesh import run_devices

    assert run_devices("0") == jax.local_devices()[:1]
    n = len(jax.local_devices())
    with pytest.raises(UsageError, match=rf"devices=0,{n}: local device {n} does not exist "
                                         rf"\(this process sees {n}: 0..{n - 1}\)"):
        run_devices(f"0,{n}")


def test_a_microbatch_that_does_not_split_over_the_devices_names_the_batch_sizes_that_would():
    from scaling.train.mesh import check_batch

    check_batch(12, 2, MeshShape(data=3))  # 6 rows per microbatch, 2 per device
    with pytest.raises(UsageError, match=r"= 8 rows per microbatch does not divide over mesh data:3,fsdp:1 "
                                         r"\(3 devices\); allowed: a batch_size that is a multiple of 6$"):
        check_batch(16, 2, MeshShape(data=3))


@pytest.mark.parametrize("items,message", [
    (["mesh=data:2"], "mesh='data:2' spans 2 devices but the run has 1"),
    (["mesh=model:2"], "expected axis:size pairs over data, fsdp"),
    (["mesh=data:0"], "expected axis:size pairs"),
    (["mesh=data:2,data:2"], "expected axis:size pairs"),
    (["devices=3"], "local device 3 does not exist"),
    (["devices=a"], "expected local device indices"),
    (["microbatches=3"], "batch_size=16 does not divide into microbatches=3"),
    (["microbatches=0"], "microbatches=0: must be at least 1"),
    (["mesh=fsdp:3"], "does not divide over mesh data:1,fsdp:3"),
    (["num_processes=2"], "give num_processes and process_id together"),
])
def test_bad_placement_is_refused_in_one_line_before_anything_is_written(home, capsys, items, message):
    assert main(["--home", home, "train", *RUN, "run_id=bad", *items]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not os.path.exists(os.path.join(home, "bad"))


# ---- equivalence on 8 devices ----------------------------------------------------------------------------
@pytest.mark.slow
def test_the_same_seed_gives_the_same_eval_loss_on_every_mesh_and_with_accumulation(tmp_path):
    cases = {"one": ["devices=0"], "data8": ["mesh=data:8"], "fsdp8": ["mesh=fsdp:8"],
             "mixed": ["mesh=data:2,fsdp:4"], "micro4": ["devices=0", "microbatches=4"],
             "micro-fsdp": ["mesh=fsdp:4", "devices=0,1,2,3", "microbatches=4"]}
    code = ("import sys, json; from scaling.config import RunConfig; from scaling.train import plan_run, train_run\n"
            f"cases = {cases!r}; out = {{}}\n"
            f"base = dict(x.split('=') for x in {RUN!r})\n"
            "for name, items in cases.items():\n"
            "    cfg = RunConfig.from_dict({**base, **dict(x.split('=') for x in items), 'run_id': name})\n"
            f"    out[name] = train_run(plan_run(cfg), {str(tmp_path)!r})['eval_loss']\n"
            "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(8), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, loss in losses.items():
        assert loss == pytest.approx(losses["one"], abs=TOL), (name, losses)
    with open(tmp_path / "fsdp8" / "config.yaml") as fh:
        assert "mesh: data:1,fsdp:8" in fh.read()  # the run records where it ran


@pytest.mark.slow
def test_a_run_preempted_on_8_devices_resumes_on_4_and_on_1_to_the_same_loss(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    _train(whole, 1, "run_id=r")
    proc = _train(cut, 8, "run_id=r", "mesh=data:8", "checkpoint_every=5", wait=False)
    metrics = cut / "r" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not any(m["step"] >= 12 for m in read_metrics(str(metrics))):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # a preemption: checkpoint, record interrupted, exit 130
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    with open(cut / "r" / "summary.json") as fh:
        stopped = json.load(fh)
    assert stopped["status"] == "interrupted" and 12 <= stopped["step"] < stopped["steps"]
    on_one = tmp_path / "one"
    shutil.copytree(cut, on_one)
    _train(cut, 4, "run_id=r")  # every visible device: data:4
    _train(on_one, 8, "run_id=r", "devices=0")
    reference = _eval_loss(whole, "r")
    assert _eval_loss(cut, "r") == pytest.approx(reference, abs=TOL)
    assert _eval_loss(on_one, "r") == pytest.approx(reference, abs=TOL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_of_four_devices_train_as_one_of_eight_and_only_process_0_writes(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    _train(single, 8, "run_id=r", "mesh=fsdp:8")
    port = _free_port()
    procs = [_train(multi, 4, "run_id=r", "mesh=fsdp:8", f"coordinator=localhost:{port}", "num_processes=2",
                    f"process_id={i}", wait=False) for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    assert _eval_loss(multi, "r") == pytest.approx(_eval_loss(single, "r"), abs=TOL)
    steps = [m["step"] for m in read_metrics(str(multi / "r" / "metrics.jsonl"))]
    assert steps == sorted(set(steps))  # one writer: no row twice
    with open(multi / "r" / "config.yaml") as fh:
        assert "processes: 2" in fh.read()


def test_two_microbatches_step_exactly_as_one_batch_averaging_not_summing_their_gradients():
    # Issue #23: summed microbatch gradients survive every fast test but this one (Adam is almost blind
    # to a gradient's scale; the loss, the gradient norm and clipping are not).
    import jax
    import numpy as np

    from scaling.config import RunConfig
    from scaling.train import plan_run
    from scaling.train.step import step_functions

    plan = plan_run(RunConfig.from_dict({"d_model": 16, "seq_len": 16, "batch_size": 4, "tokens": 640}))
    rng = np.random.default_rng(0)
    x, y = (rng.integers(0, plan.shape.vocab_size, (4, 16)).astype(np.int32) for _ in range(2))
    out = {}
    for m in (1, 2):
        fns = step_functions(plan.shape, "float32", 0.9, 0.95, 0.1, 1.0, m)
        params, opt = fns.init(np.uint32(0))
        update = jax.jit(fns.update)
        for _ in range(3):
            params, opt, loss, norm = update(params, opt, x, y, np.float32(1e-2))
        out[m] = (float(loss), float(norm), params)
    assert out[2][0] == pytest.approx(out[1][0], abs=1e-6)
    assert out[2][1] == pytest.approx(out[1][1], rel=1e-5)
    for a, b in zip(jax.tree.leaves(out[1][2]), jax.tree.leaves(out[2][2])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_a_run_on_an_fsdp_mesh_holds_its_parameters_as_the_rule_table_says_fresh_stepped_and_resumed(tmp_path):
    # ... and splits its token batches' rows over the devices (mutants of mesh.batch_sharding survived)
    # Issue #23: partition() alone was tested; this reads the .sharding of the live arrays a run trains.
    code = f"""
import dataclasses, jax
from jax.sharding import NamedSharding
from scaling.config import RunConfig
from scaling.train import plan_run, train_run
from scaling.train.loop import OneRun, Session
from scaling.model import layer_stacked
from scaling.train.mesh import partition

cfg = RunConfig.from_dict(dict(x.split("=") for x in {RUN!r}) | {{"mesh": "fsdp:2", "run_id": "f"}})
plan = plan_run(cfg)
train_run(plan, {str(tmp_path)!r}, stop_at_step=2)  # a checkpoint to resume from

def check(tree, mesh, what):
    sharded = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):  # scanned blocks: the layer axis unsharded
        want = NamedSharding(mesh, partition(tuple(leaf.shape), 2, layer_stacked(path)))
        assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (what, leaf.shape, leaf.sharding, want)
        sharded += want.spec != jax.sharding.PartitionSpec()
    assert sharded > 0, what

fresh = Session.open(dataclasses.replace(plan, run_id="g", config=cfg.replace(run_id="g")), {str(tmp_path)!r})
check(fresh.state.params, fresh.place.mesh, "fresh params")
check(fresh.state.opt_state, fresh.place.mesh, "fresh optimizer state")
OneRun(fresh).advance([fresh], 1)
check(fresh.state.params, fresh.place.mesh, "stepped params")
resumed = Session.open(plan, {str(tmp_path)!r})
assert resumed.state.step == 2
check(resumed.state.params, resumed.place.mesh, "resumed params")
check(resumed.state.opt_state, resumed.place.mesh, "resumed optimizer state")
# token batches: rows split over both devices, one step's or several steps' (steps_per_call) alike
from scaling.train.mesh import batch_sharding, stacked_batch_sharding
assert batch_sharding(fresh.place.mesh).shard_shape((8, 16)) == (4, 16)
assert stacked_batch_sharding(fresh.place.mesh).shard_shape((3, 8, 16)) == (3, 4, 16)
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], env=_env(2), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
