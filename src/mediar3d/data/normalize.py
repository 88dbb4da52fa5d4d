"""Percentile intensity normalisation, as in training: (0, 99.5) percentiles -> [0, 1].

Shared by training (:mod:`mediar3d.training.dataset`), inference and the block-wise
segmentation of :mod:`mediar3d.distributed`, so that a model sees the same intensities in
all of them; :mod:`mediar3d.inference.normalize` re-exports these names.

The percentiles are computed on the whole array, or on a fixed-stride subsample when the
array is large, never on a random sample: the same input always gives the same output.
"""

from __future__ import annotations

import numpy as np

from mediar3d.errors import InputError

#: Percentiles used in training (thesis table 4.4).
DEFAULT_PERCENTILES: tuple[float, float] = (0.0, 99.5)
#: Above this many elements the percentiles are computed on a fixed-stride subsample.
MAX_PERCENTILE_SAMPLES = 1 << 22
#: A percentile range below this fraction of the intensities is float32 rounding: the input is constant.
RELATIVE_RESOLUTION = 1e-6


def _subsample(array: np.ndarray, max_samples: int) -> np.ndarray:
    flat = array.reshape(-1)
    if flat.size <= max_samples:
        return flat
    stride = -(-flat.size // max_samples)  # ceil
    return flat[::stride]


def percentile_range(
    array: np.ndarray,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    *,
    max_samples: int = MAX_PERCENTILE_SAMPLES,
) -> tuple[float, float]:
    """Return the (low, high) intensity percentiles of `array` (any shape).

    Args:
        array: Image or volume, any shape and numeric dtype.
        percentiles: Lower and upper percentile in [0, 100].
        max_samples: Larger arrays are subsampled with a fixed stride (deterministic).

    Returns:
        The two percentile values as floats.
    """
    low_q, high_q = percentiles
    if not 0.0 <= low_q < high_q <= 100.0:
        raise InputError(f"percentiles {percentiles!r}: need 0 <= low < high <= 100")
    sample = _subsample(np.asarray(array), max_samples).astype(np.float64, copy=False)
    low, high = np.percentile(sample, [low_q, high_q])
    return float(low), float(high)


def normalize_range(array: np.ndarray, low: float, high: float, *, clip: bool = True) -> np.ndarray:
    """Map intensities `low` -> 0 and `high` -> 1 (float32), e.g. percentiles of a whole volume for its blocks.

    Raises:
        InputError: `high` is not above `low`.
    """
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise InputError(f"intensity range ({low}, {high}): need finite low < high")
    factor = 1.0 / (high - low)
    tiny = np.finfo(np.float32).tiny
    if factor < np.finfo(np.float32).max and min(abs(low) or 1.0, high - low) >= tiny:
        out = (np.asarray(array, dtype=np.float32) - np.float32(low)) * np.float32(factor)
    else:  # intensities beyond float32's range (e.g. a volume scaled by 1e-40): subtract and scale in float64
        out = ((np.asarray(array, dtype=np.float64) - low) * factor).astype(np.float32)
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out


def normalize_percentile(
    array: np.ndarray,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    *,
    clip: bool = True,
    max_samples: int = MAX_PERCENTILE_SAMPLES,
) -> np.ndarray:
    """Scale intensities so the given percentiles map to 0 and 1.

    Args:
        array: Image (y, x) or volume (z, y, x), any numeric dtype.
        percentiles: Lower and upper percentile mapped to 0 and 1.
        clip: Clip the result to [0, 1].
        max_samples: Percentiles use a fixed-stride subsample above this many elements.

    Returns:
        float32 array of the same shape. A constant input gives all zeros. Whether an input
        is constant does not depend on its scale (a volume multiplied by 1e-30 gives the same
        result): the range must exceed float32 resolution relative to the intensities.
    """
    low, high = percentile_range(array, percentiles, max_samples=max_samples)
    if not high - low > RELATIVE_RESOLUTION * max(abs(low), abs(high)):
        return np.zeros(np.shape(array), dtype=np.float32)
    return normalize_range(array, low, high, clip=clip)
