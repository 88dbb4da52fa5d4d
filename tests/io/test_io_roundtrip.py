"""Round trips through TIFF, OME-TIFF, Zarr and OME-Zarr; axes and voxel-size metadata."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from mediar3d.io import (create_zarr, open_zarr_lazy, read_image, read_labels, write_image, write_labels,
                         zarr_axes_and_voxel_size)

FORMATS = ["labels.tif", "labels.ome.tif", "labels.zarr", "labels.ome.zarr"]


def _labels(shape=(5, 24, 32), seed=0, top=None):
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 50, size=shape).astype(np.int64)
    if top is not None:
        lab[0, 0, :3] = [top, top - 1, 40000]
    return lab


@pytest.mark.parametrize("name", FORMATS)
def test_labels_roundtrip_uint16(tmp_path, name):
    lab = _labels()
    path = tmp_path / name
    write_labels(path, lab, voxel_size=(2.0, 0.25, 0.5))
    back = read_labels(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, lab)
    image = read_image(path)
    assert image.axes == "ZYX"
    assert image.voxel_size == pytest.approx((2.0, 0.25, 0.5))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


@pytest.mark.parametrize("name", FORMATS)
def test_labels_above_65535_are_uint32(tmp_path, name):
    lab = _labels(top=70001)
    path = tmp_path / name
    write_labels(path, lab)
    back = read_labels(path)
    assert back.dtype == np.uint32
    assert back.max() == 70001
    np.testing.assert_array_equal(back, lab)


def test_int16_labels_are_never_written_signed(tmp_path):
    lab = _labels().astype(np.int16)
    write_labels(tmp_path / "a.tif", lab)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.series[0].dtype == np.uint16


def test_2d_labels_and_uncalibrated(tmp_path):
    lab = _labels((1, 30, 20))[0]
    for name in ("a.tif", "a.zarr"):
        write_labels(tmp_path / name, lab)
        image = read_image(tmp_path / name)
        assert image.axes == "YX" and image.data.shape == (30, 20)
        assert image.voxel_size is None


@pytest.mark.parametrize("name", ["flows.tif", "flows.ome.tif", "flows.zarr"])
def test_write_image_float_channels(tmp_path, name):
    rng = np.random.default_rng(1)
    flows = rng.normal(size=(3, 4, 16, 12))
    write_image(tmp_path / name, flows, voxel_size=(3.0, 1.0, 1.0))
    image = read_image(tmp_path / name)
    assert image.axes == "CZYX" and image.data.dtype == np.float32
    np.testing.assert_allclose(image.data, flows.astype(np.float32))
    assert image.voxel_size == pytest.approx((3.0, 1.0, 1.0))
    dz = read_image(tmp_path / name, channel=0)
    assert dz.axes == "ZYX"
    np.testing.assert_allclose(dz.data, flows[0].astype(np.float32))


@pytest.mark.parametrize("n_slices,kwargs", [
    (2, {"photometric": "minisblack"}), (4, {"photometric": "minisblack"}),
    (3, {"photometric": "rgb", "planarconfig": "separate"}),  # what older writers make of 3 planes
    (4, {"photometric": "rgb", "planarconfig": "separate", "extrasamples": ["unspecified"]}),
])
def test_few_slices_are_a_volume_not_channels(tmp_path, n_slices, kwargs):
    vol = np.arange(n_slices * 10 * 12, dtype=np.uint8).reshape(n_slices, 10, 12)
    tifffile.imwrite(tmp_path / "v.tif", vol, **kwargs)
    image = read_image(tmp_path / "v.tif")
    assert image.axes == "ZYX"
    np.testing.assert_array_equal(image.data, vol)


def test_rgb_pixels_are_channels(tmp_path):
    rgb = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    image = read_image(tmp_path / "c.tif", channel=2)
    assert image.axes == "YX"
    np.testing.assert_array_equal(image.data, rgb[..., 2])


def test_imagej_hyperstack_channels(tmp_path):
    rng = np.random.default_rng(2)
    zcyx = rng.integers(0, 1000, size=(6, 2, 10, 12)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "h.tif", zcyx, imagej=True, resolution=(1 / 0.4, 1 / 0.4),
                     metadata={"axes": "ZCYX", "spacing": 1.6, "unit": "um"})
    image = read_image(tmp_path / "h.tif", channel=1)
    assert image.axes == "ZYX"
    np.testing.assert_array_equal(image.data, zcyx[:, 1])
    assert image.voxel_size == pytest.approx((1.6, 0.4, 0.4))
    both = read_image(tmp_path / "h.tif")
    assert both.axes == "CZYX" and both.n_channels == 2
    np.testing.assert_array_equal(both.data, zcyx.transpose(1, 0, 2, 3))


def test_imagej_stack_without_axes_is_a_z_stack(tmp_path):
    """tifffile's imwrite(..., imagej=True) with no axes records N "channels"; Fiji shows a z-stack."""
    from mediar3d.io import open_image_lazy

    labels = _labels(shape=(16, 48, 48)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "lab.tif", labels, imagej=True)
    np.testing.assert_array_equal(read_labels(tmp_path / "lab.tif"), labels)
    image = read_image(tmp_path / "lab.tif")
    assert image.axes == "ZYX" and image.data.shape == (16, 48, 48)
    assert open_image_lazy(tmp_path / "lab.tif").axes == "ZYX"


