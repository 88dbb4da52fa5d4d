"""Whole-volume percentiles from a strided sample, read plane by plane."""

from __future__ import annotations

import numpy as np
import pytest

from mediar3d.distributed import global_percentiles
from mediar3d.distributed.intensity import strided_sample

pytestmark = pytest.mark.dask


class _CountingArray:
    """Array-like that records the largest read."""

    def __init__(self, data):
        self.data, self.shape, self.largest = data, data.shape, 0

    def __getitem__(self, key):
        out = self.data[key]
        self.largest = max(self.largest, out.size)
        return out


def test_percentiles_of_a_sample_are_close_and_reads_stay_small():
    rng = np.random.default_rng(0)
    vol = rng.gamma(2.0, 100.0, size=(40, 64, 64)).astype(np.float32)
    lazy = _CountingArray(vol)
    lo, hi = global_percentiles(lazy, (1.0, 99.0), max_samples=20_000)
    ref_lo, ref_hi = np.percentile(vol, [1.0, 99.0])
    assert abs(lo - ref_lo) < 0.1 * ref_lo and abs(hi - ref_hi) < 0.05 * ref_hi
    assert lazy.largest <= 64 * 64
    assert global_percentiles(vol, (1.0, 99.0), max_samples=20_000) == (lo, hi)


def test_sample_is_regular_and_bounded():
    vol = np.arange(30 * 30 * 30).reshape(30, 30, 30)
    sample = strided_sample(vol, max_samples=1000)
    assert sample.size <= 1000
    np.testing.assert_array_equal(sample, vol[::3, ::3, ::3].ravel())
