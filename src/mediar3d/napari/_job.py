"""One segmentation run for the napari widget: progress reporting and cancellation, no Qt.

Progress is the ``(done, total)`` callback of `mediar3d.inference.run_segmentation`,
reported by the code that slices (slices done) or cuts windows (windows done, volumetric
networks); while the diameter is being estimated nothing is reported and the widget shows
a busy bar. For cancelling, the network is wrapped in :class:`CancellableNet`: every
forward call first checks a cancel flag and raises :class:`SegmentationCancelled` when it
is set, so cancelling takes effect at the next network call (between slice batches or
tiles); the flow-following step after the last call is not interrupted.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mediar3d.errors import InputError
from mediar3d.inference import SegmentResult, run_segmentation
from mediar3d.inference.loader import InferenceModel, resolve_model
from mediar3d.inference.tta import in_channels_of

#: Modes of the widget: orthogonal slices, z-slices stitched, or one 2D image.
MODES = ("3d", "z-only", "2d")


class SegmentationCancelled(Exception):
    """Raised inside the worker thread when the user pressed Cancel."""


class CancellableNet(torch.nn.Module):
    """Wraps a network: checks a cancel flag before each forward call.

    Args:
        net: The network, (B, C, H, W) -> (B, 3, H, W) (or a volumetric one).
        cancel: Set it to stop the run at the next forward call.
    """

    def __init__(self, net: torch.nn.Module, cancel: threading.Event) -> None:
        super().__init__()
        self.net = net
        self.cancel = cancel
        self.spatial_dims = int(getattr(net, "spatial_dims", 2))
        self.in_channels = in_channels_of(net)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the wrapped network unless cancelled."""
        if self.cancel.is_set():
            raise SegmentationCancelled("segmentation cancelled")
        return self.net(batch)


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


def run_job(request: SegmentRequest, cancel: threading.Event,
            progress: Callable[[int, int | None], None] | None = None) -> SegmentResult:
    """Segment `request.data` as `mediar3d.segment` would, reporting progress, until cancelled.

    Args:
        request: Image and settings.
        cancel: When set, the run raises SegmentationCancelled at the next network call.
        progress: Called (from the calling thread) with (slices or windows done, in all).

    Returns:
        The SegmentResult (labels; flows and probability if `request.keep_flows`).

    Raises:
        SegmentationCancelled: `cancel` was set.
        Mediar3DError: Bad input or model (missing file, wrong ndim, ...).
    """
    resolved: InferenceModel = resolve_model(request.model)
    request = dataclasses.replace(request, data=np.asarray(request.data))
    options = request.segment_options()
    wrapped = dataclasses.replace(resolved, net=CancellableNet(resolved.net, cancel))
    if cancel.is_set():
        raise SegmentationCancelled("segmentation cancelled")

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)

    return run_segmentation(request.data, wrapped, progress=report, **options)


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
