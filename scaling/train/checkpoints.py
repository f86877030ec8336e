"""Checkpoints: orbax's CheckpointManager over {params, opt_state, wall_s}. A checkpoint written with
unrolled layers (runs from before the scan: `blocks/<i>/...`) restores into the scanned tree (`blocks/...`
with a leading layer axis) by stacking its layers; see model.py."""
from __future__ import annotations

import errno
import os
import shutil
import socket
import uuid
from collections.abc import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from scaling.model import layer_stacked
from scaling.runs.files import storage_error

_TMP = ".orbax-checkpoint-tmp"


def _writer() -> str:
    """This process, as named in its temporary folders (read at each save: a forked child is another)."""
    return f"{socket.gethostname()}-{os.getpid()}"


_SAVE_TRIES = 8
# A disk that is full, read-only or refuses us: raised at once, never retried as a collision.
_DISK_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


class _PrivateTemporaryPath(ocp.path.atomicity.AtomicRenameTemporaryPath):
    """orbax's atomic rename through a temporary folder named for this writer (host, pid, a nonce), not
    orbax's one fixed `<step>.orbax-checkpoint-tmp` per step: an agent that lost its claim may still be
    saving the same step of the same run (it is fenced only between writes), and two writers sharing one
    temporary folder delete or rename it from under each other (FileNotFoundError in the chaos test)."""

    @classmethod
    def from_final(cls, final_path, **kwargs):
        private = final_path.parent / f"{final_path.name}{_TMP}-{_writer()}-{uuid.uuid4().hex[:8]}"
        return cls(private, final_path, **kwargs)


