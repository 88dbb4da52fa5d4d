"""3D -> 2D slicing: planes keep (z, y, x) order and stack back exactly."""

import numpy as np
import pytest

from mediar3d.data.slicing import (annotated_slices, check_orientations, export_slices, iter_slices,
                                   resample_plane, stack_slices, take_slice)
from mediar3d.errors import ConfigError


@pytest.mark.parametrize("orientation, plane", [("z", (5, 6)), ("y", (4, 6)), ("x", (4, 5))])
def test_slices_and_stacking_invert(orientation, plane):
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    slices = [s for o, _, s in iter_slices(vol, [orientation])]
    assert slices[0].shape == plane
    assert np.array_equal(stack_slices(slices, orientation), vol)
    # channels first are kept in front
    chan = np.stack([vol, -vol])
    two = [take_slice(chan, orientation, i) for i in range(len(slices))]
    assert np.array_equal(stack_slices(two, orientation), chan)


def test_take_slice_matches_numpy_indexing():
    vol = np.random.default_rng(0).random((3, 4, 5))
    assert np.array_equal(take_slice(vol, "z", 2), vol[2])
    assert np.array_equal(take_slice(vol, "y", 1), vol[:, 1])
    assert np.array_equal(take_slice(vol, "x", 4), vol[:, :, 4])


def test_annotated_slices():
    labels = np.zeros((4, 5, 6), np.int32)
    labels[1, 2, 3] = 7
    labels[3, 0, 0] = 1
    assert annotated_slices(labels, "z").tolist() == [1, 3]
    assert annotated_slices(labels, "y").tolist() == [0, 2]
    assert annotated_slices(labels, "x").tolist() == [0, 3]


def test_resample_plane_stretches_z_only():
    plane = np.arange(12, dtype=np.int32).reshape(3, 4)
    out = resample_plane(plane, "y", 2.0, labels=True)
    assert out.shape == (6, 4)
    assert set(np.unique(out)) <= set(np.unique(plane))
    assert resample_plane(plane, "z", 2.0, labels=True) is plane


def test_orientation_check():
    assert check_orientations(["Z", "x", "z"]) == ("z", "x")
    with pytest.raises(ConfigError):
        check_orientations(["q"])


def test_export_slices_writes_readable_pairs(tmp_path):
    from mediar3d.io import read_image, read_labels

    labels = np.zeros((3, 8, 9), np.int32)
    labels[1, 2:5, 2:6] = 4
    image = np.random.default_rng(1).random((3, 8, 9)).astype(np.float32)
    pairs = export_slices(image, labels, tmp_path, stem="v", orientations=["z", "x"], skip_empty=True)
    assert [p.name for p, _ in pairs] == ["v_z1.tif", "v_x2.tif", "v_x3.tif", "v_x4.tif", "v_x5.tif"]
    assert np.array_equal(read_labels(pairs[0][1]), labels[1])
    assert np.allclose(read_image(pairs[1][0]).data, image[:, :, 2])
