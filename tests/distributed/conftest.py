"""Shared helpers for the block-wise tests: synthetic label volumes and partition checks."""

from __future__ import annotations

import numpy as np
import pytest


def make_balls(shape, n, radius=(4.0, 7.0), seed=0, centres=()):
    """Label volume of up to ``n`` random balls (plus balls at ``centres``), touching allowed.

    Returns:
        int32 (z, y, x) labels 1..k; balls that would overlap an earlier one keep only
        their free voxels, so neighbours touch.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    zz, yy, xx = np.indices(shape)
    spots = [(np.asarray(c, float), radius[1]) for c in centres]
    spots += [(rng.uniform(0, shape), rng.uniform(*radius)) for _ in range(n)]
    k = 0
    for c, r in spots:
        ball = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 < r * r) & (labels == 0)
        if ball.sum() > 30:
            k += 1
            labels[ball] = k
    return labels


def partition_mismatch(a, b):
    """Describe how two label volumes differ as partitions ('' when identical up to ids)."""
    if not np.array_equal(a > 0, b > 0):
        return f"foreground differs at {int(np.count_nonzero((a > 0) != (b > 0)))} voxels"
    fg = a > 0
    pairs = np.unique(np.stack([a[fg], b[fg]], 1), axis=0)
    na, nb = len(np.unique(a[fg])), len(np.unique(b[fg]))
    if not len(pairs) == na == nb:
        split = len(pairs) - na
        merged = len(pairs) - nb
        return f"{na} vs {nb} objects, {split} extra pieces of a, {merged} extra pieces of b"
    return ""


@pytest.fixture
def balls():
    return make_balls


@pytest.fixture
def mismatch():
    return partition_mismatch
