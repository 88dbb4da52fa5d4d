"""Percentile normalisation, resampling round trips and z-stitching."""

import numpy as np
import pytest

from mediar3d.errors import InputError
from mediar3d.inference.anisotropy import (
    check_anisotropy,
    resample_image,
    resample_labels,
    target_shape,
)
from mediar3d.data.normalize import normalize_percentile, percentile_range
from mediar3d.inference.stitch import stitch_slices


def test_normalisation_maps_percentiles_to_unit_range():
    rng = np.random.default_rng(0)
    volume = rng.integers(100, 4000, size=(8, 32, 32)).astype(np.uint16)
    out = normalize_percentile(volume)
    low, high = np.percentile(volume, [0, 99.5])
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out, np.clip((volume - low) / (high - low), 0, 1), atol=1e-6)



def test_inference_normalize_re_exports_the_shared_functions():
    import mediar3d.data.normalize as shared
    import mediar3d.inference.normalize as old_home

    for name in ("normalize_percentile", "normalize_range", "percentile_range", "DEFAULT_PERCENTILES"):
        assert getattr(old_home, name) is getattr(shared, name), name


def test_subsampled_percentiles_are_deterministic_and_close():
    volume = np.random.default_rng(1).normal(size=(20, 64, 64)).astype(np.float32)
    a = percentile_range(volume, max_samples=5000)
    b = percentile_range(volume, max_samples=5000)
    assert a == b
    full = percentile_range(volume, max_samples=volume.size)
    assert abs(a[1] - full[1]) < 0.2 and a != full


def test_constant_input_gives_zeros_and_bad_percentiles_raise():
    assert not normalize_percentile(np.full((4, 4), 7.0)).any()
    with pytest.raises(InputError):
        normalize_percentile(np.zeros((4, 4)), (50, 10))


@pytest.mark.parametrize("factors", [(2.0, 1.0, 1.0), (3.5, 1.3, 1.3), (1.0, 2.0, 2.0)])
def test_label_round_trip_through_a_finer_grid_is_exact(factors):
    labels = np.random.default_rng(2).integers(0, 50, size=(6, 11, 13)).astype(np.int32)
    up = resample_labels(labels, target_shape(labels.shape, factors))
    assert up.shape == target_shape(labels.shape, factors) and up.dtype == labels.dtype
    np.testing.assert_array_equal(resample_labels(up, labels.shape), labels)


def test_image_resampling_keeps_linear_ramps_and_shape():
    z = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((1, 8, 8), np.float32)
    up = resample_image(z, (20, 8, 8))
    assert up.shape == (20, 8, 8)
    interior = up[2:-2, 0, 0]
    assert np.all(np.diff(interior) > 0) and np.allclose(np.diff(interior), 0.5, atol=1e-5)
    assert resample_image(z, z.shape) is z


def test_anisotropy_checks_and_voxel_size():
    assert check_anisotropy(None) == 1.0 and check_anisotropy(2) == 2.0
    for bad in (0, -1, float("nan")):
        with pytest.raises(InputError):
            check_anisotropy(bad)


def test_stitching_joins_overlapping_masks_and_separates_new_ones():
    a = np.zeros((10, 10), int)
    a[1:5, 1:5] = 3
    a[6:9, 6:9] = 7
    b = np.zeros((10, 10), int)
    b[1:5, 2:5] = 1  # overlaps label 3 of a
    b[0:2, 7:10] = 2  # new object
    c = np.zeros((10, 10), int)
    c[6:9, 6:9] = 5  # no object above in b: new id even though a had one there
    out = stitch_slices([a, b, c], threshold=0.25)
    assert out[0, 2, 2] == out[1, 2, 3] != 0
    assert out[1, 0, 8] not in (0, out[0, 2, 2], out[0, 7, 7])
    assert out[2, 7, 7] not in (0, out[0, 7, 7])
    assert len(np.unique(out)) == 5  # background + 2 in a + 1 new in b + 1 new in c


def test_fixed_intensity_range_maps_low_high_to_unit_range():
    from mediar3d.data.normalize import normalize_range

    values = np.array([0.0, 10.0, 20.0, 30.0], np.float32)
    np.testing.assert_allclose(normalize_range(values, 10, 20), [0, 0, 1, 1])
    np.testing.assert_allclose(normalize_range(values, 10, 30, clip=False), [-0.5, 0, 0.5, 1])
    with pytest.raises(InputError):
        normalize_range(values, 5, 5)
