"""Synthetic nuclei: determinism, label properties, geometry, intensity ranges and SNR."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mediar3d.data.synthetic import (NucleiSettings, _stripes, make_nuclei_image, make_nuclei_volume,
                                     random_nuclei_volume, sample_nuclei_params)
from mediar3d.errors import ConfigError

SMALL = (20, 64, 64)


@pytest.fixture(scope="module")
def default_volume():
    return make_nuclei_volume(SMALL, radius_range=(5, 8), seed=11)


def _touching_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)[1:].ravel()
        b = np.moveaxis(labels, axis, 0)[:-1].ravel()
        touch = (a != b) & (a > 0) & (b > 0)
        pairs |= {(int(min(x, y)), int(max(x, y))) for x, y in zip(a[touch], b[touch])}
    return pairs


def _border_labels(labels: np.ndarray) -> set[int]:
    found = set()
    for axis in range(labels.ndim):
        for end in (0, -1):
            found |= set(np.unique(np.take(labels, end, axis=axis)).tolist())
    return found - {0}


def test_deterministic_from_seed(default_volume):
    image, labels = default_volume
    again_image, again_labels = make_nuclei_volume(SMALL, radius_range=(5, 8), seed=11)
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(labels, again_labels)
    other_image, other_labels = make_nuclei_volume(SMALL, radius_range=(5, 8), seed=12)
    assert not np.array_equal(labels, other_labels)
    assert not np.allclose(image, other_image)


def test_deterministic_with_every_effect_on():
    options = dict(radius_range=(4, 7), anisotropy=2.5, mitotic=0.3, stripes=0.4, z_attenuation=0.5, illumination=0.5,
                   haze=0.3, bit_depth=16, fill=0.1, flatten=1.4, overlap=0.8)
    first = make_nuclei_volume((12, 40, 40), seed=5, **options)
    second = make_nuclei_volume((12, 40, 40), seed=5, **options)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    flat = make_nuclei_image((50, 50), seed=5, stripes=0.4, mitotic=0.3)
    np.testing.assert_array_equal(flat[0], make_nuclei_image((50, 50), seed=5, stripes=0.4, mitotic=0.3)[0])


def test_types_and_consecutive_labels(default_volume):
    image, labels = default_volume
    assert image.shape == SMALL and labels.shape == SMALL
    assert image.dtype == np.float32 and labels.dtype == np.int32
    assert np.isfinite(image).all()
    ids = np.unique(labels)
    assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, labels.max() + 1))
    assert labels.max() >= 10


def test_each_nucleus_is_one_connected_piece(default_volume):
    _, labels = default_volume
    for index, box in enumerate(ndimage.find_objects(labels)):
        _, pieces = ndimage.label(labels[box] == index + 1)
        assert pieces == 1, f"label {index + 1} has {pieces} pieces"


def test_touching_nuclei_exist(default_volume):
    _, labels = default_volume
    assert len(_touching_pairs(labels)) >= 3


def test_border_cut_on_and_off():
    _, cut = make_nuclei_volume((24, 72, 72), radius_range=(5, 7), seed=2, border_cut=True)
    assert len(_border_labels(cut)) >= 5
    _, inside = make_nuclei_volume((24, 72, 72), radius_range=(5, 7), seed=2, border_cut=False)
    assert inside.max() >= 3
    assert _border_labels(inside) == set()


def test_requested_count_when_room():
    _, labels = make_nuclei_volume((32, 96, 96), n_nuclei=6, radius_range=(5, 6), seed=5, border_cut=False)
    assert labels.max() == 6


def test_anisotropy_flattens_nuclei_in_z():
    ratios = {}
    for anisotropy in (1.0, 3.0):
        _, labels = make_nuclei_volume((24, 64, 64), radius_range=(6, 8), anisotropy=anisotropy, seed=4,
                                       border_cut=False, elongation=0.0, irregularity=0.0)
        assert labels.shape == (24, 64, 64)
        spans = []
        for box in ndimage.find_objects(labels):
            if box is not None:
                spans.append((box[0].stop - box[0].start) / (box[1].stop - box[1].start))
        ratios[anisotropy] = float(np.median(spans))
    assert 0.8 < ratios[1.0] < 1.25
    assert 0.25 < ratios[3.0] < 0.5


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_integer_ranges(bit_depth):
    image, _ = make_nuclei_volume((12, 48, 48), radius_range=(5, 7), seed=3, bit_depth=bit_depth, fill=1.2)
    top = 2**bit_depth - 1
    assert image.dtype == np.float32
    assert image.min() >= 0 and image.max() == top  # fill > 1 saturates the brightest voxels
    np.testing.assert_array_equal(image, np.round(image))
    assert np.array_equal(image.astype(np.uint16 if bit_depth == 16 else np.uint8).astype(np.float32), image)
    assert len(np.unique(image)) > 20


def test_float_output_is_not_quantised(default_volume):
    image, _ = default_volume
    assert not np.array_equal(image, np.round(image))


def _plain(snr: float, **extra):
    return make_nuclei_volume((16, 64, 64), n_nuclei=4, radius_range=(9, 10), seed=7, border_cut=False,
                              snr=snr, brightness_range=(1.0, 1.0), texture=0.0, nucleoli=0.0,
                              chromocenters=0.0, background=0.1, background_unevenness=0.0, haze=0.0, **extra)


@pytest.mark.parametrize("snr", [3.0, 12.0])
def test_snr_is_controlled(snr):
    image, labels = _plain(snr)
    core = ndimage.binary_erosion(labels > 0, iterations=3)
    far = ~ndimage.binary_dilation(labels > 0, iterations=4)
    signal = image[core].mean() - image[far].mean()
    measured = signal / image[core].std()
    assert snr / 1.5 < measured < snr * 1.5


def test_image_agrees_with_masks(default_volume):
    image, labels = default_volume
    inside = image[labels > 0].mean()
    outside = image[labels == 0].mean()
    assert inside > 2 * outside
    # the blurred edge sits on the mask boundary: voxels just inside are brighter than just outside
    fg = labels > 0
    ring_in = fg & ~ndimage.binary_erosion(fg)
    ring_out = ndimage.binary_dilation(fg) & ~fg
    assert image[ring_in].mean() > image[ring_out].mean()


def test_brightness_spread_dim_next_to_bright():
    image, labels = make_nuclei_volume((16, 96, 96), radius_range=(6, 8), seed=9, snr=30.0, background=0.0,
                                       haze=0.0, texture=0.0, nucleoli=0.0)
    means = ndimage.mean(image, labels, index=np.arange(1, labels.max() + 1))
    assert np.percentile(means, 95) / np.percentile(means, 5) > 4


def test_mitotic_nuclei_are_brighter():
    common = dict(radius_range=(5, 6), seed=9, snr=40.0, background=0.0, haze=0.0, brightness_range=(0.5, 0.5),
                  border_cut=False)
    fractions = {}
    for mitotic in (0.0, 0.3):
        image, labels = make_nuclei_volume((24, 80, 80), mitotic=mitotic, **common)
        means = ndimage.mean(image, labels, index=np.arange(1, labels.max() + 1))
        fractions[mitotic] = float(np.mean(means > 1.6 * np.median(means)))
    assert fractions[0.0] < 0.05
    assert 0.1 < fractions[0.3] < 0.5


def test_stripes_run_along_x():
    factor = _stripes(np.random.default_rng(0), (6, 30, 20), np.array([2.0, 1.0, 1.0]), 0.5)
    assert factor.shape == (6, 30, 1)
    assert factor.min() < 0.8 and factor.max() <= 1.0 and factor.min() > 0


def test_settings_defaults_and_validation():
    assert NucleiSettings().bit_depth is None
    with pytest.raises(ConfigError, match="overlap"):
        NucleiSettings(overlap=1.5)
    with pytest.raises(ConfigError, match="haze"):
        NucleiSettings.from_options({"haze": -1.0})


def test_2d_image():
    image, labels = make_nuclei_image((96, 80), radius_range=(5, 8), seed=1)
    assert image.shape == labels.shape == (96, 80)
    assert image.dtype == np.float32 and labels.dtype == np.int32
    assert labels.max() >= 5 and len(_touching_pairs(labels)) >= 1


def test_random_volumes_vary_and_repeat():
    params = [sample_nuclei_params(np.random.default_rng(s)) for s in range(30)]
    assert {p["bit_depth"] for p in params} == {None, 8, 16}
    assert min(p["anisotropy"] for p in params) == 1.0 and max(p["anisotropy"] for p in params) > 2.5
    assert all(4.0 <= p["radius_range"][0] <= p["radius_range"][1] <= 30.0 for p in params)
    assert max(p["snr"] for p in params) / min(p["snr"] for p in params) > 5
    first = random_nuclei_volume(np.random.default_rng(1), shape=(12, 40, 40))
    second = random_nuclei_volume(np.random.default_rng(1), shape=(12, 40, 40))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert first[2] == second[2] and first[0].shape == (12, 40, 40)


@pytest.mark.parametrize("kwargs,match", [
    ({"anisotropy": 0.5}, "anisotropy"), ({"radius_range": (8, 4)}, "radius_range"),
    ({"bit_depth": 12}, "bit_depth"), ({"snr": 0}, "snr"), ({"colour": "red"}, "unknown synthetic option"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_nuclei_volume((8, 16, 16), **kwargs)


def test_montage_png(tmp_path, default_volume):
    pytest.importorskip("matplotlib")
    from mediar3d.data.synthetic_preview import save_montage

    image, labels = default_volume
    save_montage(tmp_path / "m.png", image, labels, n_slices=2, anisotropy=2.0, title="synthetic")
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
