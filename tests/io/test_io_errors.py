"""Bad input: one-line InputError naming the file and the problem; failed writes leave nothing."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

import mediar3d.io.image as image_module
from mediar3d.errors import InputError
from mediar3d.io import check_same_shape, read_image, read_labels, validate_image, write_image, write_labels


def _raises(func, *args, match: str, name: str | None = None, **kwargs) -> str:
    with pytest.raises(InputError, match=match) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    if name is not None:
        assert name in message
    return message


def _assert_only(folder, *names):
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_missing_file(tmp_path):
    _raises(read_image, tmp_path / "nope.tif", match="file not found", name="nope.tif")
    _raises(read_labels, tmp_path / "nope.zarr", match="file not found", name="nope.zarr")


def test_unsupported_extension(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    _raises(read_image, tmp_path / "x.png", match="unsupported file type", name="x.png")
    _raises(write_labels, tmp_path / "y.png", np.ones((4, 4), np.uint8), match="unsupported", name="y.png")
    _assert_only(tmp_path, "x.png")


def test_corrupt_tiff(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all" * 10)
    _raises(read_image, tmp_path / "bad.tif", match="cannot read TIFF", name="bad.tif")
    tifffile.imwrite(tmp_path / "cut.tif", np.ones((4, 64, 64), np.uint16), photometric="minisblack")
    data = (tmp_path / "cut.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 3])
    _raises(read_labels, tmp_path / "cut.tif", match="cannot read", name="cut.tif")


def test_corrupt_zarr(tmp_path):
    store = tmp_path / "bad.zarr"
    store.mkdir()
    (store / ".zgroup").write_text("{not json")
    _raises(read_image, store, match="cannot open as Zarr", name="bad.zarr")


def test_wrong_ndim(tmp_path):
    zarr.save_array(str(tmp_path / "line.zarr"), np.ones(50, np.uint8))
    _raises(read_image, tmp_path / "line.zarr", match="1 dimension", name="line.zarr")
    zarr.save_array(str(tmp_path / "six.zarr"), np.ones((2, 2, 2, 2, 4, 4), np.uint8))
    _raises(read_labels, tmp_path / "six.zarr", match="6 dimension", name="six.zarr")
    tifffile.imwrite(tmp_path / "movie.tif", np.ones((3, 4, 8, 8), np.uint8), imagej=True,
                     metadata={"axes": "TZYX"})
    _raises(read_image, tmp_path / "movie.tif", match="3 time points.*--timepoints", name="movie.tif")
    _raises(write_labels, tmp_path / "l.tif", np.ones((2, 2, 3, 3), np.uint8), match="4 dimensions")
    _assert_only(tmp_path, "line.zarr", "six.zarr", "movie.tif")


def test_empty_image(tmp_path):
    zarr.save_array(str(tmp_path / "empty.zarr"), np.zeros((0, 8, 8), np.uint8))
    _raises(read_image, tmp_path / "empty.zarr", match="empty", name="empty.zarr")


def test_nan_images(tmp_path):
    nan = np.full((3, 8, 8), np.nan, np.float32)
    tifffile.imwrite(tmp_path / "nan.tif", nan, photometric="minisblack")
    _raises(read_image, tmp_path / "nan.tif", match="all NaN", name="nan.tif")
    some = np.ones((3, 8, 8), np.float32)
    some[1, 2, 3] = np.nan
    tifffile.imwrite(tmp_path / "some.tif", some, photometric="minisblack")
    _raises(read_image, tmp_path / "some.tif", match="1 NaN", name="some.tif")
    _raises(write_image, tmp_path / "out.tif", some, match="NaN", name="out.tif")
    _raises(validate_image, np.array([[np.inf, 1.0]]), match="infinite", name="<array>")
    _assert_only(tmp_path, "nan.tif", "some.tif")


def test_float_and_negative_labels(tmp_path):
    probs = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    tifffile.imwrite(tmp_path / "probs.tif", probs, photometric="minisblack")
    _raises(read_labels, tmp_path / "probs.tif", match="non-integer", name="probs.tif")
    _raises(write_labels, tmp_path / "out.zarr", probs, match="non-integer", name="out.zarr")
    neg = np.zeros((3, 8, 8), np.int16)
    neg[0, 0, 0] = -5
    tifffile.imwrite(tmp_path / "neg.tif", neg, photometric="minisblack")
    _raises(read_labels, tmp_path / "neg.tif", match="negative", name="neg.tif")
    _raises(write_labels, tmp_path / "out.tif", neg, match="negative", name="out.tif")
    _assert_only(tmp_path, "probs.tif", "neg.tif")


def test_whole_number_float_labels_are_accepted(tmp_path):
    lab = np.zeros((3, 8, 8), np.float32)
    lab[1, 2:4, 2:4] = 7
    tifffile.imwrite(tmp_path / "f.tif", lab, photometric="minisblack")
    back = read_labels(tmp_path / "f.tif")
    assert back.dtype.kind == "u" and back.max() == 7


def test_shape_mismatch():
    msg = _raises(check_same_shape, np.zeros((4, 10, 10)), np.zeros((4, 10, 9), np.uint16),
                  image_source="img.tif", labels_source="lab.tif", match="does not match", name="lab.tif")
    assert "img.tif" in msg and "4x10x9" in msg
    check_same_shape(np.zeros((2, 4, 10, 10)), np.zeros((4, 10, 10)))  # channels first is fine
    _raises(check_same_shape, (5, 10, 10), (4, 10, 10), match="does not match")


def test_channel_out_of_range(tmp_path):
    tifffile.imwrite(tmp_path / "two.tif", np.ones((5, 2, 8, 8), np.uint16), imagej=True,
                     metadata={"axes": "ZCYX"})
    _raises(read_image, tmp_path / "two.tif", channel=2, match="channel 2 is out of range", name="two.tif")
    _raises(read_image, tmp_path / "two.tif", channel=-1, match="out of range")
    tifffile.imwrite(tmp_path / "one.tif", np.ones((5, 8, 8), np.uint16), photometric="minisblack")
    _raises(read_image, tmp_path / "one.tif", channel=1, match="single channel", name="one.tif")
    assert read_image(tmp_path / "one.tif", channel=0).data.shape == (5, 8, 8)


def test_bad_axes_argument(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", np.ones((5, 8, 8), np.uint16), photometric="minisblack")
    _raises(read_image, tmp_path / "v.tif", axes="ZY", match="2 letters", name="v.tif")
    _raises(read_image, tmp_path / "v.tif", axes="ZQX", match="unknown axis")


def test_failed_write_leaves_no_file_and_keeps_old(tmp_path, monkeypatch):
    old = np.full((2, 6, 6), 4, np.uint16)
    write_labels(tmp_path / "l.tif", old)
    write_labels(tmp_path / "l.zarr", old)

    def broken_tiff(path, *args, **kwargs):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    def broken_zarr(path, *args, **kwargs):
        path.mkdir()
        (path / "junk").write_text("partial")
        raise OSError("disk full")

    monkeypatch.setattr(image_module, "write_tiff", broken_tiff)
    monkeypatch.setattr(image_module, "write_zarr", broken_zarr)
    for name in ("l.tif", "l.zarr", "new.tif", "new.ome.zarr", "sub/dir/new.tif"):
        with pytest.raises(OSError, match="disk full"):
            write_labels(tmp_path / name, np.ones((2, 6, 6), np.uint8))
    _assert_only(tmp_path, "l.tif", "l.zarr")
    monkeypatch.undo()
    np.testing.assert_array_equal(read_labels(tmp_path / "l.tif"), old)
    np.testing.assert_array_equal(read_labels(tmp_path / "l.zarr"), old)
