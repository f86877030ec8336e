"""Where a run's arrays live: its device mesh and the one rule table that maps every parameter and
optimizer-state array to a named sharding.

Two mesh axes: `data` (each device a slice of the batch, parameters replicated) and `fsdp` (each
device a slice of the batch and a slice of every matrix: fully sharded data parallel). One device is the
1 x 1 mesh, so a single-device run takes the same code path as a node or a slice. XLA inserts the
collectives the shardings imply; nothing here moves data by hand.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scaling.errors import UsageError
from scaling.model import layer_stacked

AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")  # the batch is split over every device, whichever axis holds it


@dataclass(frozen=True)
class MeshShape:
    """Devices along each axis; their product is the run's device count."""

    data: int = 1
    fsdp: int = 1

    @property
    def devices(self) -> int:
        return self.data * self.fsdp

    def describe(self) -> str:
        return ",".join(f"{axis}:{getattr(self, axis)}" for axis in AXES)

    @classmethod
    def parse(cls, text: str | None, n_devices: int | None) -> MeshShape:
        """`data:8`, `fsdp:8`, `data:2,fsdp:4`; None or "" puts every device on `data`. With
        n_devices None only the syntax is checked (a sweep is planned away from its devices)."""
        if not text:
            return cls(data=n_devices or 1)
        sizes = {}
        for part in text.split(","):
            axis, sep, size = part.strip().partition(":")
            if axis not in AXES or not sep or not size.strip().isdigit() or int(size) < 1 or axis in sizes:
                raise UsageError(f"mesh={text!r}: expected axis:size pairs over {', '.join(AXES)} "
                                 "(e.g. data:8, fsdp:8, data:2,fsdp:4)")
            sizes[axis] = int(size)
        shape = cls(**sizes)
        if n_devices is not None and shape.devices != n_devices:
            raise UsageError(f"mesh={text!r} spans {shape.devices} devices but the run has {n_devices} "
                             f"(allowed: axis sizes whose product is {n_devices})")
        return shape


def run_devices(indices: str | None = None) -> list:
    """The devices a run may use: all of this job's (every process's), or the given local indices."""
    if indices is None:
        return jax.devices()
    indices = [int(i) for i in indices.split(",")]
    local = jax.local_devices()
    bad = [i for i in indices if not 0 <= i < len(local)]
    if bad:
        raise UsageError(f"devices={','.join(map(str, indices))}: local device {bad[0]} does not exist "
                         f"(this process sees {len(local)}: 0..{len(local) - 1})")
    return [local[i] for i in indices]


def make_mesh(shape: MeshShape, devices: list) -> Mesh:
    return Mesh(np.asarray(devices, dtype=object).reshape(shape.data, shape.fsdp), AXES)


# ---- the rule table --------------------------------------------------------------------------------
def partition(array_shape: tuple[int, ...], fsdp: int, stacked: bool = False) -> PartitionSpec:
    """The rule table, one rule per kind of array:
    - a matrix (2-D or more) shards its largest dimension that `fsdp` divides over `fsdp` (ties: the
      last such dimension, the output features of a weight);
    - anything else (norm scales, Adam's step count, scalars) is replicated: too small to be worth it.
    On a mesh without an fsdp axis (fsdp = 1) everything is replicated. `stacked`: the array's leading axis
    is the layer axis of scanned blocks; it is never sharded (the scan steps through it), and the rule
    applies to the remaining dimensions."""
    if stacked:
        return PartitionSpec(None, *partition(array_shape[1:], fsdp))
    if fsdp > 1 and len(array_shape) >= 2:
        candidates = [i for i, n in enumerate(array_shape) if n % fsdp == 0]
        if candidates:
            dim = max(candidates, key=lambda i: (array_shape[i], i))
            return PartitionSpec(*(["fsdp" if i == dim else None for i in range(len(array_shape))]))
    return PartitionSpec()


def tree_shardings(tree, mesh: Mesh):
    """A NamedSharding for every array leaf of `tree` (arrays or ShapeDtypeStructs): parameters and the
    optimizer state's copies of them alike (model.layer_stacked finds the layer axis in either)."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree_util.tree_map_with_path(
        lambda path, x: NamedSharding(mesh, partition(tuple(x.shape), fsdp, layer_stacked(path))), tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Token batches (rows, seq_len): rows split over every device of the mesh."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, None))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """Several steps' batches (steps, rows, seq_len): each step's rows split as `batch_sharding` splits them."""
    return NamedSharding(mesh, PartitionSpec(None, BATCH_AXES, None))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_batch(batch_size: int, microbatches: int, shape: MeshShape) -> None:
    """A microbatch must split evenly over the devices; say which numbers would."""
    if batch_size % microbatches:
        raise UsageError(f"batch_size={batch_size} does not divide into microbatches={microbatches}")
    micro = batch_size // microbatches
    if micro % shape.devices:
        step = shape.devices * microbatches
        raise UsageError(f"batch_size={batch_size} / microbatches={microbatches} = {micro} rows per microbatch "
                         f"does not divide over mesh {shape.describe()} ({shape.devices} devices); "
                         f"allowed: a batch_size that is a multiple of {step}")
