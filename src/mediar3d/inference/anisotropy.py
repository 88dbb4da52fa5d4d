"""Resampling between the acquisition grid and the grid the network runs on.

Before inference the volume (z, y, x) is zoomed by (anisotropy * scale, scale, scale):
`anisotropy` (z step / xy step) makes voxels isotropic and `scale` (model diameter /
object diameter) makes objects the size the network was trained on. Afterwards the labels
are mapped back to the original grid by nearest-neighbour lookup (labels are never
interpolated), and flows / probabilities, when asked for, by linear interpolation.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mediar3d.errors import InputError


def check_anisotropy(anisotropy: float | None) -> float:
    """Return `anisotropy` as a float (1.0 for None); raise InputError unless it is finite and > 0."""
    if anisotropy is None:
        return 1.0
    value = float(anisotropy)
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"anisotropy {anisotropy!r}: must be a positive number (z voxel size / xy voxel size)")
    return value


def target_shape(shape: tuple[int, ...], factors: tuple[float, ...]) -> tuple[int, ...]:
    """Shape after zooming each axis of `shape` by `factors` (rounded, at least 1)."""
    return tuple(max(1, int(round(n * f))) for n, f in zip(shape, factors))


def resample_image(image: np.ndarray, shape: tuple[int, ...], *, order: int = 1) -> np.ndarray:
    """Resample an image or volume to `shape` (same ndim) with spline `order` (1 = linear).

    Pixel centres are aligned as in a grid (`grid_mode`), the same convention as
    `resample_labels`, so a round trip does not shift objects.
    """
    if tuple(shape) == tuple(image.shape):
        return image
    if len(shape) != image.ndim:
        raise InputError(f"cannot resample an array of shape {image.shape} to {shape}")
    factors = [t / s for t, s in zip(shape, image.shape)]
    out = ndimage.zoom(image.astype(np.float32, copy=False), factors, order=order, mode="nearest", grid_mode=True)
    if out.shape != tuple(shape):  # zoom rounds; pad or crop by at most one voxel
        fixed = np.zeros(shape, dtype=out.dtype)
        region = tuple(slice(0, min(a, b)) for a, b in zip(shape, out.shape))
        fixed[region] = out[region]
        out = fixed
    return out


def nearest_indices(source: int, target: int) -> np.ndarray:
    """For each of `target` output pixels, the index of the source pixel whose area holds its centre."""
    idx = np.floor((np.arange(target) + 0.5) * (source / target)).astype(np.intp)
    return np.clip(idx, 0, source - 1)


def resample_labels(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resampling of an integer label array to `shape` (dtype kept)."""
    if tuple(shape) == tuple(labels.shape):
        return labels
    if len(shape) != labels.ndim:
        raise InputError(f"cannot resample labels of shape {labels.shape} to {shape}")
    index = np.ix_(*(nearest_indices(s, t) for s, t in zip(labels.shape, shape)))
    return labels[index]
