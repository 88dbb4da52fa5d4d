"""Format-independent reading and writing of images and label volumes."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mediar3d.errors import InputError
from mediar3d.io.atomic import atomic_output
from mediar3d.io.axes import to_spatial
from mediar3d.io.hdf5 import read_hdf5, split_hdf5_path
from mediar3d.io.tiff import read_tiff, write_tiff
from mediar3d.io.validate import label_dtype, validate_image, validate_labels
from mediar3d.io.zarr_io import is_zarr, read_zarr, write_zarr

__all__ = ["Image", "read_image", "read_labels", "write_labels", "write_image", "image_format"]

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
SUPPORTED = ".tif, .tiff, .ome.tif, .zarr, .ome.zarr (input also .h5[:/dataset])"


@dataclass
class Image:
    """An image read from disk.

    Attributes:
        data: array with axes ``axes``: (z, y, x) or (y, x), channels first (``CZYX``/``CYX``)
            only when the file has several channels and none was selected.
        axes: axis letters of ``data``, e.g. ``"ZYX"``.
        voxel_size: physical voxel size in micrometres in (z, y, x) / (y, x) order, or None
            when the file is not calibrated.
        path: the file read (None for in-memory images).
    """

    data: np.ndarray
    axes: str
    voxel_size: tuple[float, ...] | None = None
    path: Path | None = None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the spatial axes, (z, y, x) or (y, x)."""
        return tuple(s for s, a in zip(self.data.shape, self.axes) if a in "ZYX")

    @property
    def n_channels(self) -> int:
        """Number of channels kept in ``data`` (1 when there is no channel axis)."""
        return self.data.shape[self.axes.index("C")] if "C" in self.axes else 1


def image_format(path: str | os.PathLike) -> str:
    """Return ``"tiff"``, ``"zarr"`` or ``"hdf5"`` (``file.h5[:/dataset]``) from a path's extension."""
    p = Path(path)
    if split_hdf5_path(path) is not None:
        return "hdf5"
    if p.suffix.lower() in TIFF_SUFFIXES:
        return "tiff"
    if is_zarr(p):
        return "zarr"
    raise InputError(f"{p}: unsupported file type {p.suffix or '(no extension)'!r}; use one of {SUPPORTED}")


def _read_raw(path: Path, axes: str | None) -> tuple[np.ndarray, str, dict[str, float]]:
    fmt = image_format(path)
    if fmt == "hdf5":
        return read_hdf5(path, axes)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if fmt == "tiff":
        if path.is_dir():
            raise InputError(f"{path}: is a folder, expected a TIFF file")
        return read_tiff(path, axes)
    return read_zarr(path, axes)


def read_image(path: str | os.PathLike, *, channel: int | None = None, axes: str | None = None) -> Image:
    """Read a 2D or 3D image (TIFF, OME-TIFF, ImageJ TIFF, Zarr, OME-Zarr).

    Axes come from ``axes`` when given (the stored order, e.g. ``"ZCYX"``), else from
    OME / ImageJ / NGFF metadata, else are inferred: a 3D array without metadata is always a
    volume (z, y, x), never channels. Singleton axes are dropped.

    Args:
        path: image file or Zarr folder.
        channel: index of the channel to keep; None keeps all channels (channels first) when
            there are several.
        axes: axis letters of the stored array (overrides metadata).

    Returns:
        :class:`Image` with ``data`` in (z, y, x) / (y, x) order (``C`` first if kept) and the
        voxel size in micrometres, (z, y, x) order, when the file is calibrated.

    Raises:
        InputError: missing / unreadable file, wrong ndim, empty or NaN image, bad channel.
    """
    p = Path(path)
    raw, raw_axes, voxel = _read_raw(p, axes)
    data, out_axes = to_spatial(raw, raw_axes, channel=channel, source=p)
    spatial = [a for a in out_axes if a in "ZYX"]
    validate_image(data, p, ndims=(2, 3, 4) if "C" in out_axes else (2, 3))
    if len(spatial) not in (2, 3):
        raise InputError(f"{p}: image has {len(spatial)} spatial dimensions (axes {out_axes}); expected 2D or 3D")
    voxel_size = tuple(voxel[a] for a in spatial) if all(a in voxel for a in spatial) else None
    if voxel and voxel_size is None:
        logger.info("%s: voxel size only partly calibrated (%s); ignoring it", p, voxel)
    return Image(data=data, axes=out_axes, voxel_size=voxel_size, path=p)


