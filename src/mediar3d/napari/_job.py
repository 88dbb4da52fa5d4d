"""One segmentation run for the napari widget: progress reporting and cancellation, no Qt.

`mediar3d.segment` has no progress callback, so the network is wrapped in
:class:`CancellableNet`: every forward call first checks a cancel flag (and raises
:class:`SegmentationCancelled` when it is set), then reports one call done. Cancelling
therefore takes effect at the next network call (between slice batches or tiles); the
flow-following step after the last call is not interrupted. The number of calls a run
makes is known in advance when the diameter is given (:func:`expected_network_calls`);
when it is estimated, the estimate's own calls make the total unknown and the widget
shows a busy bar instead.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mediar3d.errors import InputError
from mediar3d.inference import SegmentResult, run_segmentation
from mediar3d.inference.anisotropy import target_shape
from mediar3d.inference.loader import InferenceModel, resolve_model
from mediar3d.inference.segment import MAX_SCALE, MIN_SCALE
from mediar3d.inference.tiling import tile_starts

#: Modes of the widget: orthogonal slices, z-slices stitched, or one 2D image.
MODES = ("3d", "z-only", "2d")
#: Network calls per batch with flip test-time augmentation.
TTA_CALLS = 4


class SegmentationCancelled(Exception):
    """Raised inside the worker thread when the user pressed Cancel."""


class CancellableNet(torch.nn.Module):
    """Wraps a network: checks a cancel flag before and reports after each forward call.

    Args:
        net: The network, (B, C, H, W) -> (B, 3, H, W) (or a volumetric one).
        cancel: Set it to stop the run at the next forward call.
        on_call: Called with no argument after every finished forward call.
    """

    def __init__(self, net: torch.nn.Module, cancel: threading.Event,
                 on_call: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.net = net
        self.cancel = cancel
        self.on_call = on_call

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the wrapped network unless cancelled."""
        if self.cancel.is_set():
            raise SegmentationCancelled("segmentation cancelled")
        out = self.net(batch)
        if self.on_call is not None:
            self.on_call()
        return out


@dataclasses.dataclass
class SegmentRequest:
    """What the widget asks for.

    Attributes:
        data: The image, (z, y, x) for "3d" / "z-only", (y, x) for "2d", one channel; a numpy
            array or an array-like (dask, zarr) that is read when the job runs.
        model: Bundled model name or checkpoint path.
        mode: One of MODES.
        anisotropy: z voxel size / xy voxel size (ignored in 2D).
        diameter: Object diameter in pixels (y/x), None to estimate it.
        cellprob_threshold: Cell-probability logit threshold, None for the model's.
        flow_threshold: Flow-consistency threshold, None for the model's.
        min_size: Smallest object kept (voxels of the input), None for the model's.
        tta: Average over flips.
        keep_flows: Also return flows and probability.
        device: "cpu", "cuda", ... or None for automatic.
    """

    data: Any
    model: str | Path = "default"
    mode: str = "3d"
    anisotropy: float = 1.0
    diameter: float | None = None
    cellprob_threshold: float | None = None
    flow_threshold: float | None = None
    min_size: float | None = None
    tta: bool = False
    keep_flows: bool = False
    device: str | None = None

    def segment_options(self) -> dict[str, Any]:
        """Keyword arguments of `mediar3d.inference.run_segmentation` for this request."""
        if self.mode not in MODES:
            raise InputError(f"mode {self.mode!r}: choose one of {', '.join(MODES)}")
        return dict(diameter=self.diameter, anisotropy=self.anisotropy if self.mode != "2d" else None,
                    do_3d=self.mode != "2d", z_only=self.mode == "z-only", tta=self.tta, device=self.device,
                    keep_flows=self.keep_flows, cellprob_threshold=self.cellprob_threshold,
                    flow_threshold=self.flow_threshold, min_size=self.min_size)


def _round_up(value: int, divisor: int) -> int:
    return int(math.ceil(value / divisor) * divisor)


def _stack_calls(count: int, height: int, width: int, *, tile: int, overlap: float, batch_size: int,
                 divisor: int) -> int:
    """Network calls for `count` slices (height, width) fed `batch_size` slices at a time."""
    pad_h, pad_w = _round_up(height, divisor), _round_up(width, divisor)
    tile = _round_up(tile, divisor)
    per_slice = 1
    if pad_h > tile or pad_w > tile:
        th, tw = min(tile, pad_h), min(tile, pad_w)
        per_slice = len(tile_starts(pad_h, th, overlap)) * len(tile_starts(pad_w, tw, overlap))
    calls = 0
    for start in range(0, count, batch_size):
        chunk = min(batch_size, count - start)
        calls += math.ceil(chunk * per_slice / batch_size)
    return calls


