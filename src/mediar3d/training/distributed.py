"""Multi-GPU / multi-node training with torch's own distributed package.

Launch with ``torchrun --nproc_per_node=N -m mediar3d train ...`` (or any launcher that
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): every
process trains on its own share of each epoch's draw, gradients are averaged by
DistributedDataParallel, and rank 0 validates, logs and writes files. The backend is NCCL
on CUDA and gloo otherwise (so it also runs on CPUs).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """True on the process that validates, logs and saves."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def current() -> DistInfo:
    """The DistInfo of an initialised process group (single process if none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", dist.get_rank())), dist.get_world_size())
    return DistInfo()


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """Resolve ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` / ``mps`` to a device (``cuda`` -> this rank's GPU).

    :func:`mediar3d.inference.device.select_device` with this process's local rank.
    """
    from mediar3d.inference.device import select_device as choose

    return choose(name, local_rank=local_rank)


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group described by torchrun's environment variables, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return current()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        log.info("joined process group: rank %d of %d (%s)", dist.get_rank(), world, backend)
    return current()


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average each value over the processes (identity when not distributed)."""
    info = current()
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= info.world_size
    return {k: float(v) for k, v in zip(keys, tensor.tolist())}


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if current().enabled:
        dist.barrier()
