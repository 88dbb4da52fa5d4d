"""The membrane-stained tissue generator: deterministic, walls bright on the label boundaries, the sizes,
shapes, gaps and empty space asked for."""

import numpy as np
import pytest
from skimage import measure
from skimage.segmentation import find_boundaries

from mediar3d.data.synthetic_membrane import make_membrane_volume, sample_membrane_params
from mediar3d.errors import ConfigError

CLEAN = dict(snr=40.0, read_noise=0.5, haze=0.0, background=0.02, depth_attenuation=0.0, gap_fraction=0.0,
             cytoplasm=0.0, nuclei_fraction=0.0, bit_depth=0)


def _ball_diameters(labels, anisotropy):
    counts = np.bincount(labels.ravel())[1:]
    return np.cbrt(6.0 * counts[counts > 0] * anisotropy / np.pi)


def _wall_contrast(image, labels):
    """Mean image on label boundaries / mean image inside cells (away from boundaries)."""
    walls = find_boundaries(labels, mode="thick")
    inner = (labels > 0) & ~walls
    return image[walls & (labels > 0)].mean() / image[inner].mean()


def test_same_seed_same_volume_and_walls_are_bright():
    kwargs = dict(anisotropy=2.0, diameter=14.0, tissue_fraction=1.0, seed=3, psf_sigma_xy=0.7, psf_z_factor=2.5,
                  **CLEAN)
    image, labels = make_membrane_volume((16, 64, 64), **kwargs)
    again, labels_again = make_membrane_volume((16, 64, 64), **kwargs)
    assert labels.dtype == np.int32 and image.shape == labels.shape == (16, 64, 64)
    assert np.array_equal(image, again) and np.array_equal(labels, labels_again)
    assert np.array_equal(np.unique(labels), np.arange(1, labels.max() + 1))   # cells tile the tissue, ids 1..n
    assert labels.max() >= 15
    for i in range(1, labels.max() + 1):                                          # one connected piece each
        assert measure.label(labels == i, connectivity=1).max() == 1
    assert _wall_contrast(image, labels) > 1.6
    other, _ = make_membrane_volume((16, 64, 64), **{**kwargs, "seed": 4})
    assert not np.array_equal(image, other)


@pytest.mark.parametrize("diameter, anisotropy", [(12.0, 1.0), (20.0, 2.5)])
def test_cells_have_the_requested_3d_diameter(diameter, anisotropy):
    _, labels = make_membrane_volume((int(80 / anisotropy), 80, 80), anisotropy=anisotropy, diameter=diameter,
                                     size_spread=0.05, elongation=0.0, tissue_fraction=1.0, seed=1, bit_depth=0)
    d = _ball_diameters(labels, anisotropy)
    inner = d[d > 0.6 * diameter]                     # cells cut by the border are smaller
    assert 0.75 * diameter < np.median(inner) < 1.25 * diameter


def test_elongation_stretches_cells_and_size_spread_varies_them():
    def shape_stats(**kwargs):
        _, labels = make_membrane_volume((48, 64, 64), anisotropy=1.0, diameter=14.0, tissue_fraction=1.0, seed=2,
                                         bit_depth=0, irregularity=0.0, **kwargs)
        coords = np.stack(np.nonzero(labels), 1).astype(float)
        ids = labels[labels > 0]
        ratios = []
        for i in np.unique(ids):
            pts = coords[ids == i]
            if len(pts) < 200:
                continue
            ev = np.linalg.eigvalsh(np.cov(pts.T))
            ratios.append(np.sqrt(ev[-1] / ev[0]))
        d = _ball_diameters(labels, 1.0)
        d = d[d > 0.6 * 14]
        return np.median(ratios), np.std(np.log(d))

    round_ratio, even = shape_stats(elongation=0.0, size_spread=0.0)
    long_ratio, _ = shape_stats(elongation=1.5, size_spread=0.0)
    _, varied = shape_stats(elongation=0.0, size_spread=0.5)
    assert long_ratio > 1.4 * round_ratio
    assert varied > 1.3 * even


def test_empty_space_gaps_and_anisotropic_blur():
    _, labels = make_membrane_volume((16, 64, 64), anisotropy=2.0, diameter=12.0, tissue_fraction=0.6, seed=5,
                                     bit_depth=0)
    assert 0.3 < (labels == 0).mean() < 0.5
    base = dict(anisotropy=1.0, diameter=14.0, tissue_fraction=1.0, seed=6, **CLEAN)
    solid, labels = make_membrane_volume((40, 64, 64), **base)
    gappy, _ = make_membrane_volume((40, 64, 64), **{**base, "gap_fraction": 0.3})
    walls = find_boundaries(labels, mode="inner")
    dark = np.quantile(solid[walls], 0.1)
    assert (gappy[walls] < dark).mean() > (solid[walls] < dark).mean() + 0.15
    # z blur several times the x/y blur: neighbouring z planes are more alike than neighbouring x columns
    blurred, _ = make_membrane_volume((40, 64, 64), **{**base, "psf_sigma_xy": 1.0, "psf_z_factor": 4.0})
    dz = np.abs(np.diff(blurred, axis=0)).mean()
    dx = np.abs(np.diff(blurred, axis=2)).mean()
    assert dz < 0.6 * dx


def test_sampled_settings_are_accepted_and_bad_ones_refused():
    rng = np.random.default_rng(0)
    for _ in range(3):
        params = sample_membrane_params(rng)
        image, labels = make_membrane_volume((8, 48, 48), seed=1, **params)
        assert image.shape == labels.shape == (8, 48, 48) and labels.max() >= 1
    with pytest.raises(ConfigError, match="anisotropy"):
        make_membrane_volume((8, 32, 32), anisotropy=0.5)
    with pytest.raises(ConfigError, match="thickness"):
        make_membrane_volume((8, 32, 32), thickness=(2.0, 1.0))
    with pytest.raises(ConfigError, match="bit_depth"):
        make_membrane_volume((8, 32, 32), bit_depth=12)
