"""Sliding-window prediction equals whole-slice prediction; TTA negates flipped flows."""

import numpy as np
import pytest
import torch

from mediar3d.inference.tiling import gaussian_weight, predict_slices, tile_starts
from mediar3d.inference.tta import flip_average


def conv_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, 3, 3, padding=1))
    return net.eval()


def test_tile_starts_cover_with_overlap():
    for size, tile in [(100, 32), (64, 64), (257, 96), (40, 64)]:
        starts = tile_starts(size, tile, 0.25)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered.all() and starts[0] == 0 and min(starts[-1] + tile, size) == size
        assert all(b - a <= int(tile * 0.75) for a, b in zip(starts, starts[1:]))


def test_gaussian_weight_positive_and_centred():
    w = gaussian_weight(32, 48)
    assert w.shape == (32, 48) and w.min() > 0
    assert np.unravel_index(w.argmax(), w.shape) in {(15, 23), (15, 24), (16, 23), (16, 24)}


def test_pointwise_network_tiled_equals_untiled_exactly():
    net = torch.nn.Conv2d(1, 3, 1).eval()
    images = np.random.default_rng(0).random((3, 150, 200)).astype(np.float32)
    whole = predict_slices(images, net, tile=256, batch_size=2)
    tiled = predict_slices(images, net, tile=64, overlap=0.25, batch_size=5)
    assert whole.shape == tiled.shape == (3, 3, 150, 200)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_conv_network_tiled_matches_untiled_within_tolerance():
    net = conv_net()
    images = np.random.default_rng(1).random((2, 160, 224)).astype(np.float32)
    whole = predict_slices(images, net, tile=256)
    tiled = predict_slices(images, net, tile=64, overlap=0.5, batch_size=3)
    error = np.abs(tiled - whole)
    assert error.mean() < 1e-4 and error.max() < 5e-3
    # without blending weights the seams would show: check the comparison is sensitive
    shifted = predict_slices(images[:, :, ::-1].copy(), net, tile=256)
    assert np.abs(shifted - whole).mean() > 10 * error.mean()


def test_small_slices_are_padded_and_cropped():
    net = conv_net(2)
    images = np.random.default_rng(2).random((5, 20, 45)).astype(np.float32)
    out = predict_slices(images, net, tile=256, batch_size=2)
    assert out.shape == (5, 3, 20, 45)
    one = predict_slices(images[3:4], net, tile=256)
    np.testing.assert_allclose(out[3:4], one, atol=1e-5)


class RampNet(torch.nn.Module):
    """Outputs dy = +1, dx = image gradient-free constant 2, logit = image: not flip-equivariant."""

    def forward(self, x):
        ones = torch.ones_like(x)
        return torch.cat([ones, 2 * ones, x], dim=1)


class GradientNet(torch.nn.Module):
    """dy, dx = centred differences of the image: flip-equivariant with negation."""

    def forward(self, x):
        pad = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
        dy = (pad[:, :, 2:, 1:-1] - pad[:, :, :-2, 1:-1]) / 2
        dx = (pad[:, :, 1:-1, 2:] - pad[:, :, 1:-1, :-2]) / 2
        return torch.cat([dy, dx, x], dim=1)


def test_tta_negates_flipped_components():
    x = torch.rand(2, 1, 16, 20)
    out = flip_average(RampNet(), x)
    # dy is +1 for no flip and W flip, -1 after undoing H flips: mean 0; same for dx
    assert torch.allclose(out[:, 0], torch.zeros_like(out[:, 0]), atol=1e-6)
    assert torch.allclose(out[:, 1], torch.zeros_like(out[:, 1]), atol=1e-6)
    assert torch.allclose(out[:, 2], x[:, 0], atol=1e-6)


def test_tta_keeps_an_equivariant_network_unchanged():
    x = torch.rand(1, 1, 24, 24)
    net = GradientNet()
    assert torch.allclose(flip_average(net, x), net(x), atol=1e-6)


@pytest.mark.parametrize("bad", [dict(tile=8), dict(overlap=0.95), dict(batch_size=0)])
def test_bad_tiling_options_raise(bad):
    from mediar3d.errors import ConfigError

    with pytest.raises(ConfigError):
        predict_slices(np.zeros((1, 32, 32), np.float32), torch.nn.Conv2d(1, 3, 1), **bad)


def test_default_tile_feeds_slices_up_to_its_side_whole_and_the_cli_agrees():
    """Slices up to DEFAULT_TILE go through the network in one window; larger ones are cut."""
    from mediar3d.cli.main import build_parser
    from mediar3d.inference.tiling import DEFAULT_TILE

    seen = []

    def net_fn(batch: torch.Tensor) -> torch.Tensor:
        seen.extend([tuple(batch.shape[-2:])] * batch.shape[0])  # one entry per window
        return torch.zeros((batch.shape[0], 3, *batch.shape[-2:]))

    predict_slices(np.zeros((2, 300, 290), np.float32), net_fn)
    assert DEFAULT_TILE >= 300 and seen == [(320, 320)] * 2  # padded to the divisor, not windowed
    seen.clear()
    predict_slices(np.zeros((1, DEFAULT_TILE + 64, 64), np.float32), net_fn)
    assert len(seen) > 1 and max(h for h, _ in seen) <= DEFAULT_TILE
    parser = build_parser()
    assert parser.parse_args(["segment", "x.tif", "-o", "out"]).tile == DEFAULT_TILE
    assert parser.parse_args(["tune", "--model", "default", "--image", "x.tif", "--labels", "y.tif"]).tile == DEFAULT_TILE
