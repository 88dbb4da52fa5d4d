"""Estimate the typical object diameter of an image or volume with the network itself.

Like Cellpose's size refinement: run the 2D network on a few z-slices at some scale,
turn its flows into 2D masks, and take the median equivalent diameter (diameter of the
disk of the same area) of the masks, in pixels of the original grid. Then rescale so that
this diameter matches the model's training diameter and measure once more; the second
measurement, made where the network works best, is the estimate. If the first scale finds
too few objects (objects far from the training size), coarser and finer scales are tried.

The statistic is the one a model's training diameter is defined with: the median
equivalent diameter of 2D masks (for volumes, of their cross-sections in z-slices).

The 2D masks of the estimate are made with fixed post-processing thresholds
(:data:`ESTIMATE_THRESHOLDS`), not with the thresholds of the run: the object size is a
property of the image, and `segment` must find the same diameter for a volume whatever
thresholds a checkpoint was tuned to or the user passes (`mediar3d tune` caches network
outputs at the diameter it estimated, and the tuned thresholds only carry over to
`segment` if it runs the network at that same diameter).
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from mediar3d.inference.anisotropy import resample_image, target_shape

logger = logging.getLogger(__name__)

#: Flows come out of the network on the x5 training scale.
FLOW_SCALE = 5.0
#: Scales tried in turn while fewer than `min_objects` masks are found.
SEARCH_SCALES = (1.0, 0.5, 2.0, 0.25, 4.0)
#: Post-processing thresholds of the masks the estimate measures (the library defaults),
#: whatever thresholds the segmentation itself uses.
ESTIMATE_THRESHOLDS = {"cellprob_threshold": 0.0, "flow_threshold": 0.4, "min_size": 15}


def equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent diameters (pixels) of every label of a 2D label image (y, x)."""
    counts = np.bincount(labels.ravel().astype(np.int64))[1:]
    counts = counts[counts > 0]
    return np.sqrt(4.0 * counts / np.pi)


def pick_slices(volume: np.ndarray, n_slices: int) -> np.ndarray:
    """Deterministic subsample of z-slices (n, y, x) of a volume (z, y, x), or the image (1, y, x)."""
    if volume.ndim == 2:
        return volume[None]
    depth = volume.shape[0]
    if depth <= n_slices:
        return volume
    index = np.unique(np.linspace(0, depth - 1, n_slices + 2).round().astype(int)[1:-1])
    return volume[index]


def measure_diameters(
    slices: np.ndarray,
    slice_fn: Callable[[np.ndarray], np.ndarray],
    scale: float,
    *,
    max_side: int = 2048,
    **mask_options,
) -> np.ndarray:
    """Equivalent diameters (original pixels) of 2D masks found in `slices` (n, y, x) zoomed by `scale`."""
    from mediar3d.postprocess import compute_masks

    shape = target_shape(slices.shape[1:], (scale, scale))
    if max(shape) > max_side or min(shape) < 8:
        return np.zeros(0)
    zoomed = np.stack([resample_image(s, shape) for s in slices])
    pred = slice_fn(zoomed)
    found = []
    for p in pred:
        labels = compute_masks(p[:2] / FLOW_SCALE, p[2], **mask_options)
        found.append(equivalent_diameters(np.asarray(labels)) / scale)
    return np.concatenate(found) if found else np.zeros(0)


def estimate_diameter(
    image: np.ndarray,
    slice_fn: Callable[[np.ndarray], np.ndarray],
    model_diameter: float,
    *,
    n_slices: int = 8,
    min_objects: int = 3,
    **mask_options,
) -> float | None:
    """Estimate the median object diameter (pixels, in the y/x plane) of `image`.

    Args:
        image: Normalised image (y, x) or volume (z, y, x); volumes are measured on z-slices.
        slice_fn: 2D predictor (B, H, W) -> (B, 3, H, W) = (dy, dx, logit), flows on the x5 scale.
        model_diameter: Diameter (pixels) of the objects the model was trained on.
        n_slices: z-slices sampled (evenly spaced, deterministic).
        min_objects: Fewest masks a scale must yield to be trusted.
        **mask_options: Passed to `mediar3d.postprocess.compute_masks` for the 2D masks.

    Returns:
        The diameter in pixels, or None when no scale finds `min_objects` objects.
    """
    slices = pick_slices(np.asarray(image, dtype=np.float32), n_slices)
    first = None
    for scale in SEARCH_SCALES:
        diameters = measure_diameters(slices, slice_fn, scale, **mask_options)
        logger.debug("diameter search: scale %.2f found %d objects", scale, diameters.size)
        if diameters.size >= min_objects:
            first = float(np.median(diameters))
            break
    if first is None:
        return None
    refined = measure_diameters(slices, slice_fn, model_diameter / first, **mask_options)
    estimate = float(np.median(refined)) if refined.size >= min_objects else first
    logger.info("estimated object diameter: %.1f px (first pass %.1f)", estimate, first)
    return estimate
