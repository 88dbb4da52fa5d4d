"""Sizes from file headers and metadata are checked before anything is allocated."""

import json

import numpy as np
import pytest

import mediar3d.io.memory
from mediar3d.errors import InputError
from mediar3d.io import read_image, write_image


@pytest.mark.parametrize("name", ["big.tif", "big.zarr"])
def test_a_file_declaring_more_than_this_machine_holds_is_refused_before_reading(tmp_path, monkeypatch, name):
    path = tmp_path / name
    write_image(path, np.zeros((4, 60, 60), np.uint8))
    monkeypatch.setattr(mediar3d.io.memory, "physical_memory", lambda: 10_000)   # a machine of 10 kB
    with pytest.raises(InputError, match=r"declares 4x60x60 uint8 .* more than this machine's memory"):
        read_image(path)


def test_an_ngff_axis_without_a_name_is_an_input_error(tmp_path):
    path = tmp_path / "v.ome.zarr"
    write_image(path, np.zeros((4, 8, 8), np.uint8), voxel_size=(2.0, 1.0, 1.0))
    edited = 0
    for meta in [*path.rglob(".zattrs"), *path.rglob("zarr.json")]:
        text = meta.read_text()
        if '"axes"' in text:
            obj = json.loads(text)
            holder = obj.get("attributes", obj)
            holder = holder.get("ome", holder)
            for axis in holder["multiscales"][0]["axes"]:
                axis.pop("name")
            meta.write_text(json.dumps(obj))
            edited += 1
    assert edited
    with pytest.raises(InputError, match="needs a \"name\""):
        read_image(path)
