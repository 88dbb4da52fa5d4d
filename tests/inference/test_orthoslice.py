"""Slice-to-volume bookkeeping of Algorithm 1 with fake predictors of known output."""

import numpy as np
import pytest

from mediar3d.errors import ConfigError
from mediar3d.inference.orthoslice import predict_orthoslices


def position_predictor(batch: np.ndarray) -> np.ndarray:
    """Fake 2D net: rows channel = 10*row + image, cols channel = -col + 2*image, logit = 3*image."""
    n, h, w = batch.shape
    rows = np.arange(h, dtype=np.float32)[None, :, None]
    cols = np.arange(w, dtype=np.float32)[None, None, :]
    return np.stack([10 * rows + batch, -cols + 2 * batch, 3 * batch], axis=1).astype(np.float32)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_three_views_give_exact_3d_field(batch_size):
    rng = np.random.default_rng(0)
    shape = (5, 7, 9)
    volume = rng.random(shape).astype(np.float32)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    flows, logits = predict_orthoslices(volume, position_predictor, batch_size=batch_size)
    # dz: rows of y-slices (z, x) and rows of x-slices (z, y) -> both 10*z + v
    expected_dz = 10 * z + volume
    # dy: rows of z-slices (y, x) -> 10*y + v ; cols of x-slices (z, y) -> -y + 2v
    expected_dy = ((10 * y + volume) + (-y + 2 * volume)) / 2
    # dx: cols of z-slices -> -x + 2v ; cols of y-slices -> -x + 2v
    expected_dx = -x + 2 * volume
    np.testing.assert_allclose(flows[0], expected_dz, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(flows[1], expected_dy, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(flows[2], expected_dx, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(logits, 3 * volume, rtol=1e-6, atol=1e-6)


def test_z_only_leaves_dz_zero_and_keeps_in_plane_flows():
    volume = np.random.default_rng(1).random((4, 6, 8)).astype(np.float32)
    _, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in volume.shape), indexing="ij")
    flows, logits = predict_orthoslices(volume, position_predictor, axes=(0,))
    assert not flows[0].any()
    np.testing.assert_allclose(flows[1], 10 * y + volume, atol=1e-5)
    np.testing.assert_allclose(flows[2], -x + 2 * volume, atol=1e-5)
    np.testing.assert_allclose(logits, 3 * volume, atol=1e-6)


def test_predictor_with_wrong_output_shape_is_reported():
    with pytest.raises(ConfigError, match="shape"):
        predict_orthoslices(np.zeros((3, 4, 5), np.float32), lambda b: np.zeros((len(b), 2) + b.shape[1:]))


def test_rejects_2d_input_and_bad_axes():
    with pytest.raises(ConfigError):
        predict_orthoslices(np.zeros((4, 5), np.float32), position_predictor)
    with pytest.raises(ConfigError):
        predict_orthoslices(np.zeros((3, 4, 5), np.float32), position_predictor, axes=(3,))
