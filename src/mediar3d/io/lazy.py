"""Opening images too large for memory: a zarr array (Zarr, OME-Zarr or TIFF) plus axes and voxel size."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mediar3d.errors import InputError
from mediar3d.io.axes import CANONICAL, UNKNOWN, infer_axes, parse_axes
from mediar3d.io.hdf5 import open_hdf5
from mediar3d.io.image import image_format
from mediar3d.io.tiff import open_tiff_lazy
from mediar3d.io.zarr_io import resolve_zarr

__all__ = ["LazyImage", "SpatialView", "open_image_lazy"]


class SpatialView:
    """Read-only array-like over a stored array, presented as (z, y, x) or (c, z, y, x).

    Slicing reads only the requested region from the store. Keys are tuples of slices and
    integers over the presented axes (no fancy indexing).

    Attributes:
        shape: presented shape.
        dtype: stored dtype.
        axes: presented axes, e.g. ``"ZYX"``.
    """

    def __init__(self, array: Any, stored_axes: str, fixed: dict[int, int]) -> None:
        self._array = array
        self._fixed = fixed  # stored axis -> index (channel / time point)
        self._kept = [i for i in range(len(stored_axes)) if i not in fixed]
        kept_axes = "".join(stored_axes[i] for i in self._kept)
        self.axes = "".join(a for a in CANONICAL if a in kept_axes)
        self._order = [kept_axes.index(a) for a in self.axes]  # presented i <- kept position
        self.shape = tuple(int(array.shape[self._kept[k]]) for k in self._order)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim or not all(isinstance(k, (slice, int, np.integer)) for k in key):
            raise IndexError(f"index {key!r} does not fit a view of shape {self.shape}; use slices and integers")
        stored: list[Any] = [None] * len(self._array.shape)
        for axis, index in self._fixed.items():
            stored[axis] = index
        drop = []
        for presented, k in enumerate(key):
            stored_axis = self._kept[self._order[presented]]
            if isinstance(k, (int, np.integer)):
                size = self.shape[presented]
                k = int(k) + size if k < 0 else int(k)
                stored[stored_axis] = slice(k, k + 1)
                drop.append(presented)
            else:
                stored[stored_axis] = k
        block = np.asarray(self._array[tuple(stored)])
        block = np.transpose(block, self._order) if self._order != sorted(self._order) else block
        return np.squeeze(block, axis=tuple(drop)) if drop else block

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[...]
        return data.astype(dtype) if dtype is not None else data


@dataclass
class LazyImage:
    """An image opened without loading it.

    Attributes:
        array: read-only zarr array in the stored axis order.
        axes: letters of ``TCZYX``, one per dimension of ``array`` (inferred where the
            metadata is silent, as :func:`mediar3d.io.read_image` does).
        voxel_size: micrometres in (z, y, x) / (y, x) order, or None when not calibrated.
        path: the file or store.
    """

    array: Any
    axes: str
    voxel_size: tuple[float, ...] | None
    path: Path

    @property
    def n_timepoints(self) -> int:
        """Length of the time axis (1 when there is none)."""
        return int(self.array.shape[self.axes.index("T")]) if "T" in self.axes else 1

    def view(self, channel: int | None = None, timepoint: int | None = None) -> SpatialView:
        """A lazy (z, y, x) / (y, x) view (channels first when several and none chosen).

        Args:
            channel: Channel to keep (None: all, channels first).
            timepoint: Time point to keep; needed when the image has several.

        Raises:
            InputError: channel or time point out of range, or several time points and none chosen.
        """
        fixed: dict[int, int] = {}
        shape = self.array.shape
        if "C" in self.axes:
            ci = self.axes.index("C")
            if channel is not None:
                if not 0 <= channel < shape[ci]:
                    raise InputError(f"{self.path}: channel {channel} is out of range; the image has "
                                     f"{shape[ci]} channel(s), 0..{shape[ci] - 1}")
                fixed[ci] = channel
            elif shape[ci] == 1:
                fixed[ci] = 0
        elif channel not in (None, 0):
            raise InputError(f"{self.path}: channel {channel} is out of range; the image has a single channel")
        if "T" in self.axes:
            ti = self.axes.index("T")
            if timepoint is None and shape[ti] != 1:
                raise InputError(f"{self.path}: image has {shape[ti]} time points; choose one with "
                                 f"view(timepoint=t) (CLI: --timepoints segments each)")
            if not 0 <= (timepoint or 0) < shape[ti]:
                raise InputError(f"{self.path}: time point {timepoint} is out of range 0..{shape[ti] - 1}")
            fixed[ti] = timepoint or 0
        elif timepoint not in (None, 0):
            raise InputError(f"{self.path}: time point {timepoint} is out of range; the image has no time axis")
        return SpatialView(self.array, self.axes, fixed)


def open_image_lazy(path: str | os.PathLike, *, axes: str | None = None, level: int = 0) -> LazyImage:
    """Open a Zarr / OME-Zarr store or a TIFF file as a zarr array without reading the pixels.

    Args:
        path: ``.zarr`` / ``.ome.zarr`` folder, ``.tif`` / ``.tiff`` file or ``file.h5[:/dataset]``.
        axes: axis letters of the stored array (overrides metadata).
        level: OME-Zarr resolution level (0: full resolution).

    Returns:
        :class:`LazyImage`; ``.view(channel)`` gives a (z, y, x) array-like for block reads.

    Raises:
        InputError: missing or unreadable file, axes that do not fit.
    """
    p = Path(path)
    fmt = image_format(p)
    if fmt == "hdf5":
        array, hint, voxel = open_hdf5(p)
    elif not p.exists():
        raise InputError(f"{p}: file not found")
    elif fmt == "tiff":
        array, hint, voxel = open_tiff_lazy(p)
    else:
        array, hint, voxel = resolve_zarr(p, level)
        hint = hint or UNKNOWN * len(array.shape)
    if axes is not None:
        hint = parse_axes(axes, len(array.shape), p)
    if UNKNOWN in hint:
        if any(a == UNKNOWN and n == 1 for a, n in zip(hint, array.shape)):
            raise InputError(f"{p}: cannot tell the axes of shape {tuple(array.shape)}; pass axes, e.g. 'CZYX'")
        hint = infer_axes(array.shape, hint)
    if UNKNOWN in hint or "Y" not in hint or "X" not in hint:
        raise InputError(f"{p}: cannot tell the axes of shape {tuple(array.shape)}; pass axes, e.g. 'CZYX'")
    spatial = [a for a in CANONICAL if a in hint and a in "ZYX"]
    voxel_size = tuple(voxel[a] for a in spatial) if all(a in voxel for a in spatial) else None
    return LazyImage(array=array, axes=hint, voxel_size=voxel_size, path=p)
