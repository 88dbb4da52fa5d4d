"""What "object diameter" means, and its estimate from an image or volume with the network itself.

**Definition** (one for training, inference and the docs). The diameter of an object is its
equivalent diameter in y/x pixels: the diameter of the ball of the same volume for a 3D
object (voxels of a volume with z step ``anisotropy`` times the y/x pixel size count
``anisotropy`` cubic pixels each), of the disk of the same area for a 2D object. The
diameter of an image or volume is the *voxel-weighted* median of its objects' diameters:
the diameter of the object that a typical foreground voxel belongs to. That is what a user
measures across a typical nucleus, and small fragments or objects cut by the border
barely move it. A model's ``train_diameter`` is this statistic on its training data.

**Estimate**, like Cellpose's size refinement: run the 2D network on a few z-slices at
some scale and measure its 2D masks (the area-weighted median cross-section, about 0.94x
the 3D diameter for balls); if a scale finds too few objects, coarser and finer scales are
tried. Then zoom so that this first guess matches the model's training diameter and
measure the slices again; while that re-measure disagrees with its guess (a network splits
objects far larger than its training size into pieces of about that size) it becomes the
guess and the slices are zoomed again (:func:`settle_guess`). Then measure once more where
the network works best: for a volume, the full orthogonal-slice
3D prediction and 3D post-processing on a central crop (at most ``crop`` voxels a side on
the network grid), measured with the 3D definition above; for an image, its 2D masks.

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
from mediar3d.models.base import FLOW_SCALE
from mediar3d.postprocess.filters import weighted_median

logger = logging.getLogger(__name__)

#: Scales tried in turn while fewer than `min_objects` masks are found.
SEARCH_SCALES = (1.0, 0.5, 2.0, 0.25, 4.0)
#: Most extra zooms while a re-measure disagrees with the guess it was made at.
MAX_RESCALES = 3
#: A re-measure within this factor of its guess confirms the guess.
CONSISTENT = 1.2
#: Post-processing thresholds of the masks the estimate measures (the library defaults),
#: whatever thresholds the segmentation itself uses.
ESTIMATE_THRESHOLDS = {"cellprob_threshold": 0.0, "flow_threshold": 0.4, "min_size": 15}


#: Largest side (network-grid voxels) of the central crop the 3D refinement runs on.
REFINE_CROP = 112


def object_sizes(labels: np.ndarray) -> np.ndarray:
    """Voxel (pixel) count of every present label of a label array, label order, background left out."""
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64))[1:]
    return counts[counts > 0]


def diameters_from_sizes(sizes: np.ndarray, ndim: int, anisotropy: float = 1.0) -> np.ndarray:
    """Equivalent diameters (y/x pixels) of objects of `sizes` voxels: ball (ndim 3) or disk (ndim 2)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if ndim == 3:
        return np.cbrt(6.0 * sizes * float(anisotropy) / np.pi)
    return np.sqrt(4.0 * sizes / np.pi)


def equivalent_diameters(labels: np.ndarray, anisotropy: float = 1.0) -> np.ndarray:
    """Equivalent diameters (y/x pixels) of every label of a label image (y, x) or volume (z, y, x).

    For a volume, z steps are ``anisotropy`` y/x pixels long (the ball of the same physical
    volume); for an image, the disk of the same area.
    """
    return diameters_from_sizes(object_sizes(labels), np.asarray(labels).ndim, anisotropy)


def median_diameter(labels: np.ndarray, anisotropy: float = 1.0) -> float | None:
    """The diameter of a label image or volume (module docstring): voxel-weighted median, y/x pixels.

    Args:
        labels: Integer labels (y, x) or (z, y, x), 0 = background.
        anisotropy: z step / y-x pixel size of a volume.

    Returns:
        The diameter in y/x pixels, or None without objects.
    """
    sizes = object_sizes(labels)
    return weighted_median(diameters_from_sizes(sizes, np.asarray(labels).ndim, anisotropy), sizes)


