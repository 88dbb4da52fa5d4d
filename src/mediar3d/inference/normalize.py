"""Percentile intensity normalisation; lives in :mod:`mediar3d.data.normalize` (shared with training)."""

from mediar3d.data.normalize import (
    DEFAULT_PERCENTILES,
    MAX_PERCENTILE_SAMPLES,
    normalize_percentile,
    normalize_range,
    percentile_range,
)

__all__ = ["DEFAULT_PERCENTILES", "MAX_PERCENTILE_SAMPLES", "normalize_percentile", "normalize_range",
           "percentile_range"]
