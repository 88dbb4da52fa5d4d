"""The numba placement and rasterisation kernels agree with their plain numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from mediar3d.data.synthetic_shapes import keep_largest_fragment, rasterize_nuclei, sample_nuclei


@pytest.mark.parametrize("extent,kwargs", [
    ((40.0, 60.0, 60.0), {}),
    ((40.0, 60.0, 60.0), {"border_cut": False, "cluster": 0.0, "flatten": 1.5}),
    ((70.0, 90.0), {"irregularity": 0.2}),
])
def test_placement_fast_matches_reference(extent, kwargs):
    args = dict(radius_range=(4.0, 8.0), **kwargs)
    fast = sample_nuclei(np.random.default_rng(3), extent, 80, fast=True, **args)
    slow = sample_nuclei(np.random.default_rng(3), extent, 80, fast=False, **args)
    assert len(fast) == len(slow) > 10
    np.testing.assert_allclose(fast.centers, slow.centers, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(fast.forms, slow.forms)


def test_placement_respects_overlap():
    nuclei = sample_nuclei(np.random.default_rng(0), (40.0, 60.0, 60.0), 60, radius_range=(5.0, 6.0),
                           elongation=0.0, overlap=0.9)
    radius = nuclei.semi_axes[:, 0]
    dist = np.linalg.norm(nuclei.centers[:, None] - nuclei.centers[None], axis=2)
    allowed = 0.9 * (radius[:, None] + radius[None])
    np.fill_diagonal(dist, np.inf)
    assert np.all(dist >= allowed * (1 - 1e-9))
    assert np.any(dist < (radius[:, None] + radius[None]))  # some neighbours do overlap a little (then touch)


@pytest.mark.parametrize("shape,spacing", [((20, 40, 48), (2.0, 1.0, 1.0)), ((50, 60), (1.0, 1.0))])
def test_rasterize_fast_matches_reference(shape, spacing):
    extent = np.asarray(shape) * np.asarray(spacing)
    nuclei = sample_nuclei(np.random.default_rng(5), extent, 40, radius_range=(4.0, 9.0), irregularity=0.15)
    owner_fast, dist_fast = rasterize_nuclei(nuclei, shape, spacing, fast=True)
    owner_ref, dist_ref = rasterize_nuclei(nuclei, shape, spacing, fast=False)
    assert (owner_ref >= 0).mean() > 0.2
    assert (owner_fast != owner_ref).mean() < 1e-4
    finite = np.isfinite(dist_ref)
    np.testing.assert_array_equal(finite, np.isfinite(dist_fast))
    np.testing.assert_allclose(dist_fast[finite], dist_ref[finite], rtol=1e-5, atol=1e-6)


def test_keep_largest_fragment():
    labels = np.zeros((1, 10, 10), np.int32)
    labels[0, 1:4, 1:4] = 1  # big piece of 1
    labels[0, 7, 7] = 1  # stray piece of 1
    labels[0, 6:9, 1:3] = 2
    removed = keep_largest_fragment(labels)
    assert labels[0, 7, 7] == 0 and removed[0, 7, 7] and removed.sum() == 1
    assert (labels == 1).sum() == 9 and (labels == 2).sum() == 6
