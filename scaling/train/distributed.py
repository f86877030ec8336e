"""Multi-host runs: `jax.distributed` joins the processes of one run into one set of devices; each then
builds only its own rows of every batch, and only process 0 writes the run directory, the index and W&B."""
from __future__ import annotations

import os

import jax

from scaling.config import RunConfig
from scaling.errors import UsageError


def launched_as_several_processes() -> bool:
    """True under `srun` with several tasks or on a multi-host TPU slice, where jax.distributed finds
    its coordinator by itself."""
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_STEP_ID" in os.environ:
        return True
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def initialize(cfg: RunConfig) -> None:
    """Join the run's processes, when the config or the environment says it has several. Must come
    before anything asks JAX for its devices."""
    if jax.distributed.is_initialized():
        return
    if cfg.coordinator is not None or cfg.num_processes is not None:
        if cfg.coordinator is None or cfg.num_processes is None:
            raise UsageError("a multi-host run needs coordinator=HOST:PORT, num_processes=N and process_id=I")
        jax.distributed.initialize(cfg.coordinator, cfg.num_processes, cfg.process_id)
    elif launched_as_several_processes():
        jax.distributed.initialize()


def is_writer() -> bool:
    """Process 0 writes the run's files, index rows and W&B run; the others only compute."""
    return jax.process_index() == 0


def to_float(x) -> float:
    """A replicated scalar's value, also when the array spans processes (not all of it is addressable)."""
    return float(x.addressable_data(0)) if hasattr(x, "addressable_data") else float(x)
