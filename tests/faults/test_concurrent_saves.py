"""Two writers of one run's checkpoints at once: what an agent that lost its claim (SIGSTOPped past its
lease, then woken) and the agent that took the run over do when both reach the same step. The chaos test
once failed a run this way (FileNotFoundError on orbax's shared `<step>.orbax-checkpoint-tmp`)."""
import os
import subprocess
import sys
import textwrap

import jax.numpy as jnp
import numpy as np
import pytest

from scaling.train.checkpoints import Checkpoints, _writer

SAVER = textwrap.dedent("""
    import sys
    import jax.numpy as jnp
    from scaling.train.checkpoints import Checkpoints
    ckpt = Checkpoints(sys.argv[1])
    state = {"w": jnp.arange(4096.0), "step": jnp.int32(0)}
    print("ready", flush=True)
    sys.stdin.readline()  # start together
    for step in range(1, 41):
        ckpt.save(step, {"w": state["w"] * step, "step": jnp.int32(step)})
    ckpt.close()
""")


def _state(step):
    return {"w": jnp.arange(4096.0) * step, "step": jnp.int32(step)}


@pytest.mark.slow  # two processes racing; the fast suite keeps the staging-folder rule below
def test_two_processes_saving_the_same_steps_of_one_run_both_succeed_and_every_checkpoint_restores(tmp_path):
    directory = str(tmp_path / "checkpoints")
    savers = [subprocess.Popen([sys.executable, "-c", SAVER, directory], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for saver in savers:
        assert saver.stdout.readline().strip() == "ready", saver.stderr.read()
    for saver in savers:
        saver.stdin.write("go\n")
        saver.stdin.flush()
    results = [(saver.wait(timeout=300), saver.stderr.read()) for saver in savers]
    assert [code for code, _ in results] == [0, 0, 0], [err[-4000:] for _, err in results]

    ckpt = Checkpoints(directory)
    assert ckpt.latest_step() == 40
    for step in ckpt.manager.all_steps():
        restored = ckpt.restore(step, _state(0))
        assert int(restored["step"]) == step
        np.testing.assert_array_equal(np.asarray(restored["w"]), np.arange(4096.0) * step)
    assert not [n for n in os.listdir(directory) if "tmp" in n]  # no writer left a temporary folder


def test_opening_a_run_keeps_a_live_writers_temporary_folder_and_removes_a_dead_ones(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    host = _writer().rpartition("-")[0]
    live = directory / f"7.orbax-checkpoint-tmp-{host}-{os.getppid()}-0a1b2c3d"  # pytest's parent runs
    dead = directory / f"7.orbax-checkpoint-tmp-{host}-{2**22 + 12345}-0a1b2c3d"  # beyond pid_max's default
    other_host = directory / "7.orbax-checkpoint-tmp-elsewhere-1-0a1b2c3d"
    legacy = directory / "6.orbax-checkpoint-tmp"  # orbax's fixed name, from before private folders
    for folder in (live, dead, other_host, legacy):
        folder.mkdir()
        (folder / "part").write_text("half a save")

    ckpt = Checkpoints(str(directory))
    ckpt.save(7, _state(7))
    assert sorted(os.listdir(directory)) == sorted(["7", live.name, other_host.name])
    assert ckpt.manager.all_steps() == [7]  # the other writers' folders are not steps

    ckpt.discard_partial()  # this process's own leftovers only
    assert sorted(os.listdir(directory)) == sorted(["7", live.name, other_host.name])
