"""Checkpoints: orbax's CheckpointManager over {params, opt_state, wall_s}."""
from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


class Checkpoints:
    """orbax CheckpointManager over {params, opt_state, meta}; keeps the latest two."""

    def __init__(self, directory: str):
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            # cleanup_tmp_directories: a save cut short (kill -9, a full disk) leaves a temporary folder.
            options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False, create=True,
                                                 cleanup_tmp_directories=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: dict) -> None:
        # Reread the folder: an agent that lost its claim may have finished a save here meanwhile; the
        # state at a step is a pure function of the run's config, so its checkpoint serves as well.
        self.manager.reload()
        if step in self.manager.all_steps():
            return
        try:
            self.manager.save(step, args=ocp.args.StandardSave(state))
            self.manager.wait_until_finished()
        except OSError as err:
            self.discard_partial()
            self.manager.reload()
            # The same race, lost in its last instant: the stale agent's rename landed between the check
            # above and ours (ENOTEMPTY, seen in the chaos test). Its checkpoint of this step serves.
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST) and step in self.manager.all_steps():
                return
            raise
        except BaseException:
            self.discard_partial()
            raise

    def discard_partial(self) -> None:
        """Remove what a failed or interrupted save left behind (orbax's temporary folders)."""
        directory = str(self.manager.directory)
        for name in os.listdir(directory) if os.path.isdir(directory) else ():
            if ".orbax-checkpoint-tmp" in name:
                shutil.rmtree(os.path.join(directory, name), ignore_errors=True)

    def restore_intact(self, template: dict, warn: Callable[[str], None]) -> tuple[int, dict] | None:
        """(step, state) of the newest checkpoint that restores, or None when there is none. A damaged one
        (a truncated file, missing metadata) is set aside as `<step>.damaged`, with one line to `warn`
        saying so, and the one before it is tried."""
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                return step, self.restore(step, template)
            except Exception as err:  # noqa: BLE001 - orbax and tensorstore raise many types for damage
                aside = self._set_aside(step)
                why = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
                warn(f"checkpoint at step {step} is damaged ({type(err).__name__}: {why}); moved it to {aside} "
                     "and resuming from the one before it")
        return None

    def _set_aside(self, step: int) -> str:
        directory = str(self.manager.directory)
        source, target = os.path.join(directory, str(step)), os.path.join(directory, f"{step}.damaged")
        shutil.rmtree(target, ignore_errors=True)
        if os.path.exists(source):
            os.replace(source, target)
        self.manager.reload()
        return target

    def restore(self, step: int, template: dict) -> dict:
        """The state saved at `step`, placed as `template` is: a checkpoint saved on one mesh restores
        onto another (orbax reads each device's slice)."""
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), template)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self.manager.close()


def checkpoint_state(params, opt_state, wall_s: float, replicated) -> dict:
    """What a checkpoint holds: the parameters, the optimizer state and the wall time spent so far
    (replicated over the mesh, so every process saves and restores the same value)."""
    wall = np.float32(wall_s)
    if jax.process_count() > 1:  # each process timed itself: keep process 0's clock
        wall = multihost_utils.broadcast_one_to_all(wall)
    return {"params": params, "opt_state": opt_state, "wall_s": jax.device_put(wall, replicated)}
