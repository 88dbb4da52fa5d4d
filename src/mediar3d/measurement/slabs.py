"""Per-object measurements of label volumes too large for memory, one z-slab at a time.

`measure_slabs` gives the table of :func:`mediar3d.measurement.measure` for array-likes
(a zarr array of block-wise labels, a lazy view of the image): every column is a sum, a
minimum or a maximum over an object's voxels, so each slab's partial results are reduced
per label at the end. Only one slab of labels and image is in memory at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from mediar3d.errors import InputError
from mediar3d.measurement.objects import AXES, check_spacing, finish_table

__all__ = ["measure_slabs"]

#: Voxels per slab when the caller gives no slab thickness (about 256 MB of int64 work arrays).
SLAB_VOXELS = 2**25


def _slab_stats(labels: np.ndarray, image: np.ndarray | None, z0: int) -> dict[str, np.ndarray]:
    """Per-label partial statistics of one slab (z, y, x) starting at plane z0."""
    mask = labels > 0
    ids, inverse = np.unique(labels[mask], return_inverse=True)
    index = np.zeros(labels.shape, np.int64)
    index[mask] = inverse + 1
    coords = np.nonzero(mask)  # C order, the order of labels[mask]
    stats: dict[str, np.ndarray] = {"label": ids.astype(np.int64), "voxels": np.bincount(inverse).astype(np.int64)}
    boxes = ndimage.find_objects(index)
    for i, axis in enumerate(AXES):
        offset = z0 if i == 0 else 0
        stats[f"sum_{axis}"] = np.bincount(inverse, weights=coords[i] + offset)
        stats[f"bbox_{axis}0"] = np.array([b[i].start + offset for b in boxes], np.int64)
        stats[f"bbox_{axis}1"] = np.array([b[i].stop + offset for b in boxes], np.int64)
    if image is not None:
        values = image[mask].astype(np.float64)
        stats["sum_i"] = np.bincount(inverse, weights=values)
        stats["sum_ii"] = np.bincount(inverse, weights=values * values)
        which = np.arange(1, len(ids) + 1)
        stats["min_i"] = np.asarray(ndimage.minimum(image, index, which)).reshape(-1).astype(image.dtype)
        stats["max_i"] = np.asarray(ndimage.maximum(image, index, which)).reshape(-1).astype(image.dtype)
    return stats


#: Partial statistics reduced by a minimum / a maximum across slabs (the rest are sums).
_MINIMA = {f"bbox_{axis}0" for axis in AXES} | {"min_i"}
_MAXIMA = {f"bbox_{axis}1" for axis in AXES} | {"max_i"}


def _reduce(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Sums, minima and maxima of the slabs' partial statistics, per label (sorted)."""
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    if len(merged["label"]) == 0:
        return merged
    order = np.argsort(merged["label"], kind="stable")
    merged = {key: value[order] for key, value in merged.items()}
    labels, starts = np.unique(merged["label"], return_index=True)
    out: dict[str, np.ndarray] = {"label": labels}
    for key, value in merged.items():
        if key in _MINIMA:
            out[key] = np.minimum.reduceat(value, starts)
        elif key in _MAXIMA:
            out[key] = np.maximum.reduceat(value, starts)
        elif key != "label":
            out[key] = np.add.reduceat(value, starts)
    return out


def measure_slabs(labels: Any, image: Any | None = None, voxel_size: Sequence[float] | None = None, *,
                  slab: int | None = None) -> dict[str, np.ndarray]:
    """The table of :func:`mediar3d.measurement.measure` for (z, y, x) array-likes read slab by slab.

    Args:
        labels: Integer labels (z, y, x) with ``shape`` and numpy slicing (zarr, numpy, h5py).
        image: Intensities of the same shape, sliced the same way, or None.
        voxel_size: Micrometres per voxel (z, y, x), or None.
        slab: z-planes read at a time (default: about `SLAB_VOXELS` voxels).

    Returns:
        Dict of column name -> 1D array, ordered by label; the columns of `measure`.
        Centroids and the intensity standard deviation come from sums and may differ from
        `measure`'s in the last digits.
    """
    shape = tuple(int(n) for n in labels.shape)
    if len(shape) != 3:
        raise InputError(f"labels of shape {shape}: expected (z, y, x)")
    spacing = check_spacing(voxel_size, 3)
    if image is not None and tuple(int(n) for n in image.shape) != shape:
        raise InputError(f"image of shape {tuple(image.shape)} does not match labels of shape {shape}")
    step = slab or max(1, SLAB_VOXELS // max(1, shape[1] * shape[2]))
    parts = []
    for z0 in range(0, shape[0], step):
        block = np.asarray(labels[z0:z0 + step])
        if not np.issubdtype(block.dtype, np.integer) or (block.size and block.min() < 0):
            raise InputError(f"labels of dtype {block.dtype}: expected integer labels >= 0")
        parts.append(_slab_stats(block, None if image is None else np.asarray(image[z0:z0 + step]), z0))
    stats = _reduce(parts)
    voxels = stats["voxels"]
    centroids = [stats[f"sum_{axis}"] / voxels for axis in AXES]
    intensity = None
    if image is not None:
        mean = stats["sum_i"] / voxels
        variance = np.maximum(stats["sum_ii"] / voxels - mean * mean, 0.0)
        intensity = (mean, np.sqrt(variance), stats["min_i"], stats["max_i"])
    return finish_table(stats["label"], voxels, centroids, [stats[f"bbox_{a}0"] for a in AXES],
                        [stats[f"bbox_{a}1"] for a in AXES], shape, spacing, intensity)
