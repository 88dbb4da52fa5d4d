"""predict -> outputs -> labels: the one inference pipeline.

:func:`predict` validates the input, normalises it, estimates the object diameter (2D
networks, unless given), resamples (z to isotropic, objects to the model's training size)
and runs the network, dispatching once on its kind: a 2D network on slices along z, y and
x (Algorithm 1), along z only, or on the single image; a volumetric network (``feature3d``)
on sliding 3D windows. It returns a :class:`Prediction`: flows and logits on the network
grid with what post-processing needs (voxel factor, resolved thresholds).

:func:`labels` runs `mediar3d.postprocess.compute_masks` on the network grid (per slice
and stitched across z in the z-only mode), maps the labels back to the input grid and
renumbers them. `segment`, `mediar3d tune`, the napari widget and the block-wise
pipeline all go through these two.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fastremap
import numpy as np
import torch

from mediar3d.data.normalize import normalize_percentile, normalize_range
from mediar3d.errors import InputError
from mediar3d.inference.anisotropy import check_anisotropy, resample_image, resample_labels, target_shape
from mediar3d.inference.device import autocast, select_device
from mediar3d.inference.diameter import ESTIMATE_THRESHOLDS, estimate_diameter
from mediar3d.inference.loader import InferenceModel, resolve_model
from mediar3d.inference.orthoslice import predict_orthoslices
from mediar3d.inference.progress import ProgressFn, StatusFn, announce, as_callback
from mediar3d.inference.stitch import stitch_slices
from mediar3d.inference.tiling import DEFAULT_TILE, predict_slices
from mediar3d.inference.tta import FlipTTA, with_flip_tta
from mediar3d.inference.volume3d import DEFAULT_ROI, is_volumetric, predict_volume, window_size
from mediar3d.io.naming import anisotropy_from_voxel_size
from mediar3d.models.base import FLOW_SCALE
from mediar3d.postprocess.filters import widen_into

logger = logging.getLogger(__name__)

#: Limits of the zoom applied to match the model's training diameter.
MIN_SCALE, MAX_SCALE = 1.0 / 16.0, 8.0
#: Smallest object kept (input voxels) when neither the caller nor the model sets one.
DEFAULT_MIN_SIZE = 15
#: Smallest object kept as a fraction of the typical object, when neither the caller nor the model sets one.
DEFAULT_MIN_SIZE_FRACTION = 0.0
#: Modes of a Prediction: orthogonal slices, z-slices, one 2D image, a volumetric network.
MODES = ("3d", "z-only", "2d", "3d-network")
#: Flows and logits on the network grid are kept in float16: 8 bytes a voxel instead of 16,
#: a resolution (~1e-3 of a unit flow) far below the network's own error.
OUTPUT_DTYPE = np.float16

ModelArg = str | Path | torch.nn.Module | InferenceModel | Sequence[str | Path] | None


@dataclasses.dataclass
class Prediction:
    """Network outputs on the network grid and what post-processing needs.

    Attributes:
        flows: flows on the unit scale (network output / FLOW_SCALE): (3, Z, Y, X)
            (dz, dy, dx) for "3d", "3d-network" and "z-only" (dz = 0 there), (2, Y, X) (dy, dx)
            for "2d"; float16 from `predict` (:data:`OUTPUT_DTYPE`), any float accepted.
        logits: cell-probability logits, (Z, Y, X) or (Y, X); float16 from `predict`.
        input_shape: Shape of the input the labels are mapped back to.
        mode: One of MODES.
        voxel_factor: Network voxels per input voxel (scales ``min_size``).
        thresholds: Resolved ``cellprob_threshold``, ``flow_threshold`` (logit, error) and
            ``min_size`` (input voxels): the caller's, else the model's, else the defaults.
        params: Resolved settings and timings (JSON-serialisable).
    """

    flows: np.ndarray
    logits: np.ndarray
    input_shape: tuple[int, ...]
    mode: str = "3d"
    voxel_factor: float = 1.0
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


def check_volume(volume: Any, do_3d: bool, *, channels: Sequence[int] | None = None,
                 in_channels: int | None = None) -> tuple[np.ndarray, float | None, bool]:
    """The input as an array, the anisotropy from its voxel size when it is a `mediar3d.io.Image`,
    and whether the array is channel first.

    The input has a channel axis (first) when ``channels`` are given, when it is an Image
    whose axes hold ``C``, or when it has 4 dimensions; its channels are then chosen with
    :func:`mediar3d.data.channels.prepare_channels` for a network of ``in_channels`` inputs.
    One channel left is returned without the channel axis (the single-channel path).

    Returns:
        (array, anisotropy or None, channel first): (z, y, x) / (y, x), or (C, z, y, x) /
        (C, y, x) with C = ``in_channels`` > 1.

    Raises:
        InputError: wrong dtype, dimensions, channels, emptiness, NaN or infinite values.
    """
    from mediar3d.data.channels import prepare_channels

    voxel_anisotropy = None
    axes = ""
    if hasattr(volume, "data") and hasattr(volume, "voxel_size"):
        voxel_anisotropy = anisotropy_from_voxel_size(getattr(volume, "voxel_size"))
        axes = str(getattr(volume, "axes", "") or "")
        volume = volume.data
    array = np.asarray(volume)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"input of dtype {array.dtype}: expected an integer or floating-point image")
    channel_first = False
    if channels is not None or "C" in axes or array.ndim == 4:
        if array.ndim < 3:
            raise InputError(f"input of shape {array.shape}: channels {list(channels or [])} need a channel axis "
                             "first, (c, z, y, x) or (c, y, x)")
        array = prepare_channels(array, has_channels=True, channels=channels, in_channels=in_channels,
                                 source=f"input of shape {array.shape}")
        channel_first = array.shape[0] > 1
        if not channel_first:
            array = array[0]
    spatial = array[0] if channel_first else array
    want = 3 if do_3d else (2, 3)
    if spatial.ndim not in np.atleast_1d(want):
        if do_3d and spatial.ndim == 2:
            raise InputError(f"input of shape {array.shape} is 2D: a 3D run needs a (z, y, x) volume (use do_3d=False / --2d for one image)")
        raise InputError(f"input of shape {array.shape}: expected (z, y, x){'' if do_3d else ' or (y, x)'}; select one channel first")
    if min(array.shape) < 1 or array.size == 0:
        raise InputError(f"input of shape {array.shape} is empty")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError(f"input of shape {array.shape} contains NaN or infinite values; fix or mask them first")
    return array, voxel_anisotropy, channel_first


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


def relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n in order of first appearance; int32 (int64 beyond 2**31 objects)."""
    labels = np.ascontiguousarray(labels)
    out, _ = fastremap.renumber(labels, in_place=True)
    return widen_into(labels, out, np.int32 if out.max(initial=0) < 2**31 else np.int64)


