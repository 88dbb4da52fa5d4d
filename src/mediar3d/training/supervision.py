"""Supervision masks for partly annotated data (thesis 3.4.2).

A supervision mask is a per-pixel loss weight in [0, 1] for one training slice. Pixels
with weight 0 contribute nothing to the loss or its gradient, so unlabelled cells there
are never punished as false positives. Three modes (see
:class:`mediar3d.data.mapping.Supervision`):

- ``full``: every pixel counts; unlabelled pixels are background.
- ``roi``: the slice is cropped to the bounding box of its labelled cells plus a buffer
  (:func:`roi_box`); that box counts, padding around it does not.
- ``dilate``: the labelled region dilated ``iterations`` times with a square of side
  ``kernel``; the weight is 1 on labelled pixels and decays with the Euclidean distance
  from them (``none``, ``linear`` or ``gaussian``), reaching 0 outside the dilation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mediar3d.data.mapping import Supervision


def roi_box(labels: np.ndarray, buffer: int) -> tuple[slice, ...] | None:
    """Bounding box of the labelled pixels grown by ``buffer`` on every side (clipped).

    Args:
        labels: Integer labels, any number of dimensions.
        buffer: Margin in pixels.

    Returns:
        A tuple of slices, or None when nothing is labelled.
    """
    found = np.nonzero(labels)
    if found[0].size == 0:
        return None
    return tuple(slice(max(0, int(ax.min()) - buffer), min(n, int(ax.max()) + 1 + buffer))
                 for ax, n in zip(found, labels.shape))


def decay_weights(distance: np.ndarray, reach: float, decay: str, sigma: float | None = None) -> np.ndarray:
    """Loss weight as a function of the distance (pixels) to the nearest labelled pixel.

    Args:
        distance: Distances >= 0, any shape.
        reach: Distance beyond which the weight is 0.
        decay: ``"none"`` (1 up to ``reach``), ``"linear"`` (1 - d / (reach + 1)) or
            ``"gaussian"`` (exp(-d^2 / (2 sigma^2))).
        sigma: Gaussian width; default ``reach / 2`` (at least 0.5).

    Returns:
        float32 weights of the same shape, 1 where ``distance == 0``.
    """
    d = np.asarray(distance, dtype=np.float32)
    if decay == "none":
        w = np.ones_like(d)
    elif decay == "linear":
        w = 1.0 - d / np.float32(reach + 1.0)
    elif decay == "gaussian":
        s = np.float32(sigma if sigma is not None else max(reach / 2.0, 0.5))
        w = np.exp(-(d * d) / (2.0 * s * s))
    else:
        raise ValueError(f"unknown decay {decay!r}")
    w[d > reach] = 0.0
    return w.astype(np.float32, copy=False)


def dilation_weights(labels: np.ndarray, supervision: Supervision) -> np.ndarray:
    """Distance-weighted dilation mask of the labelled region (mode ``dilate``).

    Args:
        labels: Integer labels (y, x) (or any ndim; the kernel is a hypercube).
        supervision: Kernel, iterations, decay and sigma.

    Returns:
        float32 weights of ``labels.shape``: 1 on labels, decaying inside the dilated
        region, 0 outside it; all 0 when nothing is labelled.
    """
    labelled = labels != 0
    if not labelled.any():
        return np.zeros(labels.shape, dtype=np.float32)
    if supervision.iterations == 0:
        return labelled.astype(np.float32)
    structure = np.ones((supervision.kernel,) * labels.ndim, dtype=bool)
    region = ndimage.binary_dilation(labelled, structure=structure, iterations=supervision.iterations)
    distance = ndimage.distance_transform_edt(~labelled)
    weights = decay_weights(distance, float(supervision.reach) * np.sqrt(labels.ndim), supervision.decay,
                            supervision.sigma)
    weights[~region] = 0.0
    return weights


def supervision_weights(labels: np.ndarray, valid: np.ndarray | None, supervision: Supervision) -> np.ndarray:
    """Per-pixel loss weights of one (augmented) training slice.

    Args:
        labels: Integer labels (y, x) after augmentation.
        valid: Weight-carrying region after augmentation (y, x): 1 on the original slice
            (or its ROI crop), 0 on padding; None means everywhere.
        supervision: The dataset's supervision settings.

    Returns:
        float32 weights (y, x) in [0, 1].
    """
    if supervision.mode == "full":
        return np.ones(labels.shape, dtype=np.float32)
    region = np.ones(labels.shape, dtype=np.float32) if valid is None else (np.asarray(valid) > 0.5).astype(np.float32)
    if supervision.mode == "roi":
        return region
    return dilation_weights(labels, supervision) * region
