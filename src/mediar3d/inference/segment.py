"""The entry points: `segment` (array in -> labels out) and `run_segmentation` (a SegmentResult).

Both are :func:`mediar3d.inference.predict.predict` followed by
:func:`mediar3d.inference.predict.labels`: validate -> percentile-normalise -> estimate the
object diameter (unless given) -> resample (z to isotropic, objects to the model's
training size) -> the network (2D on slices along z, y and x (Algorithm 1), along z only,
or on the single image; or a volumetric network on 3D windows) -> flows / 5 ->
`mediar3d.postprocess.compute_masks` -> labels back to the original grid.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import torch

from mediar3d.inference.anisotropy import resample_image
from mediar3d.inference.checks import check_segment_options
from mediar3d.inference.predict import ModelArg, labels, predict
from mediar3d.inference.progress import ProgressFn, StatusFn, announce
from mediar3d.inference.tiling import DEFAULT_TILE


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



def run_segmentation(
    volume: Any,
    model: ModelArg = None,
    *,
    keep_flows: bool = False,
    progress: bool | ProgressFn | None = True,
    status: StatusFn | None = None,
    niter: int = 200,
    max_size_fraction: float = 0.4,
    stitch_threshold: float = 0.25,
    **options: Any,
) -> SegmentResult:
    """Segment and return a SegmentResult (labels, optional flows / probability, parameters).

    Args:
        volume, model: As for `segment`.
        keep_flows: Also return flows and probability, resampled to the input grid.
        progress: True for a tqdm bar, False for none, or a callback ``(done, total)``.
        status: Called with one line as each phase starts: the diameter estimate, the
            network, post-processing (None: silent).
        niter, max_size_fraction: Post-processing settings (also used by the diameter estimate).
        stitch_threshold: z-only mode: IoU above which masks of consecutive slices join.
        **options: Keyword arguments of :func:`mediar3d.inference.predict.predict`
            (diameter, anisotropy, do_3d, z_only, tile, tile_overlap, batch_size, tta,
            device, model_diameter, cellprob_threshold, flow_threshold, min_size,
            min_size_fraction, intensity_range, roi_size, amp, channels). Thresholds left at None take
            the model's (a checkpoint's tuned values), else 0, 0.4, 15 voxels and 0. The diameter estimate
            always uses the fixed thresholds `mediar3d.inference.diameter.ESTIMATE_THRESHOLDS`.
    """
    start = time.perf_counter()
    check_segment_options(diameter=options.get("diameter"), anisotropy=options.get("anisotropy"),
                          cellprob_threshold=options.get("cellprob_threshold"),
                          flow_threshold=options.get("flow_threshold"), min_size=options.get("min_size"), niter=niter,
                          model=model)
    outputs = predict(volume, model, progress=progress, status=status, niter=niter,
                      max_size_fraction=max_size_fraction, **options)
    announce(status, "post-processing: following the flows to masks")
    post_start = time.perf_counter()
    result = SegmentResult(labels=labels(outputs, niter=niter, max_size_fraction=max_size_fraction,
                                         stitch_threshold=stitch_threshold, release=not keep_flows))
    post_time = time.perf_counter() - post_start
    if keep_flows:
        shape = tuple(outputs.input_shape)
        result.flows = np.stack([resample_image(f, shape) for f in outputs.flows])
        result.probability = 1.0 / (1.0 + np.exp(-resample_image(outputs.logits, shape)))
    params = dict(outputs.params)
    params.pop("time_predict_s", None)
    params.update(niter=niter, max_size_fraction=max_size_fraction, n_objects=int(result.labels.max(initial=0)),
                  time_postprocess_s=round(post_time, 3), time_total_s=round(time.perf_counter() - start, 3))
    if outputs.mode == "z-only":
        params["stitch_threshold"] = stitch_threshold
    result.params = params
    return result


def segment(
    volume: Any,
    model: ModelArg = None,
    *,
    diameter: float | None = None,
    anisotropy: float | None = None,
    do_3d: bool = True,
    z_only: bool = False,
    tile: int = DEFAULT_TILE,
    batch_size: int = 8,
    tta: bool = False,
    device: str | torch.device | None = None,
    progress: bool | ProgressFn | None = True,
    **options: Any,
) -> np.ndarray:
    """Segment cells or nuclei into instance labels.

    For flows, probability and the resolved parameters use `run_segmentation` (a
    SegmentResult); for network outputs on the network grid, `mediar3d.inference.predict.predict`.

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
        progress: Show a progress bar (True), nothing (False), or call ``progress(done, total)``.
        **options: Post-processing and advanced options: cellprob_threshold, flow_threshold,
            min_size, min_size_fraction (each None / left out: the model's, e.g. tuned by
            `mediar3d tune`), niter, max_size_fraction, tile_overlap, model_diameter,
            stitch_threshold, intensity_range, channels (the input's channels to use, in the
            model's order, e.g. ``[0, 1]`` for nuclei + membrane; the input is then channel
            first, (c, z, y, x)).

    Returns:
        int32 labels of the input's shape (0 = background).
    """
    return run_segmentation(volume, model, diameter=diameter, anisotropy=anisotropy, do_3d=do_3d, z_only=z_only,
                            tile=tile, batch_size=batch_size, tta=tta, device=device, progress=progress,
                            **options).labels
