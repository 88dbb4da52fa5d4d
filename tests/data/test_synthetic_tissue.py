"""The second synthetic generator: deterministic, labels that match the image, the sizes asked for."""

import numpy as np
import pytest

from mediar3d.data.synthetic_tissue import make_tissue_volume, sample_tissue_params
from mediar3d.errors import ConfigError


def _ball_diameters(labels, anisotropy):
    counts = np.bincount(labels.ravel())[1:]
    counts = counts[counts > 0]
    return np.cbrt(6.0 * counts * anisotropy / np.pi)


def test_same_seed_same_volume_and_labels_fit_the_image():
    kwargs = dict(anisotropy=2.0, diameter=14.0, packing=0.5, snr=12.0, seed=4)
    image, labels = make_tissue_volume((16, 64, 64), **kwargs)
    again, labels_again = make_tissue_volume((16, 64, 64), **kwargs)
    assert image.dtype == np.uint16 and labels.dtype == np.int32 and image.shape == labels.shape == (16, 64, 64)
    assert np.array_equal(image, again) and np.array_equal(labels, labels_again)
    assert np.array_equal(np.unique(labels), np.arange(labels.max() + 1))      # consecutive ids
    assert labels.max() >= 15
    inside, outside = image[labels > 0].mean(), image[labels == 0].mean()
    assert inside > outside + 3 * image[labels == 0].std() / np.sqrt(10)
    other, _ = make_tissue_volume((16, 64, 64), **{**kwargs, "seed": 5})
    assert not np.array_equal(image, other)


@pytest.mark.parametrize("diameter, anisotropy", [(10.0, 1.0), (18.0, 3.0)])
def test_nuclei_have_the_requested_3d_diameter(diameter, anisotropy):
    image, labels = make_tissue_volume((int(72 / anisotropy), 72, 72), anisotropy=anisotropy, diameter=diameter,
                                       packing=0.35, size_spread=0.05, seed=1, bit_depth=0)
    d = _ball_diameters(labels, anisotropy)
    inner = d[d > 0.5 * diameter]                     # nuclei cut by the border are smaller
    assert 0.75 * diameter < np.median(inner) < 1.15 * diameter


def test_dense_packing_makes_touching_nuclei_and_z_blur_is_wider():
    from scipy import ndimage

    image, labels = make_tissue_volume((48, 64, 64), anisotropy=1.0, diameter=12.0, packing=0.6,
                                       gap_range=(0.0, 0.0), psf_z_factor=4.0, seed=2, bit_depth=0, snr=100.0)
    grown = ndimage.grey_dilation(labels, size=3)
    touching = np.count_nonzero((grown != labels) & (labels > 0) & (grown > 0))
    assert touching > 100
    # the image is smoother along z than along x (anisotropic PSF)
    dz = np.abs(np.diff(image.astype(float), axis=0)).mean()
    dx = np.abs(np.diff(image.astype(float), axis=2)).mean()
    assert dz < 0.8 * dx


def test_sampled_settings_run_and_bad_settings_are_refused():
    params = sample_tissue_params(np.random.default_rng(0))
    image, labels = make_tissue_volume((8, 40, 40), seed=0, **params)
    assert image.shape == labels.shape == (8, 40, 40)
    with pytest.raises(ConfigError, match="anisotropy"):
        make_tissue_volume((8, 32, 32), anisotropy=0.5)
    with pytest.raises(ConfigError, match="bit_depth"):
        make_tissue_volume((8, 32, 32), bit_depth=12)
