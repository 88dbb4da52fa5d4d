"""`segment`: from a volume (z, y, x) or image (y, x) to instance labels.

Pipeline: validate -> percentile-normalise -> estimate the object diameter (unless given)
-> resample (z to isotropic, objects to the model's training size) -> 2D network on slices
along z, y and x (Algorithm 1), or along z only, or on the single image -> flows / 5 ->
`mediar3d.postprocess.compute_masks` -> labels back to the original grid.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import fastremap
import numpy as np
import torch

from mediar3d.data.normalize import normalize_percentile, normalize_range
from mediar3d.errors import InputError
from mediar3d.io.naming import anisotropy_from_voxel_size
from mediar3d.models.base import FLOW_SCALE
from mediar3d.inference.anisotropy import (
    check_anisotropy,
    resample_image,
    resample_labels,
    target_shape,
)
from mediar3d.inference.device import autocast, select_device
from mediar3d.inference.diameter import ESTIMATE_THRESHOLDS, estimate_diameter
from mediar3d.inference.loader import InferenceModel, resolve_model
from mediar3d.inference.orthoslice import predict_orthoslices
from mediar3d.inference.stitch import stitch_slices
from mediar3d.inference.tiling import predict_slices
from mediar3d.inference.tta import with_flip_tta

logger = logging.getLogger(__name__)

#: Limits of the zoom applied to match the model's training diameter.
MIN_SCALE, MAX_SCALE = 1.0 / 16.0, 8.0
#: Smallest object kept (input voxels) when neither the caller nor the model sets one.
DEFAULT_MIN_SIZE = 15
#: Smallest object kept as a fraction of the typical object, when neither the caller nor the model sets one.
DEFAULT_MIN_SIZE_FRACTION = 0.0


@dataclasses.dataclass
class SegmentResult:
    """Labels and, on request, the network outputs on the original grid.

    Attributes:
        labels: int32 instance labels, same shape as the input, 0 = background.
        flows: float32 (3, Z, Y, X) (dz, dy, dx) or (2, Y, X) for 2D, unit scale; None unless asked.
        probability: float32 cell probability in [0, 1], input shape; None unless asked.
        params: Resolved parameters and timings (JSON-serialisable).
    """

    labels: np.ndarray
    flows: np.ndarray | None = None
    probability: np.ndarray | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


def _check_volume(volume: Any, do_3d: bool) -> tuple[np.ndarray, float | None]:
    """Return the array and the anisotropy from its voxel size, if it is an Image."""
    voxel_anisotropy = None
    if hasattr(volume, "data") and hasattr(volume, "voxel_size"):
        voxel_anisotropy = anisotropy_from_voxel_size(getattr(volume, "voxel_size"))
        volume = volume.data
    array = np.asarray(volume)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"input of dtype {array.dtype}: expected an integer or floating-point image")
    want = 3 if do_3d else (2, 3)
    if array.ndim not in np.atleast_1d(want):
        if do_3d and array.ndim == 2:
            raise InputError(f"input of shape {array.shape} is 2D: a 3D run needs a (z, y, x) volume (use do_3d=False / --2d for one image)")
        raise InputError(f"input of shape {array.shape}: expected (z, y, x){'' if do_3d else ' or (y, x)'}; select one channel first")
    if min(array.shape) < 1 or array.size == 0:
        raise InputError(f"input of shape {array.shape} is empty")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError(f"input of shape {array.shape} contains NaN or infinite values; fix or mask them first")
    return array, voxel_anisotropy


def _net_function(model: InferenceModel, device: torch.device, tta: bool):
    net = model.net.to(device)
    repeat = model.in_channels

    def run(batch: torch.Tensor) -> torch.Tensor:
        if repeat > 1:
            batch = batch.repeat(1, repeat, 1, 1)
        with autocast(device):
            return net(batch).float()

    return with_flip_tta(run) if tta else run


def resolve_min_size(min_size: float | None, model: InferenceModel) -> float:
    """The smallest object size (input voxels) to keep: the given one, else the model's, else 15."""
    if min_size is None:
        min_size = DEFAULT_MIN_SIZE if model.min_size is None else model.min_size
    value = float(min_size)
    if not np.isfinite(value) or value < 0:
        raise InputError(f"min_size {min_size!r}: must be a number of voxels >= 0")
    return int(value) if value.is_integer() else value


def resolve_min_size_fraction(fraction: float | None, model: InferenceModel) -> float:
    """The smallest object as a fraction of the typical one: the given one, else the model's, else the default."""
    if fraction is None:
        fraction = DEFAULT_MIN_SIZE_FRACTION if model.min_size_fraction is None else model.min_size_fraction
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise InputError(f"min_size_fraction {fraction!r}: must be a number in [0, 1)") from None
    if not 0.0 <= value < 1.0:
        raise InputError(f"min_size_fraction {fraction!r}: must be a number in [0, 1)")
    return value


def _relabel(labels: np.ndarray) -> np.ndarray:
    labels, _ = fastremap.renumber(np.ascontiguousarray(labels), in_place=True)
    return labels.astype(np.int32 if labels.max(initial=0) < 2**31 else np.int64, copy=False)