def read_labels(path: str | os.PathLike, *, axes: str | None = None) -> np.ndarray:
    """Read an instance label image (0 = background) and validate it.

    Args:
        path: TIFF or Zarr label file.
        axes: axis letters of the stored array (overrides metadata).

    Returns:
        Integer array, (z, y, x) or (y, x).

    Raises:
        InputError: missing / unreadable file, several different channels (repeated ones, an
            RGB mask, collapse to one), float or negative labels.
    """
    p = Path(path)
    raw, raw_axes, _ = _read_raw(p, axes)
    data, out_axes = to_spatial(raw, raw_axes, channel=None, source=p)
    if "C" in out_axes:
        if not all(np.array_equal(data[0], data[c]) for c in range(1, data.shape[0])):
            raise InputError(f"{p}: label image has {data.shape[0]} different channels (axes {out_axes}); expected one")
        data = data[0]  # a mask stored as RGB: its repeated channels collapse (thesis table 4.4)
    return validate_labels(data, p)


def _output_axes(ndim: int, axes: str | None, path: Path) -> str:
    if axes is not None:
        axes = axes.upper()
        if len(axes) != ndim or set(axes) - set("CZYX") or len(set(axes)) != len(axes) or not axes.endswith("YX"):
            raise InputError(f"{path}: axes {axes!r} do not fit an array of {ndim} dimensions "
                             f"(use e.g. 'ZYX' or 'CZYX')")
        return axes
    if ndim not in (2, 3, 4):
        raise InputError(f"{path}: cannot write an array of {ndim} dimensions; expected 2D, 3D or 4D (C, Z, Y, X)")
    return {2: "YX", 3: "ZYX", 4: "CZYX"}[ndim]


def _write(path: Path, data: np.ndarray, axes: str, voxel_size: Sequence[float] | None, *,
           labels: bool, chunks: Sequence[int] | None) -> None:
    fmt = image_format(path)
    if voxel_size is not None:
        n_spatial = sum(a in "ZYX" for a in axes)
        if len(tuple(voxel_size)) != n_spatial or not all(float(v) > 0 for v in voxel_size):
            raise InputError(f"{path}: voxel_size {tuple(voxel_size)!r} must be {n_spatial} positive numbers "
                             f"in (z, y, x) order")
        voxel_size = tuple(float(v) for v in voxel_size)
    with atomic_output(path, directory=(fmt == "zarr")) as temp:
        if fmt == "tiff":
            ome = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
            write_tiff(temp, data, axes, voxel_size, ome=ome, compress=labels)
        else:
            write_zarr(temp, data, axes, voxel_size, chunks=chunks, labels=labels, name=path.name)
    logger.info("wrote %s (%s, %s)", path, "x".join(map(str, data.shape)), data.dtype)


def write_labels(path: str | os.PathLike, labels: np.ndarray, *, voxel_size: Sequence[float] | None = None,
                 chunks: Sequence[int] | None = None) -> None:
    """Write an instance label image atomically as TIFF or (OME-)Zarr, chosen by extension.

    Labels are stored as uint16, or uint32 when the largest label exceeds 65535 (never a
    signed type). The file appears only once completely written.

    Args:
        path: ``.tif`` / ``.tiff`` / ``.ome.tif`` / ``.zarr`` / ``.ome.zarr``.
        labels: integer labels, (z, y, x) or (y, x); 0 is background.
        voxel_size: physical voxel size in micrometres, (z, y, x) / (y, x) order.
        chunks: Zarr chunk shape (default about 1 M voxels).

    Raises:
        InputError: bad labels, unsupported extension, bad voxel size.
    """
    p = Path(path)
    image_format(p)
    data = validate_labels(np.asarray(labels), p)
    data = data.astype(label_dtype(int(data.max())), copy=False)
    _write(p, data, _output_axes(data.ndim, None, p), voxel_size, labels=True, chunks=chunks)


def write_image(path: str | os.PathLike, array: np.ndarray, *, voxel_size: Sequence[float] | None = None,
                axes: str | None = None, chunks: Sequence[int] | None = None) -> None:
    """Write an image (e.g. flows, probabilities) atomically as TIFF or (OME-)Zarr.

    Floating-point data is stored as float32; integer data keeps its dtype (uint8/uint16 in
    ImageJ TIFF, any integer type as OME-TIFF / Zarr).

    Args:
        path: ``.tif`` / ``.tiff`` / ``.ome.tif`` / ``.zarr`` / ``.ome.zarr``.
        array: (y, x), (z, y, x) or channels first (c, z, y, x), e.g. flows (3, Z, Y, X).
        voxel_size: physical voxel size in micrometres of the spatial axes, (z, y, x) order.
        axes: axis letters of ``array`` (default ``YX`` / ``ZYX`` / ``CZYX`` by ndim).
        chunks: Zarr chunk shape.

    Raises:
        InputError: empty array, NaN values, unsupported extension or dtype.
    """
    p = Path(path)
    image_format(p)
    data = np.asarray(array)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    out_axes = _output_axes(data.ndim, axes, p)
    validate_image(data, p, ndims=(data.ndim,))
    if data.dtype.kind == "f":
        data = data.astype(np.float32, copy=False)
    _write(p, data, out_axes, voxel_size, labels=False, chunks=chunks)
