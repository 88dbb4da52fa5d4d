"""Sliding-window prediction of volumetric networks (``feature3d``).

A volumetric network maps (B, C, Z, Y, X) -> (B, 4, Z, Y, X) = (dz, dy, dx on the x5
training scale, cell-probability logit) and carries ``spatial_dims = 3``. A volume that
fits in one window is predicted in one call; a larger one is cut into overlapping windows
by MONAI's ``sliding_window_inference`` and the window predictions are blended with a
Gaussian weight, so the network's memory is bounded by the window and batch size.
:func:`mediar3d.inference.predict.predict` resamples the volume and calls
:func:`predict_volume`; :func:`mediar3d.inference.predict.labels` post-processes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from mediar3d.errors import ConfigError, InputError
from mediar3d.inference.device import autocast
from mediar3d.models.checkpoint import unwrap_model
from mediar3d.optional import missing_extra

logger = logging.getLogger(__name__)

#: Default window (z, y, x) of the sliding-window inference.
DEFAULT_ROI: tuple[int, int, int] = (32, 256, 256)


def is_volumetric(net: nn.Module) -> bool:
    """True for networks taking volumes (B, C, Z, Y, X) (attribute ``spatial_dims == 3``)."""
    return int(getattr(unwrap_model(net), "spatial_dims", 2)) == 3


def window_size(shape: Sequence[int], roi_size: Sequence[int] | int | None) -> tuple[int, int, int]:
    """The sliding window (z, y, x) for a volume: `roi_size` clipped to the volume (None: whole volume)."""
    if roi_size is None:
        return tuple(int(s) for s in shape)  # type: ignore[return-value]
    roi = (int(roi_size),) * 3 if isinstance(roi_size, (int, np.integer)) else tuple(int(r) for r in roi_size)
    if len(roi) != 3 or min(roi) < 1:
        raise ConfigError(f"roi_size {roi_size!r}: give three positive window sides (z, y, x)")
    return tuple(min(r, int(s)) for r, s in zip(roi, shape))  # type: ignore[return-value]


def window_count(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """Windows MONAI's ``sliding_window_inference`` cuts a volume of `shape` into (`roi` clipped to it).

    Its scan interval is the window side times (1 - overlap), at least 1, or the side
    itself where the window spans the axis; the last window of an axis ends at the border.
    """
    count = 1
    for size, side in zip(shape, roi):
        if side >= size:
            continue
        step = max(1, int(side * (1.0 - overlap)))
        count *= math.ceil((size - side) / step) + 1
    return count


def predict_volume(
    net: nn.Module,
    volume: np.ndarray,
    *,
    roi_size: Sequence[int] | int | None = DEFAULT_ROI,
    overlap: float = 0.25,
    batch_size: int = 1,
    blend: str = "gaussian",
    device: torch.device | str = "cpu",
    amp: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run a volumetric network on a whole volume, window by window.

    Args:
        net: Maps (B, C, z, y, x) -> (B, 4, z, y, x); used in its current mode.
        volume: Normalised float volume (Z, Y, X) (repeated to the network's input
            channels) or (C, Z, Y, X).
        roi_size: Window (z, y, x), clipped to the volume; None = one window (no tiling).
        overlap: Fraction of a window shared with its neighbours along each axis, [0, 0.9].
        batch_size: Windows per network call.
        blend: ``"gaussian"`` (centre-weighted, hides seams) or ``"constant"`` (plain mean).
        device: Where the network runs; the blended output is assembled on the CPU.
        amp: Run under autocast (bfloat16 on CPU, float16 on CUDA).
        progress: Called with (windows done, windows in all) after every network call.

    Returns:
        float32 (4, Z, Y, X): dz, dy, dx flows (x5 scale) and the cell-probability logit.
    """
    if volume.ndim == 3:
        volume = volume[None]
    if volume.ndim != 4:
        raise InputError(f"predict_volume: expected a volume (z, y, x) or (c, z, y, x), got shape {volume.shape}")
    if not 0.0 <= overlap <= 0.9:
        raise ConfigError(f"window overlap {overlap}: must be in [0, 0.9]")
    if batch_size < 1:
        raise ConfigError(f"batch size {batch_size}: must be >= 1")
    if blend not in ("gaussian", "constant"):
        raise ConfigError(f"blend {blend!r}: use 'gaussian' or 'constant'")
    device = torch.device(device)
    in_channels = int(getattr(net, "in_channels", volume.shape[0]))
    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None]
    if tensor.shape[1] != in_channels:
        if tensor.shape[1] != 1:
            raise InputError(f"volume has {tensor.shape[1]} channels; the network expects {in_channels}")
        tensor = tensor.expand(-1, in_channels, -1, -1, -1)
    roi = window_size(tensor.shape[2:], roi_size)
    total = window_count(tensor.shape[2:], roi, overlap)
    done = 0

    def run(batch: torch.Tensor) -> torch.Tensor:
        nonlocal done
        with autocast(device, enabled=amp):
            out = net(batch.to(device)).float()
        done += batch.shape[0]
        if progress:
            progress(done, total)
        return out

    with torch.inference_mode():
        if roi == tuple(tensor.shape[2:]):
            out = run(tensor).cpu()
        else:
            try:
                from monai.inferers import sliding_window_inference
            except ModuleNotFoundError as error:
                raise missing_extra(error, "models", "sliding-window inference of a 3D network") from None

            out = sliding_window_inference(tensor, roi, batch_size, run, overlap=overlap, mode=blend,
                                           sigma_scale=0.125, padding_mode="constant", cval=0.0,
                                           sw_device=device, device=torch.device("cpu"))
    return np.asarray(out[0], dtype=np.float32)


__all__ = ["DEFAULT_ROI", "is_volumetric", "predict_volume", "window_count", "window_size"]