def test_imagej_few_or_composite_channels_stay_channels(tmp_path):
    planes = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    tifffile.imwrite(tmp_path / "three.tif", planes, imagej=True)
    assert read_image(tmp_path / "three.tif").axes == "CYX"
    many = np.zeros((9, 8, 8), np.uint16)
    tifffile.imwrite(tmp_path / "composite.tif", many, imagej=True, metadata={"axes": "CYX", "mode": "composite"})
    assert read_image(tmp_path / "composite.tif").axes == "CYX"


def test_ome_tiff_nanometres(tmp_path):
    vol = np.ones((3, 8, 9), np.float32)
    tifffile.imwrite(tmp_path / "o.ome.tif", vol, ome=True, photometric="minisblack",
                     metadata={"axes": "ZYX", "PhysicalSizeZ": 1500.0, "PhysicalSizeZUnit": "nm",
                               "PhysicalSizeY": 200.0, "PhysicalSizeYUnit": "nm",
                               "PhysicalSizeX": 200.0, "PhysicalSizeXUnit": "nm"})
    assert read_image(tmp_path / "o.ome.tif").voxel_size == pytest.approx((1.5, 0.2, 0.2))


def test_caller_axes_override(tmp_path):
    zyx = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    tifffile.imwrite(tmp_path / "yxz.tif", zyx.transpose(1, 2, 0), photometric="minisblack")
    image = read_image(tmp_path / "yxz.tif", axes="YXZ")
    assert image.axes == "ZYX"
    np.testing.assert_array_equal(image.data, zyx)


def test_plain_zarr_array_and_lazy_open(tmp_path):
    vol = np.arange(3 * 20 * 10, dtype=np.uint16).reshape(3, 20, 10)
    zarr.save_array(str(tmp_path / "plain.zarr"), vol)
    image = read_image(tmp_path / "plain.zarr")
    assert image.axes == "ZYX"
    np.testing.assert_array_equal(image.data, vol)
    write_labels(tmp_path / "l.ome.zarr", vol, voxel_size=(4.0, 1.0, 1.0), chunks=(1, 10, 10))
    lazy = open_zarr_lazy(tmp_path / "l.ome.zarr")
    assert isinstance(lazy, zarr.Array) and not isinstance(lazy, np.ndarray)
    assert lazy.shape == vol.shape and tuple(lazy.chunks) == (1, 10, 10)
    np.testing.assert_array_equal(lazy[1:2, 5:15], vol[1:2, 5:15])
    axes, voxel = zarr_axes_and_voxel_size(tmp_path / "l.ome.zarr")
    assert axes == "ZYX" and voxel == pytest.approx({"Z": 4.0, "Y": 1.0, "X": 1.0})


def test_ngff_metadata_written(tmp_path):
    write_labels(tmp_path / "l.ome.zarr", np.ones((2, 8, 8), np.uint8), voxel_size=(2.0, 0.5, 0.5))
    attrs = zarr.open_group(str(tmp_path / "l.ome.zarr"), mode="r").attrs
    ms = attrs["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["type"] == "space" and a["unit"] == "micrometer" for a in ms["axes"])
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.5, 0.5]


