"""Checkpoints: orbax's CheckpointManager over {params, opt_state, wall_s}."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    """orbax CheckpointManager over {params, opt_state, meta}; keeps the latest two."""

    def __init__(self, directory: str):
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: dict) -> None:
        if self.manager.latest_step() == step:
            return
        self.manager.save(step, args=ocp.args.StandardSave(state))
        self.manager.wait_until_finished()

    def restore(self, step: int, template: dict) -> dict:
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), template)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self.manager.close()


def checkpoint_state(params, opt_state, wall_s: float) -> dict:
    """What a checkpoint holds: the parameters, the optimizer state and the wall time spent so far."""
    return {"params": params, "opt_state": opt_state, "wall_s": jax.numpy.asarray(wall_s, jax.numpy.float32)}
