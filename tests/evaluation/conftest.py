"""Small label images for the evaluation tests, generated on the fly."""

import numpy as np
import pytest
from scipy import ndimage


def ellipsoid_labels(shape=(24, 60, 60), spacing=12, seed=0) -> np.ndarray:
    """Non-touching ellipsoids on a jittered grid, labels 1..N in random order, (z, y, x) uint16."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint16)
    zz, yy, xx = np.indices(shape)
    centres = [(z, y, x) for z in range(spacing // 2, shape[0], spacing)
               for y in range(spacing // 2, shape[1], spacing) for x in range(spacing // 2, shape[2], spacing)]
    ids = rng.permutation(len(centres)) + 1
    for label, (cz, cy, cx) in zip(ids, centres):
        r = rng.uniform(2.5, spacing / 2 - 1, size=3)
        c = np.array([cz, cy, cx]) + rng.integers(-1, 2, size=3)
        inside = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
        labels[inside] = label
    return labels


def voronoi_labels(shape, n, seed=0, background=0.0) -> np.ndarray:
    """Touching cells: every voxel takes the label of its nearest of ``n`` random seeds."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, dtype=np.int32)
    flat = rng.choice(np.prod(shape), size=n, replace=False)
    seeds.flat[flat] = np.arange(1, n + 1)
    _, idx = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[tuple(idx)]
    if background:
        labels[rng.random(shape) < background] = 0
    return labels


@pytest.fixture
def ellipsoids():
    return ellipsoid_labels


@pytest.fixture
def voronoi():
    return voronoi_labels
