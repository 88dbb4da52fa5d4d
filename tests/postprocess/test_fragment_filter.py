"""Fragment removal: masks far smaller than the typical mask are dropped, whole nuclei kept."""

import numpy as np
import pytest

from mediar3d.flows import masks_to_flows
from mediar3d.postprocess import compute_masks
from mediar3d.postprocess.filters import relative_size_filter


def _balls(shape, centres_radii):
    grid = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for k, (centre, radius) in enumerate(centres_radii, start=1):
        inside = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2
        labels[inside & (labels == 0)] = k
    return labels


@pytest.fixture(scope="module")
def nuclei_and_fragments():
    """8 nuclei of radius 6 (~900 voxels), one small true nucleus of radius 4 (~270) and 6 fragments of radius 1.5."""
    big = [((10 + 14 * (k // 4), 10 + 14 * (k % 4), 12), 6) for k in range(8)]
    small = [((17, 31, 34), 4)]
    fragments = [((5 + 6 * k, 48, 44), 1.5) for k in range(6)]
    labels = _balls((40, 60, 48), big + small + fragments)
    return labels, len(big), len(small), len(fragments)


def test_relative_size_filter_drops_fragments_and_keeps_nuclei(nuclei_and_fragments):
    labels, n_big, n_small, n_frag = nuclei_and_fragments
    sizes = np.bincount(labels.ravel())
    kept = relative_size_filter(labels.copy(), 0.2)
    kept_ids = set(np.unique(kept)) - {0}
    assert kept_ids == set(range(1, n_big + n_small + 1))          # all nuclei, even the small one (~0.3x)
    assert sizes[n_big + n_small + 1:].max() < 0.2 * np.median(sizes[1:n_big + 1])
    # 0 keeps everything; the fragments would survive a min_size of 15 voxels
    assert set(np.unique(relative_size_filter(labels.copy(), 0.0))) - {0} == set(range(1, n_big + n_small + n_frag + 1))
    assert sizes[1:].min() > 15


def test_typical_size_is_not_pulled_down_by_many_fragments():
    """30 fragments and 4 nuclei: a plain median would be a fragment's size and keep them all."""
    centres = [((8, 8 + 16 * k, 10), 6) for k in range(4)]
    centres += [((20 + 2 * (k // 10), 4 + 6 * (k % 10), 30), 1.0) for k in range(30)]
    labels = _balls((32, 72, 40), centres)
    kept = relative_size_filter(labels.copy(), 0.2)
    assert set(np.unique(kept)) - {0} == {1, 2, 3, 4}


def test_compute_masks_applies_min_size_fraction(nuclei_and_fragments):
    labels, n_big, n_small, n_frag = nuclei_and_fragments
    flows = masks_to_flows(labels)
    logits = np.where(labels > 0, 5.0, -5.0).astype(np.float32)
    without = compute_masks(flows, logits, min_size=0, flow_threshold=0)
    with_filter = compute_masks(flows, logits, min_size=0, flow_threshold=0, min_size_fraction=0.2)
    assert without.max() == n_big + n_small + n_frag
    assert with_filter.max() == n_big + n_small
