"""masks_to_flows / cellprob_target: Cellpose heat-diffusion flows, fast vs reference."""

from __future__ import annotations

import numpy as np
import pytest

from mediar3d.errors import InputError
from mediar3d.flows import cellprob_target, diffuse_flows, diffuse_flows_reference, masks_to_flows


def test_fast_matches_reference_3d(scene):
    fast = masks_to_flows(scene)
    ref = diffuse_flows_reference(scene, 3)
    assert fast.shape == (3,) + scene.shape and fast.dtype == np.float32
    np.testing.assert_allclose(fast, ref, atol=1e-6)


def test_fast_matches_reference_2d(scene):
    sl = scene[10]
    fast = masks_to_flows(sl)
    ref = diffuse_flows_reference(sl[None], 2)[:, 0]
    assert fast.shape == (2,) + sl.shape and fast.dtype == np.float32
    np.testing.assert_allclose(fast, ref, atol=1e-6)


def test_fixed_niter_matches_reference(scene):
    np.testing.assert_allclose(diffuse_flows(scene, 3, niter=17), diffuse_flows_reference(scene, 3, niter=17),
                               atol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_flows_point_to_centre_and_are_unit(scene, ndim):
    masks = scene if ndim == 3 else scene[10]
    flows = masks_to_flows(masks)
    norm = np.sqrt((flows ** 2).sum(0))
    assert np.all(norm[masks == 0] == 0)
    inside = norm[masks > 0]
    assert np.mean(np.abs(inside - 1) < 1e-5) > 0.99  # only centre voxels may be 0
    lab = 1  # a ball: flows point to its centre
    pts = np.argwhere(masks == lab)
    centre = pts.mean(0)
    to_c = centre - pts
    dist = np.linalg.norm(to_c, axis=1)
    far = dist >= 2
    v = flows[(slice(None),) + tuple(pts.T)].T
    cos = (v[far] * to_c[far]).sum(1) / dist[far]
    assert cos.min() > 0.5 and np.median(cos) > 0.95


def test_rod_flows_point_along_rod(scene):
    flows = masks_to_flows(scene)
    dy = flows[1, 10, 26:33, 32]
    assert np.all(dy[:3] > 0.99) and np.all(dy[-3:] < -0.99) and dy[3] == 0  # centre is y=29
    assert np.all(flows[0, 10, 26:33, 32] == 0) and np.all(flows[2, 10, 26:33, 32] == 0)


def test_objects_are_independent_and_labels_arbitrary(scene):
    full = masks_to_flows(scene)
    relabelled = np.where(scene > 0, scene * 1000 + 7, 0).astype(np.uint32)
    np.testing.assert_array_equal(masks_to_flows(relabelled), full)
    # an object alone in the volume gets the same flows (up to the Cellpose niter, which is per object)
    alone = np.where(scene == 3, 3, 0)
    np.testing.assert_array_equal(masks_to_flows(alone)[:, scene == 3], full[:, scene == 3])


def test_empty_and_bool_masks():
    assert not masks_to_flows(np.zeros((5, 6, 7), np.uint16)).any()
    m = np.zeros((9, 9), bool)
    m[2:7, 2:7] = True
    f = masks_to_flows(m)
    assert f.shape == (2, 9, 9) and f[1, 4, 2] > 0.99 and f[1, 4, 6] < -0.99


def test_cellprob_target(scene):
    t = cellprob_target(scene)
    assert t.dtype == np.float32 and t.shape == scene.shape
    np.testing.assert_array_equal(t, (scene > 0).astype(np.float32))


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 4, 5), np.int32), np.zeros(5, np.int32),
                                 np.zeros((4, 4), np.float32), -np.ones((4, 4), np.int16),
                                 np.zeros((0, 4), np.int32)])
def test_bad_masks_raise(bad):
    with pytest.raises(InputError):
        masks_to_flows(bad)


@pytest.mark.parametrize("shape, seed", [((1, 30, 40), 0), ((9, 17, 23), 1), ((40, 24, 24), 2)])
def test_object_boxes_match_scipy(shape, seed):
    """The numba boxes equal find_objects' on labels with gaps, one-voxel objects and one plane."""
    from mediar3d.flows.diffusion import object_boxes, object_boxes_reference

    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for k in rng.choice(np.arange(1, 40), 25, replace=False):  # gaps in the label numbers
        z, y, x = (int(rng.integers(0, s)) for s in shape)
        dz, dy, dx = (int(rng.integers(1, 6)) for _ in range(3))
        labels[z:z + dz, y:y + dy, x:x + dx] = k
    labels[-1, -1, -1] = 44  # a one-voxel object in the last corner
    np.testing.assert_array_equal(object_boxes(labels), object_boxes_reference(labels))
    assert object_boxes(np.zeros(shape, np.int32)).shape == (0, 6)