class Checkpoints:
    """orbax CheckpointManager over {params, opt_state, meta}; keeps the latest two."""

    def __init__(self, directory: str):
        # One process: private temporary folders, and not orbax's cleanup_tmp_directories, which deletes
        # every temporary folder, a live writer's too (see _PrivateTemporaryPath); discard_dead() removes
        # only what dead writers left. Several processes of one run (jax.distributed) write one checkpoint
        # together, into one temporary folder all of them must name alike: orbax's own naming and cleanup.
        private = jax.process_count() == 1
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(
                max_to_keep=2, enable_async_checkpointing=False, create=True, cleanup_tmp_directories=not private,
                temporary_path_class=_PrivateTemporaryPath if private else None),
            # named, so that item_metadata (the saved tree's layout, read on restore) knows how to read it
            item_handlers=ocp.StandardCheckpointHandler(),
        )
        if private:
            self.discard_dead()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: dict) -> None:
        """Save `step` unless it is saved already. An agent that lost its claim (stopped past its lease,
        then woken) may be finishing one save of this run while we save: its rename can beat ours, its
        listing or pruning can delete a folder ours is reading, orbax's overwrite can remove a step just
        renamed. Those collisions are retried; the state at a step is a pure function of the run's
        config, so whichever writer's checkpoint of a step lands serves. A full or read-only disk is not
        a collision and is raised at once."""
        for tries_left in reversed(range(_SAVE_TRIES)):
            if step in self._steps():
                return
            try:
                self.manager.save(step, args=ocp.args.StandardSave(state))
                self.manager.wait_until_finished()
                return
            except (OSError, ValueError) as err:
                self.discard_partial()
                if not _collision(err) or not tries_left:
                    raise
            except BaseException:
                self.discard_partial()
                raise

    def _steps(self) -> list[int]:
        """The saved steps, reread from the folder (another writer may have added or pruned one)."""
        for _ in range(_SAVE_TRIES - 1):
            try:
                self.manager.reload()
                return self.manager.all_steps()
            except (OSError, ValueError) as err:  # a step folder changed while orbax listed it: list again
                if not _collision(err):
                    raise
        self.manager.reload()
        return self.manager.all_steps()

    def discard_partial(self) -> None:
        """Remove what this process's failed or interrupted saves left behind (its temporary folders)."""
        self._discard(lambda writer: writer.startswith(f"{_writer()}-"))

    def discard_dead(self) -> None:
        """Remove temporary folders of saves cut short (kill -9, a full disk) by writers that are gone: a
        process of this host that no longer runs, or a name that is not a writer's. Another host's folder
        stays (its process cannot be checked from here); it costs disk, never a result."""
        host = socket.gethostname()

        def dead(writer: str) -> bool:
            name, _, _nonce = writer.rpartition("-")  # writer = host-pid-nonce; hosts may contain dashes
            wrote_host, _, pid = name.rpartition("-")
            if not pid.isdigit():
                return True  # orbax's own fixed name, or damage: no live writer of ours uses it
            return wrote_host == host and not _alive(int(pid))

        self._discard(dead)

    def _discard(self, which: Callable[[str], bool]) -> None:
        directory = str(self.manager.directory)
        for name in os.listdir(directory) if os.path.isdir(directory) else ():
            step, tmp, writer = name.partition(_TMP)
            if tmp and which(writer.removeprefix("-")):
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
        saved = self.manager.item_metadata(step)
        saved_names = {_names(path) for path, _ in jax.tree_util.tree_leaves_with_path(saved)}
        if any(layer_stacked(path) and _names(path) not in saved_names
               for path, _ in jax.tree_util.tree_leaves_with_path(template)):
            return self._restore_unrolled(step, template, saved)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), template)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def _restore_unrolled(self, step: int, template: dict, saved) -> dict:
        """An unrolled checkpoint's state in the template's scanned tree: each stacked leaf is its saved
        layers' leaves stacked in order, every other leaf is read as saved."""
        first = jax.tree.leaves(template)[0].sharding
        whole = (jax.sharding.NamedSharding(first.mesh, jax.sharding.PartitionSpec())
                 if isinstance(first, jax.sharding.NamedSharding) else first)
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=whole), saved)
        read = self.manager.restore(step, args=ocp.args.StandardRestore(target))
        arrays = {_names(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(read)}

        def leaf(path, like):
            names = _names(path)
            if layer_stacked(path):
                at = names.index("blocks") + 1
                layers = [names[:at] + (str(i),) + names[at:] for i in range(like.shape[0])]
                missing = [".".join(n) for n in layers if n not in arrays]
                if missing:
                    raise ValueError(f"checkpoint {step} lacks {missing[0]}: not this model's tree")
                value = np.stack([np.asarray(arrays[n]) for n in layers])
            elif names in arrays:
                value = np.asarray(arrays[names])
            else:
                raise ValueError(f"checkpoint {step} lacks {'.'.join(names)}: not this model's tree")
            if value.shape != like.shape:
                raise ValueError(f"checkpoint {step}: {'.'.join(names)} is {value.shape}, the model's {like.shape}")
            return jax.device_put(value.astype(like.dtype), like.sharding)

        return jax.tree_util.tree_map_with_path(leaf, template)

    def close(self) -> None:
        self.manager.close()


def _collision(err: BaseException) -> bool:
    """True for what another writer of the same checkpoint folder can cause: a path that appeared (a lost
    rename: ENOTEMPTY, etils' FileExistsError, orbax's "already exists") or vanished or changed while
    orbax read it (FileNotFoundError, NotADirectoryError, a missing metadata file: pruned or overwritten
    by the other writer). orbax raises these as many types; a storage fault (full, read-only, no
    permission) is never one."""
    if isinstance(err, OSError) and err.errno in _DISK_FAULTS:
        return False
    if storage_error(err, "") is not None and not isinstance(err, OSError):  # tensorstore's, in its message
        return False
    return isinstance(err, (OSError, ValueError))


def _names(path) -> tuple[str, ...]:
    """A tree path as names, alike for the live tree (nnx.State, optax tuples) and orbax's saved one."""
    return tuple(str(next((getattr(e, f) for f in ("key", "name", "idx") if hasattr(e, f)), e)) for e in path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def checkpoint_state(params, opt_state, wall_s: float, replicated) -> dict:
    """What a checkpoint holds: the parameters, the optimizer state and the wall time spent so far
    (replicated over the mesh, so every process saves and restores the same value)."""
    wall = np.float32(wall_s)
    if jax.process_count() > 1:  # each process timed itself: keep process 0's clock
        wall = multihost_utils.broadcast_one_to_all(wall)
    return {"params": params, "opt_state": opt_state, "wall_s": jax.device_put(wall, replicated)}