def _slice_fn(model: InferenceModel, device: torch.device, tta: bool, *, tile: int, overlap: float,
              batch_size: int):
    """2D predictor (B, H, W) -> (B, 3, H, W) = (dy, dx on the x5 scale, logit), tiled."""
    net = model.net.to(device)
    repeat = model.in_channels

    def run(batch: torch.Tensor) -> torch.Tensor:
        if repeat > 1 and batch.shape[1] == 1:
            batch = batch.repeat(1, repeat, 1, 1)
        with autocast(device):
            return net(batch).float()

    net_fn = with_flip_tta(run) if tta else run

    def slice_fn(images: np.ndarray) -> np.ndarray:
        return predict_slices(images, net_fn, tile=tile, overlap=overlap, batch_size=batch_size,
                              divisor=model.divisor, device=device)

    return slice_fn


def _normalise(array: np.ndarray, model: InferenceModel, intensity_range: tuple[float, float] | None,
               channel_first: bool = False) -> np.ndarray:
    """Percentile (or fixed range) normalisation; each channel on its own when ``channel_first``, as in training."""
    if channel_first:
        return np.stack([_normalise(c, model, intensity_range) for c in array])
    if intensity_range is not None:
        return normalize_range(array, *intensity_range)
    return normalize_percentile(array, model.percentiles)


def _scale(diameter: float | None, model: InferenceModel, *, clip: bool) -> float:
    scale = model.diameter / diameter if (diameter and model.diameter) else 1.0
    if clip and not MIN_SCALE <= scale <= MAX_SCALE:
        logger.warning("diameter %.1f px vs model diameter %.1f px asks for a zoom of %.2f; limiting it to [%g, %g]",
                       diameter, model.diameter, scale, MIN_SCALE, MAX_SCALE)
        scale = float(np.clip(scale, MIN_SCALE, MAX_SCALE))
    return scale