def expected_network_calls(shape: tuple[int, ...], *, mode: str, model_diameter: float | None,
                           diameter: float | None, anisotropy: float = 1.0, tta: bool = False, tile: int = 256,
                           tile_overlap: float = 0.25, batch_size: int = 8, divisor: int = 32) -> int | None:
    """Number of forward calls `run_segmentation` makes for an input of `shape` (z, y, x) or (y, x).

    Returns None when the diameter is to be estimated (its search makes a data-dependent
    number of calls). Mirrors the resampling and slicing of `run_segmentation`; a test
    checks it against the calls a real run makes.
    """
    if diameter is None and model_diameter is not None:
        return None
    scale = model_diameter / diameter if (diameter and model_diameter) else 1.0
    scale = float(np.clip(scale, MIN_SCALE, MAX_SCALE))
    is_3d = mode != "2d"
    factors = (anisotropy * scale, scale, scale) if is_3d else (scale, scale)
    work = target_shape(tuple(shape), factors)
    options = dict(tile=tile, overlap=tile_overlap, batch_size=batch_size, divisor=divisor)
    if mode == "3d":
        calls = sum(_stack_calls(work[axis], *(work[a] for a in range(3) if a != axis), **options) for axis in range(3))
    elif mode == "z-only":
        calls = _stack_calls(work[0], work[1], work[2], **options)
    else:
        calls = _stack_calls(1, work[0], work[1], **options)
    return calls * (TTA_CALLS if tta else 1)


def run_job(request: SegmentRequest, cancel: threading.Event,
            progress: Callable[[int, int | None], None] | None = None) -> SegmentResult:
    """Segment `request.data` as `mediar3d.segment` would, reporting progress, until cancelled.

    Args:
        request: Image and settings.
        cancel: When set, the run raises SegmentationCancelled at the next network call.
        progress: Called (from the calling thread) with (calls done, calls expected or None).

    Returns:
        The SegmentResult (labels; flows and probability if `request.keep_flows`).

    Raises:
        SegmentationCancelled: `cancel` was set.
        Mediar3DError: Bad input or model (missing file, wrong ndim, ...).
    """
    resolved: InferenceModel = resolve_model(request.model)
    request = dataclasses.replace(request, data=np.asarray(request.data))
    from mediar3d.inference.volume3d import is_volumetric, run_volume_segmentation

    volumetric = is_volumetric(resolved.net)
    options = request.segment_options()
    total = None
    if not volumetric:
        total = expected_network_calls(np.shape(request.data), mode=request.mode, model_diameter=resolved.diameter,
                                       diameter=request.diameter, anisotropy=request.anisotropy, tta=request.tta,
                                       divisor=resolved.divisor)
    done = 0

    def on_call() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    wrapped = dataclasses.replace(resolved, net=CancellableNet(resolved.net, cancel, on_call))
    if cancel.is_set():
        raise SegmentationCancelled("segmentation cancelled")
    if volumetric:
        if request.mode != "3d":
            raise InputError(f"model {resolved.name}: a 3D network segments volumes only (mode 3d)")
        return run_volume_segmentation(request.data, wrapped, diameter=request.diameter,
                                       anisotropy=request.anisotropy, device=request.device, tta=request.tta,
                                       keep_flows=request.keep_flows,
                                       cellprob_threshold=request.cellprob_threshold,
                                       flow_threshold=request.flow_threshold,
                                       min_size=request.min_size)
    return run_segmentation(request.data, wrapped, progress=False, **options)


def run_job_and_measure(request: SegmentRequest, cancel: threading.Event,
                        progress: Callable[[int, int | None], None] | None = None,
                        voxel_size: tuple[float, ...] | None = None) -> tuple[SegmentResult, dict[str, np.ndarray]]:
    """`run_job`, then `mediar3d.measure` of its labels on the image (in the worker thread too).

    Returns:
        The SegmentResult and the per-object table (columns of `mediar3d.measurement.measure`).
    """
    from mediar3d.measurement import measure

    result = run_job(request, cancel, progress)
    return result, measure(result.labels, np.asarray(request.data), voxel_size=voxel_size)