def pick_slices(volume: np.ndarray, n_slices: int, channels: bool = False) -> np.ndarray:
    """Deterministic subsample of z-slices (n, y, x) of a volume (z, y, x), or the image (1, y, x).

    With ``channels`` the input is channel first, (C, z, y, x) or (C, y, x), and the slices (n, C, y, x).
    """
    stack = np.moveaxis(volume, 1, 0) if channels and volume.ndim == 4 else volume
    if stack.ndim == (3 if channels else 2):
        return stack[None]
    depth = stack.shape[0]
    if depth <= n_slices:
        return stack
    index = np.unique(np.linspace(0, depth - 1, n_slices + 2).round().astype(int)[1:-1])
    return stack[index]


def measure_diameters(
    slices: np.ndarray,
    slice_fn: Callable[[np.ndarray], np.ndarray],
    scale: float,
    *,
    max_side: int = 2048,
    **mask_options,
) -> tuple[np.ndarray, np.ndarray]:
    """Equivalent diameters (original pixels) and areas of the 2D masks found in `slices` zoomed by `scale`.

    `slices` is (n, y, x), or (n, C, y, x) for a network with C input channels.
    """
    from mediar3d.postprocess import compute_masks

    shape = target_shape(slices.shape[-2:], (scale, scale))
    if max(shape) > max_side or min(shape) < 8:
        return np.zeros(0), np.zeros(0)
    zoomed = np.stack([resample_image(s, s.shape[:-2] + shape) for s in slices])
    pred = slice_fn(zoomed)
    sizes = []
    for p in pred:
        labels = compute_masks(p[:2] / FLOW_SCALE, p[2], **mask_options)
        sizes.append(object_sizes(labels))
    sizes_all = np.concatenate(sizes) if sizes else np.zeros(0)
    return diameters_from_sizes(sizes_all, 2) / scale, sizes_all


def central_crop(shape: tuple[int, ...], factors: tuple[float, ...], crop: int) -> tuple[slice, ...]:
    """Central box of `shape` whose zoom by `factors` is at most `crop` a side."""
    box = []
    for n, f in zip(shape, factors):
        keep = int(min(n, max(1, np.ceil(crop / max(f, 1e-6)))))
        start = (n - keep) // 2
        box.append(slice(start, start + keep))
    return tuple(box)


def measure_volume_diameter(
    volume: np.ndarray,
    slice_fn: Callable[[np.ndarray], np.ndarray],
    scale: float,
    anisotropy: float,
    *,
    crop: int = REFINE_CROP,
    batch_size: int = 8,
    min_objects: int = 3,
    **mask_options,
) -> float | None:
    """3D diameter (original y/x pixels) of the objects the network finds in a central crop.

    The crop of `volume` (z, y, x) (or (C, z, y, x)) is zoomed by (anisotropy * scale, scale, scale), predicted
    on slices along z, y and x, post-processed in 3D with `mask_options` (``min_size`` in
    input voxels) and measured with :func:`median_diameter`.

    Returns:
        The diameter, or None when fewer than `min_objects` objects are found.
    """
    from mediar3d.inference.orthoslice import predict_orthoslices
    from mediar3d.postprocess import compute_masks

    factors = (anisotropy * scale, scale, scale)
    box = central_crop(volume.shape[-3:], factors, crop)
    part = volume[(..., *box)]
    shape = target_shape(part.shape[-3:], factors)
    if min(shape) < 8:
        return None
    work = resample_image(part, part.shape[:-3] + shape)
    flows, logits = predict_orthoslices(work, slice_fn, batch_size=batch_size, progress=False)
    voxel_factor = float(np.prod(np.array(shape) / np.array(part.shape[-3:])))
    options = dict(mask_options)
    if "min_size" in options:
        options["min_size"] = max(1, int(round(float(options["min_size"]) * voxel_factor)))
    labels = np.asarray(compute_masks(flows / FLOW_SCALE, logits, **options))
    if object_sizes(labels).size < min_objects:
        return None
    return median_diameter(labels) / scale