def run_segmentation(
    volume: Any,
    model: str | Path | torch.nn.Module | InferenceModel | Sequence[str | Path] | None = None,
    *,
    diameter: float | None = None,
    anisotropy: float | None = None,
    do_3d: bool = True,
    z_only: bool = False,
    tile: int = 256,
    tile_overlap: float = 0.25,
    batch_size: int = 8,
    tta: bool = False,
    device: str | torch.device | None = None,
    keep_flows: bool = False,
    progress: bool = True,
    model_diameter: float | None = None,
    cellprob_threshold: float | None = None,
    flow_threshold: float | None = None,
    min_size: float | None = None,
    min_size_fraction: float | None = None,
    niter: int = 200,
    max_size_fraction: float = 0.4,
    stitch_threshold: float = 0.25,
    intensity_range: tuple[float, float] | None = None,
) -> SegmentResult:
    """Segment and return a SegmentResult (labels, optional flows / probability, parameters).

    Same arguments as `segment`; `keep_flows` asks for flows and probability;
    `intensity_range` = (low, high) replaces the percentile normalisation by a fixed
    mapping low -> 0, high -> 1 (so that blocks of one large volume are treated alike).
    `cellprob_threshold`, `flow_threshold`, `min_size` and `min_size_fraction` left at None
    take the model's (a checkpoint's tuned values), else 0, 0.4, 15 voxels and
    `DEFAULT_MIN_SIZE_FRACTION`. The diameter estimate always
    uses the fixed thresholds `mediar3d.inference.diameter.ESTIMATE_THRESHOLDS`.
    """
    start = time.perf_counter()
    array, voxel_anisotropy = _check_volume(volume, do_3d)
    is_3d = array.ndim == 3
    if anisotropy is None and is_3d:
        anisotropy = voxel_anisotropy
    aniso = check_anisotropy(anisotropy)
    if diameter is not None and (not np.isfinite(diameter) or diameter <= 0):
        raise InputError(f"diameter {diameter!r}: must be a positive number of pixels (or None to estimate it)")
    resolved = resolve_model(model, model_diameter=model_diameter)
    from mediar3d.inference.volume3d import (
        DEFAULT_ROI,
        is_volumetric,
        run_volume_segmentation,
    )

    if is_volumetric(resolved.net):
        if not is_3d or z_only:
            raise InputError(f"model {resolved.name} is a 3D network: it needs a (z, y, x) volume, "
                             "not the 2D or z-only mode")
        return run_volume_segmentation(
            volume, resolved, diameter=diameter, anisotropy=anisotropy, roi_size=None if tile is None else
            (DEFAULT_ROI[0], tile, tile), overlap=tile_overlap, batch_size=1, device=device, tta=tta,
            keep_flows=keep_flows, progress=progress, cellprob_threshold=cellprob_threshold,
            flow_threshold=flow_threshold, min_size=min_size, min_size_fraction=min_size_fraction, niter=niter,
            max_size_fraction=max_size_fraction)
    dev = select_device(device)
    cellprob_threshold = resolved.cellprob_threshold if cellprob_threshold is None else float(cellprob_threshold)
    flow_threshold = resolved.flow_threshold if flow_threshold is None else float(flow_threshold)
    min_size = resolve_min_size(min_size, resolved)
    mask_options = dict(niter=niter, cellprob_threshold=cellprob_threshold, flow_threshold=flow_threshold,
                        min_size=min_size, max_size_fraction=max_size_fraction,
                        min_size_fraction=resolve_min_size_fraction(min_size_fraction, resolved))

    if intensity_range is not None:
        image = normalize_range(array, *intensity_range)
    else:
        image = normalize_percentile(array, resolved.percentiles)
    slice_fn = partial(predict_slices, net_fn=_net_function(resolved, dev, tta), tile=tile, overlap=tile_overlap,
                       batch_size=batch_size, divisor=resolved.divisor, device=dev)
    estimated = False
    diameter_start = time.perf_counter()
    if diameter is None and resolved.diameter is not None:
        diameter = estimate_diameter(image, slice_fn, resolved.diameter, anisotropy=aniso, batch_size=batch_size,
                                     niter=niter, max_size_fraction=max_size_fraction, **ESTIMATE_THRESHOLDS)
        estimated = diameter is not None
        if diameter is None:
            logger.warning("could not estimate the object diameter (no objects found); running at the model's scale")
    diameter_time = time.perf_counter() - diameter_start
    scale = resolved.diameter / diameter if (diameter and resolved.diameter) else 1.0
    if not MIN_SCALE <= scale <= MAX_SCALE:
        logger.warning("diameter %.1f px vs model diameter %.1f px asks for a zoom of %.2f; limiting it to [%g, %g]",
                       diameter, resolved.diameter, scale, MIN_SCALE, MAX_SCALE)
        scale = float(np.clip(scale, MIN_SCALE, MAX_SCALE))
    factors = (aniso * scale, scale, scale) if is_3d else (scale, scale)
    work_shape = target_shape(array.shape, factors)
    voxel_factor = float(np.prod(np.array(work_shape) / np.array(array.shape)))
    logger.info("input %s -> network grid %s (diameter %s, anisotropy %.2f)", array.shape, work_shape, diameter, aniso)
    work = resample_image(image, work_shape)
    del image
    net_start = time.perf_counter()

    from mediar3d.postprocess import compute_masks

    grid_options = dict(mask_options, min_size=max(1, int(round(min_size * voxel_factor))))
    if is_3d and not z_only:
        flows, logits = predict_orthoslices(work, slice_fn, batch_size=batch_size, progress=progress)
        flows /= FLOW_SCALE
        net_time = time.perf_counter() - net_start
        post_start = time.perf_counter()
        labels = np.asarray(compute_masks(flows, logits, **grid_options))
    else:
        stack = work if is_3d else work[None]
        pred = np.concatenate([slice_fn(stack[i:i + batch_size]) for i in range(0, stack.shape[0], batch_size)])
        flows = np.moveaxis(pred[:, :2], 1, 0) / FLOW_SCALE  # (2, n, y, x)
        logits = pred[:, 2]
        del pred
        net_time = time.perf_counter() - net_start
        post_start = time.perf_counter()
        planes = [np.asarray(compute_masks(flows[:, i], logits[i], **grid_options)) for i in range(stack.shape[0])]
        labels = stitch_slices(planes, stitch_threshold) if is_3d else planes[0]
        if not is_3d:
            flows, logits = flows[:, 0], logits[0]
        elif keep_flows:
            flows = np.concatenate([np.zeros_like(flows[:1]), flows])
    labels = _relabel(resample_labels(labels, array.shape))
    post_time = time.perf_counter() - post_start

    result = SegmentResult(labels=labels)
    if keep_flows:
        result.flows = np.stack([resample_image(f, array.shape) for f in flows])
        result.probability = 1.0 / (1.0 + np.exp(-resample_image(logits, array.shape)))
    result.params = {
        "model": resolved.name, "model_diameter": resolved.diameter, "diameter": diameter,
        "diameter_estimated": estimated, "anisotropy": aniso, "scale": scale, "input_shape": list(array.shape),
        "network_shape": list(work_shape), "mode": "3d" if (is_3d and not z_only) else ("z-only" if is_3d else "2d"),
        "tile": tile, "tile_overlap": tile_overlap, "batch_size": batch_size, "tta": tta, "device": str(dev),
        **mask_options, "n_objects": int(labels.max(initial=0)),
        "time_diameter_s": round(diameter_time, 3), "time_network_s": round(net_time, 3), "time_postprocess_s": round(post_time, 3),
        "time_total_s": round(time.perf_counter() - start, 3),
    }
    return result