def measure_diameter(volume: Any, model: ModelArg = None, *, anisotropy: float | None = None, do_3d: bool = True,
                     tile: int = DEFAULT_TILE,
                     tile_overlap: float = 0.25, batch_size: int = 8, tta: bool = False,
                     device: str | torch.device | None = None, intensity_range: tuple[float, float] | None = None,
                     niter: int = 200, max_size_fraction: float = 0.4, model_diameter: float | None = None,
                     channels: Sequence[int] | None = None, **_: Any) -> float | None:
    """The object diameter (pixels, y/x) `predict` estimates for `volume`, without the rest of the run.

    None when the model has no training diameter or no objects are found. Other keyword
    arguments of `predict` are accepted and ignored, so a caller can pass its options.
    """
    resolved = resolve_model(model, model_diameter=model_diameter)
    array, voxel_anisotropy, channel_first = check_volume(volume, do_3d, channels=channels,
                                                          in_channels=resolved.in_channels)
    is_3d = array.ndim - int(channel_first) == 3
    aniso = check_anisotropy(voxel_anisotropy if (anisotropy is None and is_3d) else anisotropy)
    if resolved.diameter is None or is_volumetric(resolved.net):
        return None
    slice_fn = _slice_fn(resolved, select_device(device), tta, tile=tile, overlap=tile_overlap, batch_size=batch_size)
    return estimate_diameter(_normalise(array, resolved, intensity_range, channel_first), slice_fn, resolved.diameter,
                             anisotropy=aniso, batch_size=batch_size, niter=niter, channels=channel_first,
                             max_size_fraction=max_size_fraction, **ESTIMATE_THRESHOLDS)


