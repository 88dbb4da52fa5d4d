"""Compute-device selection and mixed precision for inference."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from mediar3d.errors import ConfigError


def select_device(device: str | torch.device | None = None, local_rank: int | None = None) -> torch.device:
    """Return the device to run on: the given one, else cuda, then mps, then cpu.

    The one device choice of the package: inference, training (one process per GPU:
    ``local_rank`` picks this process's GPU when the name gives no index), Dask block
    workers and ``mediar3d cluster`` all call it.

    Args:
        device: "cpu", "cuda", "cuda:1", "mps", a torch.device, or None / "auto" to pick.
        local_rank: Rank of this process on its machine; ``cuda`` then means GPU
            ``local_rank % device_count``. None: the current CUDA device.

    Raises:
        ConfigError: the name is unknown or the device is not available here.
    """
    chosen = _choose(device)
    if chosen.type == "cuda" and chosen.index is None and local_rank is not None:
        chosen = torch.device("cuda", local_rank % torch.cuda.device_count())
    return chosen


def _choose(device: str | torch.device | None) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device {device!r}: unknown device name (use auto, cpu, cuda, cuda:N or mps)") from err
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r}: CUDA is not available on this machine (use --device cpu or auto)")
    if chosen.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"device {device!r}: MPS is not available on this machine (use --device cpu or auto)")
    return chosen


def autocast(device: torch.device, enabled: bool = True) -> ContextManager:
    """Mixed precision (float16) on CUDA; a no-op context elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()