def segment(
    volume: Any,
    model: str | Path | torch.nn.Module | InferenceModel | Sequence[str | Path] | None = None,
    *,
    diameter: float | None = None,
    anisotropy: float | None = None,
    do_3d: bool = True,
    z_only: bool = False,
    tile: int = 256,
    batch_size: int = 8,
    tta: bool = False,
    device: str | torch.device | None = None,
    return_flows: bool = False,
    progress: bool = True,
    **options: Any,
) -> np.ndarray | SegmentResult:
    """Segment cells or nuclei into instance labels.

    Args:
        volume: Volume (z, y, x), or with `do_3d=False` one image (y, x); numpy array or a
            `mediar3d.io.Image` (its voxel size then gives the anisotropy).
        model: None / "default" for the bundled model, a bundled name, a checkpoint path, a module,
            or a list of names / paths: an ensemble whose flows and logits are averaged before
            post-processing (members must share normalisation and training diameter).
        diameter: Typical object diameter in y/x pixels (for a volume, the diameter of the ball of a
            typical nucleus' volume: what one measures across it); None estimates it.
        anisotropy: z voxel size / xy voxel size; None reads it from an Image, else 1.
        do_3d: True for a volume; False for a single 2D image.
        z_only: Predict on z-slices only and stitch the 2D masks across z (faster, flatter).
        tile: Largest 2D window (pixels) fed to the network; larger slices are tiled.
        batch_size: Slices or tiles per network call.
        tta: Average over flips, flow signs corrected (4x slower; 8x for a 3D network).
        device: "cpu", "cuda", "mps" or None for automatic.
        return_flows: Return a SegmentResult with flows and probability instead of labels.
        progress: Show a progress bar per slice orientation.
        **options: Post-processing and advanced options: cellprob_threshold, flow_threshold,
            min_size, min_size_fraction (each None / left out: the model's, e.g. tuned by
            `mediar3d tune`), niter,
            max_size_fraction, tile_overlap, model_diameter, stitch_threshold, intensity_range.

    Returns:
        int32 labels of the input's shape (0 = background), or a SegmentResult.
    """
    result = run_segmentation(volume, model, diameter=diameter, anisotropy=anisotropy, do_3d=do_3d, z_only=z_only,
                              tile=tile, batch_size=batch_size, tta=tta, device=device, keep_flows=return_flows,
                              progress=progress, **options)
    return result if return_flows else result.labels
