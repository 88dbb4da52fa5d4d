"""3D inference for volumetric networks (``feature3d``): sliding 3D windows, then Algorithm 4.

A volumetric network maps (B, C, Z, Y, X) -> (B, 4, Z, Y, X) = (dz, dy, dx on the x5
training scale, cell-probability logit) and carries ``spatial_dims = 3``. A volume that
fits in one window is predicted in one call; a larger one is cut into overlapping windows
by MONAI's ``sliding_window_inference`` and the window predictions are blended with a
Gaussian weight, so the network's memory is bounded by the window and batch size. The flows
(divided by 5) and logits then go through :func:`mediar3d.postprocess.compute_masks`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mediar3d.data.normalize import normalize_percentile
from mediar3d.errors import ConfigError, InputError
from mediar3d.inference.anisotropy import (
    check_anisotropy,
    resample_image,
    resample_labels,
    target_shape,
)
from mediar3d.inference.device import autocast, select_device
from mediar3d.inference.loader import InferenceModel, resolve_model
from mediar3d.inference.segment import (
    SegmentResult,
    _check_volume,
    _relabel,
    resolve_min_size,
    resolve_min_size_fraction,
)

logger = logging.getLogger(__name__)

#: Default window (z, y, x) of the sliding-window inference.
DEFAULT_ROI: tuple[int, int, int] = (32, 256, 256)


def is_volumetric(net: nn.Module) -> bool:
    """True for networks taking volumes (B, C, Z, Y, X) (attribute ``spatial_dims == 3``)."""
    while isinstance(net, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        net = net.module
    return int(getattr(net, "spatial_dims", 2)) == 3


def window_size(shape: Sequence[int], roi_size: Sequence[int] | int | None) -> tuple[int, int, int]:
    """The sliding window (z, y, x) for a volume: `roi_size` clipped to the volume (None: whole volume)."""
    if roi_size is None:
        return tuple(int(s) for s in shape)  # type: ignore[return-value]
    roi = (int(roi_size),) * 3 if isinstance(roi_size, (int, np.integer)) else tuple(int(r) for r in roi_size)
    if len(roi) != 3 or min(roi) < 1:
        raise ConfigError(f"roi_size {roi_size!r}: give three positive window sides (z, y, x)")
    return tuple(min(r, int(s)) for r, s in zip(roi, shape))  # type: ignore[return-value]


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
    progress: bool = False,
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
        progress: Show MONAI's progress bar over windows.

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

    def run(batch: torch.Tensor) -> torch.Tensor:
        with autocast(device, enabled=amp):
            return net(batch.to(device)).float()

    with torch.inference_mode():
        if roi == tuple(tensor.shape[2:]):
            out = run(tensor).cpu()
        else:
            from monai.inferers import sliding_window_inference

            out = sliding_window_inference(tensor, roi, batch_size, run, overlap=overlap, mode=blend,
                                           sigma_scale=0.125, padding_mode="constant", cval=0.0,
                                           sw_device=device, device=torch.device("cpu"), progress=progress)
    return np.asarray(out[0], dtype=np.float32)


def _volume_net(resolved: InferenceModel) -> InferenceModel:
    if not is_volumetric(resolved.net):
        raise InputError(f"model {resolved.name}: a 2D network; use mediar3d.inference.segment for it")
    return resolved


def run_volume_segmentation(
    volume: Any,
    model: str | Path | nn.Module | InferenceModel,
    *,
    diameter: float | None = None,
    anisotropy: float | None = None,
    roi_size: Sequence[int] | int | None = DEFAULT_ROI,
    overlap: float = 0.25,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    amp: bool = False,
    tta: bool = False,
    keep_flows: bool = False,
    progress: bool = False,
    model_diameter: float | None = None,
    cellprob_threshold: float | None = None,
    flow_threshold: float | None = None,
    min_size: float | None = None,
    min_size_fraction: float | None = None,
    niter: int = 200,
    max_size_fraction: float = 0.4,
) -> SegmentResult:
    """Segment a volume (z, y, x) with a volumetric network (e.g. ``feature3d``).

    Pipeline: percentile-normalise -> resample (z to isotropic; objects to the model's
    training diameter when both diameters are known) -> sliding-window prediction ->
    flows / 5 -> :func:`mediar3d.postprocess.compute_masks` -> labels on the input grid.

    Args:
        volume: (z, y, x) array or `mediar3d.io.Image` (its voxel size gives the anisotropy).
        model: Checkpoint path, module or InferenceModel of a volumetric network.
        diameter: Object diameter (pixels, y/x); with the model's training diameter it sets
            the rescaling. None: no rescaling (3D diameter estimation is not done).
        anisotropy: z voxel size / xy voxel size; None reads it from an Image, else 1.
        roi_size: Sliding window (z, y, x) on the resampled grid; None = whole volume.
        overlap: Window overlap fraction.
        batch_size: Windows per network call.
        device: "cpu", "cuda", "mps" or None for automatic.
        amp: Mixed precision.
        tta: Average the network over the 8 flips of (z, y, x), flow signs corrected (8x slower).
        keep_flows: Also return flows (3, Z, Y, X) on the unit scale and the probability.
        progress: Show a progress bar over windows.
        model_diameter: Override the model's training diameter.
        cellprob_threshold, flow_threshold: Post-processing thresholds (None: the model's).
        min_size: Smallest object kept, in input voxels (None: the model's, else 15).
        min_size_fraction: Smallest object kept as a fraction of the typical one (None: the model's).
        niter, max_size_fraction: Post-processing settings.

    Returns:
        SegmentResult with int32 labels of the input shape.
    """
    from mediar3d.postprocess import compute_masks

    start = time.perf_counter()
    array, voxel_anisotropy = _check_volume(volume, True)
    aniso = check_anisotropy(voxel_anisotropy if anisotropy is None else anisotropy)
    if diameter is not None and (not np.isfinite(diameter) or diameter <= 0):
        raise InputError(f"diameter {diameter!r}: must be a positive number of pixels (or None)")
    resolved = _volume_net(resolve_model(model, model_diameter=model_diameter))
    dev = select_device(device)
    net = resolved.net.to(dev).eval()
    if tta:
        from mediar3d.inference.ensemble import FlipTTA

        net = FlipTTA(net)
    min_size = resolve_min_size(min_size, resolved)
    options = dict(niter=niter, flow_threshold=resolved.flow_threshold if flow_threshold is None else flow_threshold,
                   cellprob_threshold=(resolved.cellprob_threshold if cellprob_threshold is None
                                       else cellprob_threshold), max_size_fraction=max_size_fraction,
                   min_size_fraction=resolve_min_size_fraction(min_size_fraction, resolved))
    scale = resolved.diameter / diameter if (diameter and resolved.diameter) else 1.0
    work_shape = target_shape(array.shape, (aniso * scale, scale, scale))
    voxel_factor = float(np.prod(np.array(work_shape) / np.array(array.shape)))
    work = resample_image(normalize_percentile(array, resolved.percentiles), work_shape)
    logger.info("input %s -> network grid %s (anisotropy %.2f, scale %.3f)", array.shape, work_shape, aniso, scale)
    net_start = time.perf_counter()
    pred = predict_volume(net, work, roi_size=roi_size, overlap=overlap, batch_size=batch_size, device=dev, amp=amp,
                          progress=progress)
    del work
    flows, logits = pred[:3] / FLOW_SCALE, pred[3]
    net_time = time.perf_counter() - net_start
    labels = np.asarray(compute_masks(flows, logits, min_size=max(1, int(round(min_size * voxel_factor))), **options))
    labels = _relabel(resample_labels(labels, array.shape))
    result = SegmentResult(labels=labels)
    if keep_flows:
        result.flows = np.stack([resample_image(f, array.shape) for f in flows])
        result.probability = 1.0 / (1.0 + np.exp(-resample_image(logits, array.shape)))
    result.params = {
        "model": resolved.name, "mode": "3d-network", "model_diameter": resolved.diameter, "diameter": diameter,
        "anisotropy": aniso, "scale": scale, "input_shape": list(array.shape), "network_shape": list(work_shape),
        "roi_size": None if roi_size is None else list(window_size(work_shape, roi_size)), "overlap": overlap,
        "batch_size": batch_size, "tta": tta, "device": str(dev), "min_size": min_size, **options,
        "n_objects": int(labels.max(initial=0)), "time_network_s": round(net_time, 3),
        "time_total_s": round(time.perf_counter() - start, 3),
    }
    return result


def segment_volume(volume: Any, model: str | Path | nn.Module | InferenceModel, **options: Any) -> np.ndarray:
    """Labels (int32, shape of `volume` (z, y, x)) from a volumetric network; options as `run_volume_segmentation`."""
    return run_volume_segmentation(volume, model, **options).labels


__all__ = ["DEFAULT_ROI", "FLOW_SCALE", "is_volumetric", "predict_volume", "run_volume_segmentation",
           "segment_volume", "window_size"]
