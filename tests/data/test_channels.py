"""Input channels (thesis table 4.4): selection, repeated channels, RGB, mapping key, RGB masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from mediar3d.data.channels import parse_channels, prepare_channels
from mediar3d.data.mapping import load_mapping, mapping_to_dict
from mediar3d.errors import ConfigError, InputError
from mediar3d.io import read_labels


def _rgb(shape=(3, 8, 9), seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_selected_channels_come_in_the_given_order():
    image = _rgb()
    out = prepare_channels(image, has_channels=True, channels=[2, 0], in_channels=2)
    assert out.shape == (2, 8, 9)
    assert np.array_equal(out[0], image[2]) and np.array_equal(out[1], image[0])


def test_repeated_channels_collapse_to_one():
    grey = _rgb((8, 9))
    out = prepare_channels(np.stack([grey] * 3), has_channels=True, in_channels=2)
    assert out.shape == (1, 8, 9) and np.array_equal(out[0], grey)


def test_rgb_is_kept_for_three_inputs_and_averaged_for_one():
    image = _rgb()
    assert np.array_equal(prepare_channels(image, has_channels=True, in_channels=3), image)
    grey = prepare_channels(image, has_channels=True, in_channels=1)
    assert grey.shape == (1, 8, 9) and np.allclose(grey[0], image.mean(axis=0))


def test_a_single_channel_image_gets_a_channel_axis():
    image = _rgb((4, 8, 9))  # a volume, not channels
    out = prepare_channels(image, has_channels=False, in_channels=3)
    assert out.shape == (1, 4, 8, 9)


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": [0, 3], "in_channels": 2}, "channel.s. 3 do not exist"),
    ({"channels": None, "in_channels": 2}, "3 channels but the model takes 2"),
    ({"channels": [0, 1], "in_channels": 3}, "2 channels but the model takes 3"),
])
def test_channel_errors_name_the_file_and_the_fix(kwargs, message):
    with pytest.raises(InputError, match=message) as info:
        prepare_channels(_rgb(), has_channels=True, source="cells.tif", **kwargs)
    assert "cells.tif" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("value, expected", [("0,1", (0, 1)), ([2, 0], (2, 0)), (None, None), (" 1 ", (1,))])
def test_parse_channels(value, expected):
    assert parse_channels(value) == expected


@pytest.mark.parametrize("value", ["a,b", "0,0", "-1", [], [0.5]])
def test_parse_channels_refuses_bad_lists(value):
    with pytest.raises(InputError, match="channel"):
        parse_channels(value, "--channels")


def test_rgb_mask_with_repeated_channels_reads_as_one_label_image(tmp_path):
    labels = (np.arange(40 * 50).reshape(40, 50) % 7).astype(np.uint8)
    tifffile.imwrite(tmp_path / "mask.tif", np.repeat(labels[..., None], 3, axis=2), photometric="rgb")
    assert np.array_equal(read_labels(tmp_path / "mask.tif"), labels)
    colours = np.stack([labels, labels, (labels + 1) % 7], axis=-1).astype(np.uint8)
    tifffile.imwrite(tmp_path / "colour.tif", colours, photometric="rgb")
    with pytest.raises(InputError, match="3 different channels"):
        read_labels(tmp_path / "colour.tif")


def _mapping(tmp_path, **dataset):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "a_masks.tif", np.zeros((8, 8), np.uint8))
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"datasets": [{"name": "d", "pairs": [{"image": "a.tif", "label": "a_masks.tif"}],
                                              **dataset}]}))
    return path


def test_mapping_channels_round_trip(tmp_path):
    mapping = load_mapping(_mapping(tmp_path, channels=[1, 0]))
    assert mapping.datasets[0].channels == (1, 0)
    assert mapping_to_dict(mapping, tmp_path)["datasets"][0]["channels"] == [1, 0]


@pytest.mark.parametrize("dataset, message", [
    ({"channels": [0], "channel": 0}, "not both"),
    ({"channels": "0,1"}, "list of channel indices"),
    ({"channels": [0, 0]}, "distinct"),
])
def test_mapping_channels_errors(tmp_path, dataset, message):
    with pytest.raises(ConfigError, match=message):
        load_mapping(_mapping(tmp_path, **dataset))
