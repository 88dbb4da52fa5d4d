"""Lazy opening of Zarr, OME-Zarr and TIFF: axes-aware (z, y, x) views that read only what is sliced."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from mediar3d.errors import InputError
from mediar3d.io import open_image_lazy, read_image, write_image


def _volume(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 5000, size=shape).astype(np.uint16)


def test_imagej_zcyx_tiff_view(tmp_path):
    zcyx = _volume((6, 2, 20, 24))
    tifffile.imwrite(tmp_path / "h.tif", zcyx, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "um"})
    lazy = open_image_lazy(tmp_path / "h.tif")
    assert lazy.axes == "ZCYX" and lazy.voxel_size == pytest.approx((2.0, 0.5, 0.5))
    view = lazy.view(channel=1)
    assert view.shape == (6, 20, 24) and view.axes == "ZYX"
    np.testing.assert_array_equal(view[1:4, 5:9, ::2], zcyx[1:4, 1, 5:9, ::2])
    np.testing.assert_array_equal(view[2], zcyx[2, 1])
    both = lazy.view()
    assert both.axes == "CZYX" and both.shape == (2, 6, 20, 24)
    np.testing.assert_array_equal(both[:, -1, 3:5], zcyx[-1, :, 3:5])
    np.testing.assert_array_equal(np.asarray(both), read_image(tmp_path / "h.tif").data)


def test_ome_zarr_tczyx_view(tmp_path):
    data = _volume((1, 3, 5, 16, 16), seed=1)
    write_image(tmp_path / "c.ome.zarr", data[0], voxel_size=(3.0, 0.5, 0.5))
    lazy = open_image_lazy(tmp_path / "c.ome.zarr")
    assert isinstance(lazy.array, zarr.Array)
    assert lazy.axes == "CZYX" and lazy.voxel_size == pytest.approx((3.0, 0.5, 0.5))
    np.testing.assert_array_equal(lazy.view(channel=2)[..., 4:8], data[0, 2, :, :, 4:8])
    group = zarr.open_group(str(tmp_path / "t.zarr"), mode="w")
    group.create_array("0", data=data)
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": n} for n in "tczyx"],
                                   "datasets": [{"path": "0"}]}]
    view = open_image_lazy(tmp_path / "t.zarr").view(channel=0)
    assert view.shape == (5, 16, 16)
    np.testing.assert_array_equal(view[:, 2:3], data[0, 0, :, 2:3])


def test_plain_tiff_few_slices_lazy(tmp_path):
    vol = _volume((3, 16, 16))
    tifffile.imwrite(tmp_path / "v.tif", vol, photometric="minisblack")
    lazy = open_image_lazy(tmp_path / "v.tif")
    assert lazy.axes == "ZYX" and lazy.voxel_size is None
    np.testing.assert_array_equal(lazy.view()[:, 4], vol[:, 4])


def test_lazy_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        open_image_lazy(tmp_path / "none.zarr")
    (tmp_path / "bad.tif").write_bytes(b"garbage" * 20)
    with pytest.raises(InputError, match="bad.tif: cannot read TIFF"):
        open_image_lazy(tmp_path / "bad.tif")
    write_image(tmp_path / "c.zarr", _volume((2, 3, 8, 8)))
    with pytest.raises(InputError, match="channel 2 is out of range"):
        open_image_lazy(tmp_path / "c.zarr").view(channel=2)
    with pytest.raises(IndexError):
        open_image_lazy(tmp_path / "c.zarr").view(channel=0)[[0, 1]]