def estimate_diameter(
    image: np.ndarray,
    slice_fn: Callable[[np.ndarray], np.ndarray],
    model_diameter: float,
    *,
    anisotropy: float = 1.0,
    n_slices: int = 8,
    min_objects: int = 3,
    crop: int = REFINE_CROP,
    batch_size: int = 8,
    channels: bool = False,
    **mask_options,
) -> float | None:
    """Estimate the diameter (module docstring; y/x pixels) of the objects of `image`.

    Args:
        image: Normalised image (y, x) or volume (z, y, x); with ``channels``, channel
            first (C, y, x) / (C, z, y, x) for a network with C input channels.
        slice_fn: 2D predictor (B, H, W) -> (B, 3, H, W) = (dy, dx, logit), flows on the x5 scale.
        model_diameter: The model's training diameter (pixels).
        anisotropy: z step / y-x pixel size of a volume.
        n_slices: z-slices sampled (evenly spaced, deterministic) for the first guess.
        min_objects: Fewest masks a measurement must yield to be trusted.
        crop: Largest side (network-grid voxels) of the crop the 3D refinement runs on.
        batch_size: Slices per network call in the 3D refinement.
        **mask_options: Passed to `mediar3d.postprocess.compute_masks`.

    Returns:
        The diameter in pixels, or None when no scale finds `min_objects` objects.
    """
    image = np.asarray(image, dtype=np.float32)
    slices = pick_slices(image, n_slices, channels)
    first = None
    for scale in SEARCH_SCALES:
        diameters, areas = measure_diameters(slices, slice_fn, scale, **mask_options)
        logger.debug("diameter search: scale %.2f found %d objects", scale, diameters.size)
        if diameters.size >= min_objects:
            first = weighted_median(diameters, areas)
            break
    if first is None:
        return None
    guess, remeasured = settle_guess(slices, slice_fn, model_diameter, first, min_objects=min_objects,
                                     **mask_options)
    if image.ndim - int(channels) == 3:
        refined = measure_volume_diameter(image, slice_fn, model_diameter / guess, float(anisotropy), crop=crop,
                                          batch_size=batch_size, min_objects=min_objects, **mask_options)
    else:
        refined = remeasured
    estimate = guess if refined is None else refined
    logger.info("estimated object diameter: %.1f px (first pass %.1f)", estimate, first)
    return estimate


def settle_guess(
    slices: np.ndarray,
    slice_fn: Callable[[np.ndarray], np.ndarray],
    model_diameter: float,
    first: float,
    *,
    min_objects: int = 3,
    **mask_options,
) -> tuple[float, float | None]:
    """Re-measure the 2D diameter at the scale a guess implies until the two agree.

    A network splits objects much larger than its training diameter into pieces of about
    that size, so the first pass at scale 1 under-measures large objects (e.g. nuclei 5x the
    training diameter measure 2x). Zooming so that the guess matches the model's diameter
    and measuring again gives a larger value; this repeats (at most `MAX_RESCALES` times)
    until a re-measure is within `CONSISTENT` of the guess it was made at.

    Args:
        slices: (n, y, x) or (n, C, y, x) slices of the image.
        slice_fn, model_diameter, min_objects, mask_options: as for :func:`estimate_diameter`.
        first: The first guess (pixels).

    Returns:
        ``(guess, remeasured)``: the last guess that a re-measure confirmed (or the last one
        tried), and the last re-measure (None when it found fewer than `min_objects` masks).
    """
    guess, remeasured = float(first), None
    for attempt in range(MAX_RESCALES + 1):
        if attempt:
            logger.debug("diameter guess %.1f re-measures %.1f; zooming again", guess, remeasured)
            guess = remeasured
        diameters, areas = measure_diameters(slices, slice_fn, model_diameter / guess, **mask_options)
        if diameters.size < min_objects:
            break
        remeasured = float(weighted_median(diameters, areas))
        if abs(np.log(remeasured / guess)) <= np.log(CONSISTENT):
            break
    return guess, remeasured
