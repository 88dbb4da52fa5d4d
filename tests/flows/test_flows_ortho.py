"""ortho2d_flows: summed per-slice 2D flows on z, y and x slices."""

from __future__ import annotations

import numpy as np
import pytest

from mediar3d.errors import InputError
from mediar3d.flows import masks_to_flows, ortho2d_flows


def test_ortho_matches_slice_by_slice_sum(scene):
    out = ortho2d_flows(scene)
    want = np.zeros((3,) + scene.shape, np.float32)
    for z in range(scene.shape[0]):
        f = masks_to_flows(scene[z])
        want[1, z] += f[0]
        want[2, z] += f[1]
    for y in range(scene.shape[1]):
        f = masks_to_flows(scene[:, y])
        want[0, :, y] += f[0]
        want[2, :, y] += f[1]
    for x in range(scene.shape[2]):
        f = masks_to_flows(scene[:, :, x])
        want[0, :, :, x] += f[0]
        want[1, :, :, x] += f[1]
    assert out.shape == want.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_ortho_range_and_background(scene):
    out = ortho2d_flows(scene)
    assert np.all(out[:, scene == 0] == 0)
    assert np.abs(out).max() <= 2 + 1e-6
    assert np.abs(out).max() > 1.5  # two views agree on a component somewhere


def test_ortho_rejects_2d():
    with pytest.raises(InputError):
        ortho2d_flows(np.ones((5, 5), np.int32))
