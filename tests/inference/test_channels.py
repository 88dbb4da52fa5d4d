"""Segmenting multi-channel input: the channels reach the network in the chosen order, in every mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mediar3d.errors import InputError
from mediar3d.evaluation import average_precision
from mediar3d.inference import run_segmentation

from helpers import OracleNet2D, blob_volume


class FirstChannelOracle(OracleNet2D):
    """A 2-input network that segments the bright blobs of its first input channel only."""

    in_channels = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 2, x.shape
        return super().forward(x[:, :1])


def _ap50(gt, pred):
    value = average_precision(gt, pred, thresholds=(0.5,))
    value = value[0] if isinstance(value, tuple) else value
    return float(np.asarray(value).ravel()[0])


@pytest.fixture(scope="module")
def two_channels():
    image, labels = blob_volume((24, 48, 48), spacing=14, radius=4.5)
    membrane = 1.0 - image  # bright background, dark nuclei: the wrong channel to segment
    return np.stack([membrane, image]), labels


def test_channels_choose_and_order_the_network_inputs(two_channels):
    volume, labels = two_channels
    good = run_segmentation(volume, FirstChannelOracle(), channels=[1, 0], progress=False, diameter=9.0,
                            model_diameter=9.0)
    assert good.labels.shape == labels.shape and _ap50(labels, good.labels) >= 0.9
    assert good.params["channels"] == [1, 0] and good.params["input_shape"] == list(labels.shape)
    swapped = run_segmentation(volume, FirstChannelOracle(), channels=[0, 1], progress=False, diameter=9.0,
                               model_diameter=9.0)
    assert _ap50(labels, swapped.labels) < 0.5


def test_diameter_is_estimated_on_multichannel_input(two_channels):
    volume, labels = two_channels
    result = run_segmentation(volume[::-1].copy(), FirstChannelOracle(), progress=False, model_diameter=9.0)
    assert result.params["diameter_estimated"] and 7.0 < result.params["diameter"] < 11.0  # balls of radius ~4.5
    assert _ap50(labels, result.labels) >= 0.8


def test_2d_image_with_channels(two_channels):
    volume, labels = two_channels
    plane = volume[:, 12]
    result = run_segmentation(plane, FirstChannelOracle(), channels=[1, 0], do_3d=False, progress=False,
                              diameter=9.0, model_diameter=9.0)
    assert result.labels.shape == plane.shape[1:] and result.labels.max() >= 3


def test_wrong_channel_count_is_one_line(two_channels):
    volume, _ = two_channels
    with pytest.raises(InputError, match="3 channels but the model takes 2"):
        run_segmentation(np.concatenate([volume, volume[:1] * 0.5]), FirstChannelOracle(), progress=False)
    with pytest.raises(InputError, match="channel.s. 2 do not exist"):
        run_segmentation(volume, FirstChannelOracle(), channels=[0, 2], progress=False)