def predict(
    volume: Any,
    model: ModelArg = None,
    *,
    diameter: float | None = None,
    anisotropy: float | None = None,
    do_3d: bool = True,
    z_only: bool = False,
    tile: int | None = DEFAULT_TILE,
    tile_overlap: float = 0.25,
    batch_size: int = 8,
    tta: bool = False,
    device: str | torch.device | None = None,
    progress: bool | ProgressFn | None = False,
    status: StatusFn | None = None,
    model_diameter: float | None = None,
    cellprob_threshold: float | None = None,
    flow_threshold: float | None = None,
    min_size: float | None = None,
    min_size_fraction: float | None = None,
    niter: int = 200,
    max_size_fraction: float = 0.4,
    intensity_range: tuple[float, float] | None = None,
    roi_size: Sequence[int] | int | None | str = "auto",
    amp: bool = False,
    channels: Sequence[int] | None = None,
) -> Prediction:
    """Run the network on a volume or image; flows and logits on the network grid.

    Args:
        volume: (z, y, x) volume, or with ``do_3d=False`` one (y, x) image; array or
            `mediar3d.io.Image` (its voxel size gives the anisotropy). With channels, channel
            first: (c, z, y, x) / (c, y, x) (an Image with a ``C`` axis, or any 4D array).
        model: Anything `mediar3d.inference.loader.resolve_model` takes.
        diameter: Object diameter (pixels, y/x); None estimates it (2D networks with a
            training diameter) or, for a volumetric network, runs at the model's scale.
        anisotropy: z voxel size / xy voxel size; None reads it from an Image, else 1.
        do_3d, z_only: Volume in 3D (orthogonal slices), volume as z-slices, or one image.
        tile, tile_overlap, batch_size: 2D window side, overlap and windows per call.
        tta: Average over flips (4 for a 2D network, 8 for a volumetric one).
        device: "cpu", "cuda", "mps" or None for automatic.
        progress: A callback ``(done, total)`` (slices, or windows for a volumetric
            network), True for a tqdm bar, False for nothing.
        status: Called with one line as the diameter estimate and the network start.
        model_diameter: Override the model's training diameter.
        cellprob_threshold, flow_threshold, min_size, min_size_fraction: Thresholds to
            record in the Prediction (None: the model's, else 0, 0.4, 15 input voxels and
            DEFAULT_MIN_SIZE_FRACTION).
        niter, max_size_fraction: Post-processing settings of the diameter estimate's masks.
        intensity_range: (low, high) mapped to 0 and 1 instead of percentile normalisation.
        roi_size: Volumetric networks: sliding window (z, y, x) on the network grid;
            "auto" = (32, s, s) with s = min(tile, 256), None = the whole volume. A volumetric network
            runs one window per call.
        amp: Volumetric networks: mixed precision (2D networks use float16 on CUDA always).
        channels: Channels of the input to use, in the order the model was trained with
            (e.g. ``[0, 1]``: nuclei, membrane); None: all, with repeated channels collapsed
            (:mod:`mediar3d.data.channels`). Their number must be 1 or the model's input channels.

    Returns:
        A :class:`Prediction`; pass it to :func:`labels`.

    Raises:
        InputError: bad input or settings; a volumetric network asked for 2D or z-only.
    """
    start = time.perf_counter()
    if diameter is not None and (not np.isfinite(diameter) or diameter <= 0):
        raise InputError(f"diameter {diameter!r}: must be a positive number of pixels (or None to estimate it)")
    resolved = resolve_model(model, model_diameter=model_diameter)
    array, voxel_anisotropy, channel_first = check_volume(volume, do_3d, channels=channels,
                                                          in_channels=resolved.in_channels)
    spatial_shape = array.shape[1:] if channel_first else array.shape
    is_3d = len(spatial_shape) == 3
    aniso = check_anisotropy(voxel_anisotropy if (anisotropy is None and is_3d) else anisotropy)
    volumetric = is_volumetric(resolved.net)
    if volumetric and (not is_3d or z_only):
        raise InputError(f"model {resolved.name} is a 3D network: it needs a (z, y, x) volume, "
                         "not the 2D or z-only mode")
    dev = select_device(device)
    thresholds = {
        "cellprob_threshold": resolved.cellprob_threshold if cellprob_threshold is None else float(cellprob_threshold),
        "flow_threshold": resolved.flow_threshold if flow_threshold is None else float(flow_threshold),
        "min_size": resolve_min_size(min_size, resolved),
        "min_size_fraction": resolve_min_size_fraction(min_size_fraction, resolved),
    }
    image = _normalise(array, resolved, intensity_range, channel_first)
    mode = "3d-network" if volumetric else ("2d" if not is_3d else ("z-only" if z_only else "3d"))
    estimated = False
    diameter_start = time.perf_counter()
    slice_fn = None
    if not volumetric:
        slice_fn = _slice_fn(resolved, dev, tta, tile=tile, overlap=tile_overlap, batch_size=batch_size)
        if diameter is None and resolved.diameter is not None:
            announce(status, f"estimating the object diameter (model trained at {resolved.diameter:g} px)")
            diameter = estimate_diameter(image, slice_fn, resolved.diameter, anisotropy=aniso, batch_size=batch_size,
                                         niter=niter, max_size_fraction=max_size_fraction, channels=channel_first,
                                         **ESTIMATE_THRESHOLDS)
            estimated = diameter is not None
            if diameter is None:
                logger.warning("could not estimate the object diameter (no objects found); running at the model's scale")
    diameter_time = time.perf_counter() - diameter_start
    scale = _scale(diameter, resolved, clip=not volumetric)
    factors = (aniso * scale, scale, scale) if is_3d else (scale, scale)
    work_shape = target_shape(spatial_shape, factors)
    voxel_factor = float(np.prod(np.array(work_shape) / np.array(spatial_shape)))
    logger.info("input %s -> network grid %s (diameter %s, anisotropy %.2f)", array.shape, work_shape, diameter, aniso)
    work = resample_image(image, image.shape[:1] + work_shape if channel_first else work_shape)
    del image
    announce(status, f"network on {'x'.join(map(str, work_shape))} ({mode}"
                     f"{'' if diameter is None else f', diameter {diameter:.1f} px'})")
    net_start = time.perf_counter()
    params: dict[str, Any] = {}
    with as_callback(progress, "windows" if volumetric else "slices", "window" if volumetric else "slice") as report:
        if volumetric:
            side = min(tile, DEFAULT_ROI[1]) if tile is not None else None  # 3D windows stay small by default
            roi = (DEFAULT_ROI[0], side, side) if roi_size == "auto" and side is not None else roi_size
            roi = None if roi == "auto" else roi
            net = resolved.net.to(dev).eval()
            pred = predict_volume(FlipTTA(net) if tta else net, work, roi_size=roi, overlap=tile_overlap, batch_size=1,
                                  device=dev, amp=amp, progress=report)
            flows = np.empty((3,) + pred.shape[1:], OUTPUT_DTYPE)
            np.divide(pred[:3], FLOW_SCALE, out=flows, casting="same_kind")
            logits = pred[3].astype(OUTPUT_DTYPE)
            del pred
            params.update(roi_size=None if roi is None else list(window_size(work_shape, roi)), overlap=tile_overlap)
        else:
            stack = work if is_3d else (work[:, None] if channel_first else work[None])
            axes = (0, 1, 2) if mode == "3d" else (0,)
            flows, logits = predict_orthoslices(stack, slice_fn, axes=axes, batch_size=batch_size, progress=report,
                                                dtype=OUTPUT_DTYPE)
            flows /= OUTPUT_DTYPE(FLOW_SCALE)
            if not is_3d:
                flows, logits = flows[1:, 0], logits[0]
            params.update(tile=tile, tile_overlap=tile_overlap)
    del work
    params.update({
        "model": resolved.name, "model_diameter": resolved.diameter, "diameter": diameter,
        "diameter_estimated": estimated, "anisotropy": aniso, "scale": scale, "input_shape": list(spatial_shape),
        "network_shape": list(work_shape), "mode": mode, "batch_size": 1 if volumetric else batch_size, "tta": tta,
        "device": str(dev), **thresholds,
        "time_diameter_s": round(diameter_time, 3), "time_network_s": round(time.perf_counter() - net_start, 3),
        "time_predict_s": round(time.perf_counter() - start, 3),
    })
    if channel_first or channels is not None:
        params["channels"] = [int(c) for c in channels] if channels is not None else list(range(array.shape[0]))
    return Prediction(flows=np.asarray(flows, dtype=OUTPUT_DTYPE), logits=np.asarray(logits, dtype=OUTPUT_DTYPE),
                      input_shape=tuple(spatial_shape), mode=mode, voxel_factor=voxel_factor, thresholds=thresholds,
                      params=params)


