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


@pytest.mark.parametrize("shape,spacing", [((12, 30, 30), (2.5, 1.0, 1.0)), ((40, 40), (1.0, 1.0))])
def test_nucleoli_fast_matches_reference(shape, spacing):
    from mediar3d.data.synthetic import nucleoli_factor

    rng = np.random.default_rng(2)
    labels = (np.arange(int(np.prod(shape))).reshape(shape) // 97 % 4).astype(np.int32)
    extent = np.asarray(shape) * np.asarray(spacing)
    k = 25
    centres = rng.uniform(-2, 1, size=(k, len(shape))) + rng.uniform(0, 1, size=(k, len(shape))) * extent
    radii = rng.uniform(1.0, 4.0, size=k)
    darkness = rng.uniform(0.3, 0.8, size=k)
    owners = rng.integers(0, 4, size=k)
    fast = nucleoli_factor(labels, owners, centres, radii, darkness, spacing, fast=True)
    slow = nucleoli_factor(labels, owners, centres, radii, darkness, spacing, fast=False)
    assert (slow < 0.9).sum() > 20
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)


def test_keep_largest_fragment_random_pieces():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(6, 14, 14)).astype(np.int32)
    labels[labels == 3] = 0
    before = labels.copy()
    removed = keep_largest_fragment(labels)
    for value in (1, 2):
        pieces, count = ndimage.label(before == value)
        sizes = np.bincount(pieces.ravel())[1:]
        assert count > 1 and (labels == value).sum() == sizes.max()
        _, left = ndimage.label(labels == value)
        assert left == 1
    np.testing.assert_array_equal(removed, (before != labels))
