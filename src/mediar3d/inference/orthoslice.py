"""Orthogonal-slice 3D prediction (thesis Algorithm 1).

A 2D network predicts, for an image with axes (rows, cols), the flow components
(d_rows, d_cols) and a cell-probability logit. Slicing the volume (z, y, x) along each
axis gives three stacks of 2D images:

=========  ===============  ==================
slice axis  image axes       components given
=========  ===============  ==================
z           (y, x)           dy, dx
y           (z, x)           dz, dx
x           (z, y)           dz, dy
=========  ===============  ==================

Each stack's predictions are moved back to (z, y, x) and accumulated at the right flow
index. Every 3D component is seen by exactly two views and the logit by three.

Combining views: we take the **mean**, not the sum (Cellpose sums). Each 2D prediction is a
unit-length in-plane flow, so the mean of two views keeps every component on the scale of
the 3D ground truth flows (`mediar3d.flows.masks_to_flows`), which is the scale the
post-processing step sizes and its flow-consistency threshold are defined on; a sum would
double the step length and make the error threshold depend on how many views ran (the
z-only mode has one view per in-plane component and none for dz). The cell-probability
logits of the views are averaged the same way, so the threshold keeps its 2D meaning.

Memory: the views are summed into one running (flows, logits) pair as each batch of slices
comes back, so no view is held whole; with ``dtype=np.float16`` (what `predict` uses) the
pair takes 8 bytes a voxel instead of 16 (each batch is added in float32 and rounded once).
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from mediar3d.errors import ConfigError

logger = logging.getLogger(__name__)

#: Maps a stack of equally shaped 2D images (B, H, W) to predictions (B, 3, H, W):
#: (d_rows, d_cols, cellprob logit).
SliceFn = Callable[[np.ndarray], np.ndarray]

AXES = ("z", "y", "x")


def orientation_components(axis: int) -> tuple[int, int]:
    """Return the 3D flow indices (0=dz, 1=dy, 2=dx) of the (rows, cols) axes of slices taken along `axis`."""
    rows, cols = (a for a in range(3) if a != axis)
    return rows, cols


def accumulate_orientation(
    volume: np.ndarray,
    axis: int,
    slice_fn: SliceFn,
    flows: np.ndarray,
    logits: np.ndarray,
    *,
    batch_size: int = 8,
    on_slices: Callable[[int], None] | None = None,
) -> None:
    """Run `slice_fn` on every slice of `volume` (z, y, x) along `axis` and add the results in place.

    A volume with channels (C, z, y, x) gives `slice_fn` batches (B, C, H, W).

    The two in-plane components are added to `flows` (3, Z, Y, X) at their (dz, dy, dx)
    indices and the logit to `logits` (Z, Y, X); no full-volume temporary is made.
    `on_slices` is called with the number of slices of every finished batch.
    """
    rows, cols = orientation_components(axis)
    channels = volume.ndim == 4
    moved = np.moveaxis(volume, axis + 1, 0) if channels else np.moveaxis(volume, axis, 0)
    rows_acc = np.moveaxis(flows[rows], axis, 0)
    cols_acc = np.moveaxis(flows[cols], axis, 0)
    logit_acc = np.moveaxis(logits, axis, 0)
    count = moved.shape[0]
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        batch = np.ascontiguousarray(moved[start:stop], dtype=np.float32)
        pred = slice_fn(batch)
        if pred.shape != (stop - start, 3) + batch.shape[-2:]:
            raise ConfigError(f"slice prediction has shape {pred.shape}, expected {(stop - start, 3) + batch.shape[-2:]}")
        rows_acc[start:stop] += pred[:, 0]
        cols_acc[start:stop] += pred[:, 1]
        logit_acc[start:stop] += pred[:, 2]
        if on_slices is not None:
            on_slices(stop - start)


def predict_orthoslices(
    volume: np.ndarray,
    slice_fn: SliceFn,
    *,
    axes: Sequence[int] = (0, 1, 2),
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
    dtype: np.dtype | type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict a 3D flow field from 2D predictions on slices along the given axes.

    Args:
        volume: float32 volume (z, y, x), normalised, or (C, z, y, x) with the network's C input channels.
        slice_fn: 2D predictor, (B, H, W) (or (B, C, H, W)) -> (B, 3, H, W) = (d_rows, d_cols, logit).
        axes: Slice axes to use: (0, 1, 2) for full 3D, (0,) for z-only (dz stays 0).
        batch_size: Slices per call of `slice_fn`.
        progress: Called with (slices done, slices in all orientations) after every batch.
        dtype: Of the sums and the result: float32, or float16 for half the memory.

    Returns:
        flows: (3, Z, Y, X) of ``dtype``, (dz, dy, dx), each component the mean of the views
            that predict it (0 where none does), on the network's scale.
        logits: (Z, Y, X) of ``dtype``, mean cell-probability logit over the views.
    """
    if volume.ndim not in (3, 4):
        raise ConfigError(f"predict_orthoslices: expected a (z, y, x) or (c, z, y, x) volume, got shape {volume.shape}")
    spatial = volume.shape[-3:]
    axes = tuple(dict.fromkeys(int(a) for a in axes))
    if not axes or any(a not in (0, 1, 2) for a in axes):
        raise ConfigError(f"slice axes {axes}: choose from 0 (z), 1 (y), 2 (x)")
    flows = np.zeros((3,) + spatial, dtype=dtype)
    logits = np.zeros(spatial, dtype=dtype)
    seen = np.zeros(3, dtype=np.int64)
    total = sum(spatial[axis] for axis in axes)
    done = 0

    def on_slices(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress(done, total)

    for axis in axes:
        logger.info("predicting slices along %s (%d slices)", AXES[axis], spatial[axis])
        accumulate_orientation(volume, axis, slice_fn, flows, logits, batch_size=batch_size, on_slices=on_slices)
        seen[list(orientation_components(axis))] += 1
    for component in range(3):
        if seen[component] > 1:
            flows[component] /= seen[component]
    logits /= len(axes)
    return flows, logits
