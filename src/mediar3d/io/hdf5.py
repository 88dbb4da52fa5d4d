"""HDF5 input, as PlantSeg and ilastik write it: ``volume.h5:/raw`` names a dataset in a file.

Needs the optional ``h5py`` package (the ``[hdf5]`` extra). Axes come from ilastik's
``axistags`` attribute or an ``axes`` attribute when present, else are inferred like an
uncalibrated TIFF; the voxel size comes from the ``element_size_um`` attribute (z, y, x),
the convention of PlantSeg, ilastik and Fiji's HDF5 plugin.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mediar3d.errors import InputError

__all__ = ["HDF5_SUFFIXES", "split_hdf5_path", "open_hdf5", "read_hdf5"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
UNKNOWN = "?"


def split_hdf5_path(path: str | os.PathLike) -> tuple[Path, str | None] | None:
    """``"a.h5:/raw"`` -> ``(Path("a.h5"), "/raw")``, ``"a.h5"`` -> ``(Path("a.h5"), None)``; None if not HDF5."""
    text = os.fspath(path)
    lower = text.lower()
    for suffix in HDF5_SUFFIXES:
        if lower.endswith(suffix):
            return Path(text), None
        mark = lower.find(suffix + ":")
        if mark >= 0:
            end = mark + len(suffix)
            return Path(text[:end]), text[end + 1:] or None
    return None


def _h5py() -> Any:
    from mediar3d.optional import require

    return require("h5py", "hdf5", "reading HDF5 files", InputError)


def _datasets(handle: Any) -> list[str]:
    names: list[str] = []
    handle.visititems(lambda name, item: names.append("/" + name) if hasattr(item, "shape") else None)
    return names


def _axes(dataset: Any, ndim: int) -> str:
    tags = dataset.attrs.get("axistags")
    if tags is not None:  # ilastik: {"axes": [{"key": "z", ...}, ...]}
        try:
            keys = "".join(a["key"] for a in json.loads(tags)["axes"]).upper()
        except (ValueError, KeyError, TypeError):
            keys = ""
        if len(keys) == ndim:
            return keys
    axes = dataset.attrs.get("axes")
    if isinstance(axes, bytes):
        axes = axes.decode()
    if isinstance(axes, str) and len(axes) == ndim:
        return axes.upper()
    return UNKNOWN * ndim


def open_hdf5(path: str | os.PathLike) -> tuple[Any, str, dict[str, float]]:
    """Open ``file.h5[:/dataset]`` without reading it.

    The dataset may be left out when the file holds exactly one.

    Returns:
        ``(dataset, axes, voxel_size)``: an h5py dataset (sliced lazily; the file stays open
        while it is referenced), axis letters (``?`` where unknown) and the voxel size in
        micrometres per axis letter (``{"Z": 2.0, "Y": 0.5, "X": 0.5}``, empty if unknown).

    Raises:
        InputError: not an HDF5 path, missing file or dataset, unreadable file.
    """
    parts = split_hdf5_path(path)
    if parts is None:
        raise InputError(f"{path}: not an HDF5 path (.h5, .hdf5 or .hdf, optionally with :/dataset)")
    file, name = parts
    if not file.is_file():
        raise InputError(f"{file}: file not found")
    h5py = _h5py()
    try:
        handle = h5py.File(file, "r")
    except OSError as err:
        raise InputError(f"{file}: cannot read it as HDF5 ({err})") from err
    available = _datasets(handle)
    if name is None:
        if len(available) != 1:
            raise InputError(f"{file}: holds {len(available)} datasets ({', '.join(available) or 'none'}); "
                             f"name one as {file}:/DATASET")
        name = available[0]
    if not name.startswith("/"):
        name = "/" + name
    if name not in available:
        raise InputError(f"{file}: has no dataset {name}; it holds {', '.join(available) or 'none'}")
    dataset = handle[name]
    axes = _axes(dataset, dataset.ndim)
    voxel: dict[str, float] = {}
    size = dataset.attrs.get("element_size_um")
    spatial = [a for a in axes if a in "ZYX"] if UNKNOWN not in axes else list("ZYX"[-min(3, dataset.ndim):])
    if size is not None and len(size) == len(spatial) and all(float(s) > 0 for s in size):
        voxel = {a: float(s) for a, s in zip(spatial, size)}
    return dataset, axes, voxel


def read_hdf5(path: str | os.PathLike, axes: str | None = None) -> tuple[np.ndarray, str, dict[str, float]]:
    """Load ``file.h5[:/dataset]`` into memory: ``(data, axes, voxel_size)`` as `open_hdf5`.

    Args:
        path: HDF5 file, optionally followed by ``:/dataset``.
        axes: axis letters of the stored array (overrides the file's).
    """
    from mediar3d.io.axes import parse_axes

    dataset, found, voxel = open_hdf5(path)
    try:
        data = np.asarray(dataset[()])
    except OSError as err:
        raise InputError(f"{path}: cannot read the dataset ({err})") from err
    finally:
        dataset.file.close()
    if axes is not None:
        return data, parse_axes(axes, data.ndim, path), voxel
    return data, found, voxel
