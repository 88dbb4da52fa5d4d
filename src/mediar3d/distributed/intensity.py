"""Whole-volume intensity percentiles read lazily, so every block is normalised alike."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Percentile sample size: about this many voxels, on a fixed stride (deterministic).
MAX_SAMPLES = 1 << 22


def strided_sample(array: Any, *, max_samples: int = MAX_SAMPLES) -> np.ndarray:
    """Voxels of a (z, y, x) array-like on a regular stride, read one z-plane at a time.

    The same stride along every axis keeps about ``max_samples`` voxels; memory holds
    one plane and the sample, never the volume.

    Returns:
        1D array of the sampled values.
    """
    shape = tuple(int(n) for n in array.shape[-3:])
    stride = max(1, math.ceil((math.prod(shape) / max_samples) ** (1 / 3)))
    parts = [np.asarray(array[..., z, ::stride, ::stride]).ravel() for z in range(0, shape[0], stride)]
    return np.concatenate(parts) if parts else np.zeros(0)


def global_percentiles(
    array: Any, percentiles: tuple[float, float] = (0.0, 99.5), *, max_samples: int = MAX_SAMPLES
) -> tuple[float, float]:
    """(low, high) intensity percentiles of a whole (z, y, x) volume from a strided sample.

    Args:
        array: lazily sliced array-like (zarr, numpy), spatial axes last.
        percentiles: lower and upper percentile in [0, 100].
        max_samples: sample size bound.

    Returns:
        The two percentile values.
    """
    from mediar3d.data.normalize import percentile_range

    return percentile_range(strided_sample(array, max_samples=max_samples), percentiles)