def labels(
    outputs: Prediction,
    *,
    cellprob_threshold: float | None = None,
    flow_threshold: float | None = None,
    min_size: float | None = None,
    min_size_fraction: float | None = None,
    niter: int = 200,
    max_size_fraction: float = 0.4,
    stitch_threshold: float = 0.25,
    release: bool = False,
    staged: Any = None,
    **options: Any,
) -> np.ndarray:
    """Instance labels on the input grid from a :class:`Prediction`.

    Args:
        outputs: What :func:`predict` returned.
        cellprob_threshold, flow_threshold: None: the Prediction's resolved thresholds.
        min_size: Smallest object kept, in input voxels (None: the Prediction's); scaled
            by the voxel factor to the network grid.
        min_size_fraction: Smallest object kept as a fraction of the typical one (None: the Prediction's).
        niter, max_size_fraction: Post-processing settings.
        stitch_threshold: z-only mode: IoU above which masks of consecutive slices join.
        release: Hand the flows and logits over to post-processing (``outputs.flows`` and
            ``outputs.logits`` become None), so they are freed once the flow field is made and
            never held beside it; the Prediction cannot be post-processed again.
        staged: A :class:`mediar3d.postprocess.staged.StagedMasks` kept with ``outputs``
            to post-process them under many settings (threshold tuning): the flow following
            is reused while ``cellprob_threshold`` stays the same. Same labels; 3D and 2D
            modes (ignored in z-only mode and with ``release``).
        **options: More `mediar3d.postprocess.compute_masks` keyword arguments.

    Returns:
        int32 labels of ``outputs.input_shape``, 1..n, 0 = background.
    """
    from mediar3d.postprocess import compute_masks, compute_masks_taking

    given = {"cellprob_threshold": cellprob_threshold, "flow_threshold": flow_threshold, "min_size": min_size,
             "min_size_fraction": min_size_fraction}
    chosen = {k: (outputs.thresholds.get(k, default) if given[k] is None else given[k])
              for k, default in (("cellprob_threshold", 0.0), ("flow_threshold", 0.4), ("min_size", DEFAULT_MIN_SIZE),
                                 ("min_size_fraction", DEFAULT_MIN_SIZE_FRACTION))}
    grid_size = max(1, int(round(float(chosen["min_size"]) * outputs.voxel_factor)))
    mask_options = dict(options, niter=niter, max_size_fraction=max_size_fraction, min_size=grid_size,
                        cellprob_threshold=float(chosen["cellprob_threshold"]),
                        flow_threshold=float(chosen["flow_threshold"]),
                        min_size_fraction=float(chosen["min_size_fraction"]))
    if outputs.mode == "z-only":
        planes = [np.asarray(compute_masks(outputs.flows[1:, z], outputs.logits[z], **mask_options))
                  for z in range(outputs.logits.shape[0])]
        masks = stitch_slices(planes, stitch_threshold)
    elif release:
        masks = compute_masks_taking(lambda: _take_outputs(outputs), **mask_options)
    elif staged is not None:
        masks = np.asarray(staged(outputs.flows, outputs.logits, **mask_options))
    else:
        masks = np.asarray(compute_masks(outputs.flows, outputs.logits, **mask_options))
    return relabel(resample_labels(masks, tuple(outputs.input_shape)))


def _take_outputs(outputs: Prediction) -> tuple[np.ndarray, np.ndarray]:
    """(flows, logits) of ``outputs``, which keeps no reference to them (see ``labels(release=True)``)."""
    if outputs.flows is None or outputs.logits is None:
        raise InputError("this Prediction's flows were released to an earlier post-processing run")
    taken = outputs.flows, outputs.logits
    outputs.flows = outputs.logits = None
    return taken