def test_ngff_05_multichannel(tmp_path):
    """An NGFF 0.5 (zarr v3) image with a translation and a multiscale-level scale."""
    if int(zarr.__version__.split(".")[0]) < 3:
        pytest.skip("NGFF 0.5 needs zarr v3")
    data = np.random.default_rng(3).random((2, 3, 8, 8)).astype(np.float32)
    group = zarr.open_group(str(tmp_path / "i.ome.zarr"), mode="w", zarr_format=3)
    group.create_array("s0", data=data)
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "c", "type": "channel"}, {"name": "z", "type": "space", "unit": "micrometer"},
                 {"name": "y", "type": "space", "unit": "nanometer"},
                 {"name": "x", "type": "space", "unit": "nanometer"}],
        "datasets": [{"path": "s0", "coordinateTransformations": [
            {"type": "scale", "scale": [1, 2.0, 100.0, 100.0]}, {"type": "translation", "translation": [0, 5, 5, 5]}]}],
        "coordinateTransformations": [{"type": "scale", "scale": [1, 1.5, 2.0, 2.0]}]}]}
    image = read_image(tmp_path / "i.ome.zarr", channel=1)
    assert image.axes == "ZYX"
    np.testing.assert_array_equal(image.data, data[1])
    assert image.voxel_size == pytest.approx((3.0, 0.2, 0.2))


def test_create_zarr_blockwise_then_overwrite(tmp_path):
    out = create_zarr(tmp_path / "big.zarr", (4, 30, 30), np.uint32, axes="ZYX", labels=True)
    out[0:2] = 7
    assert read_labels(tmp_path / "big.zarr")[:2].min() == 7
    write_labels(tmp_path / "big.zarr", np.full((2, 5, 5), 3, np.uint8))
    back = read_labels(tmp_path / "big.zarr")
    assert back.shape == (2, 5, 5) and back.max() == 3
    assert [p.name for p in tmp_path.iterdir()] == ["big.zarr"]


def test_ome_zarr_output_has_a_pyramid(tmp_path):
    """Plain OME-Zarr outputs get levels halving y, x (labels: every other pixel; images: 2 x 2 means)."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 9, size=(3, 260, 140)).astype(np.uint16)
    write_labels(tmp_path / "l.ome.zarr", labels, voxel_size=(2.0, 0.5, 0.5))
    group = zarr.open_group(str(tmp_path / "l.ome.zarr"), mode="r")
    datasets = group.attrs["multiscales"][0]["datasets"]
    assert [d["path"] for d in datasets] == ["0", "1"]  # 140 -> 70 -> (35 < 64: stop)
    assert [d["coordinateTransformations"][0]["scale"] for d in datasets] == [[2.0, 0.5, 0.5], [2.0, 1.0, 1.0]]
    np.testing.assert_array_equal(group["1"][...], labels[:, ::2, ::2])
    np.testing.assert_array_equal(read_labels(tmp_path / "l.ome.zarr"), labels)  # level 0 is what is read
    image = rng.random((2, 3, 257, 300)).astype(np.float32)
    write_image(tmp_path / "i.ome.zarr", image, axes="CZYX")
    group = zarr.open_group(str(tmp_path / "i.ome.zarr"), mode="r")
    assert [group[str(i)].shape for i in range(3)] == [(2, 3, 257, 300), (2, 3, 128, 150), (2, 3, 64, 75)]
    assert "3" not in group
    np.testing.assert_allclose(group["1"][1, 2, 5, 7], image[1, 2, 10:12, 14:16].mean(), rtol=1e-6)
    small = np.arange(2 * 100 * 100, dtype=np.uint16).reshape(2, 100, 100)
    write_image(tmp_path / "s.ome.zarr", small)
    assert [d["path"] for d in zarr.open_group(str(tmp_path / "s.ome.zarr"), mode="r")
            .attrs["multiscales"][0]["datasets"]] == ["0"]


def test_add_pyramid_to_a_store_written_block_by_block(tmp_path):
    """add_pyramid reads a few planes at a time and gives the levels write_labels would have written."""
    from mediar3d.io.zarr_io import add_pyramid

    labels = np.random.default_rng(6).integers(0, 5, size=(7, 300, 260)).astype(np.uint32)
    out = create_zarr(tmp_path / "big.ome.zarr", labels.shape, labels.dtype, axes="ZYX", labels=True,
                      voxel_size=(1.0, 0.25, 0.25))
    out[...] = labels
    assert add_pyramid(tmp_path / "big.ome.zarr", slab_voxels=2 * 300 * 260) == 3  # 2 planes per slab
    write_labels(tmp_path / "whole.ome.zarr", labels, voxel_size=(1.0, 0.25, 0.25))
    blocked = zarr.open_group(str(tmp_path / "big.ome.zarr"), mode="r")
    whole = zarr.open_group(str(tmp_path / "whole.ome.zarr"), mode="r")
    assert blocked.attrs["multiscales"][0]["datasets"] == whole.attrs["multiscales"][0]["datasets"]
    for level in ("1", "2"):
        np.testing.assert_array_equal(blocked[level][...], whole[level][...])
