"""TIFF, OME-TIFF and ImageJ-hyperstack reading and writing (tifffile)."""

from __future__ import annotations

import logging
import struct
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from mediar3d.errors import InputError
from mediar3d.io.axes import UNKNOWN, parse_axes
from mediar3d.io.memory import check_array_fits

__all__ = ["read_tiff", "open_tiff_lazy", "write_tiff", "length_to_um"]

logger = logging.getLogger(__name__)

_UM_PER_UNIT = {
    "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6, "metre": 1e6,
}
# ImageJ can store only these sample types; others are written as OME-TIFF.
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_IMAGEJ_MAX_BYTES = 2**31


def length_to_um(value: float, unit: str | None) -> float | None:
    """Convert a physical length to micrometres; None for 'pixel' or unknown units.

    A missing unit is taken as micrometres (the default of OME and most microscopes).
    """
    if unit is None or unit == "":
        return float(value)
    factor = _UM_PER_UNIT.get(unit.strip().lower().replace("\\u00b5", "µ"))
    return None if factor is None else float(value) * factor


def _ome_voxel_size(xml: str) -> dict[str, float]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    for element in root.iter():
        if element.tag.endswith("Pixels"):
            sizes = {}
            for axis in "ZYX":
                value = element.get(f"PhysicalSize{axis}")
                if value is None:
                    continue
                um = length_to_um(float(value), element.get(f"PhysicalSize{axis}Unit"))
                if um is not None and um > 0:
                    sizes[axis] = um
            return sizes
    return {}


def _imagej_voxel_size(tif: tifffile.TiffFile) -> dict[str, float]:
    meta = tif.imagej_metadata or {}
    unit = meta.get("unit")
    if isinstance(unit, str) and unit.strip().lower() in ("pixel", "pixels", ""):
        return {}
    sizes: dict[str, float] = {}
    tags = tif.pages[0].tags
    for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
        if tag in tags:
            num, den = tags[tag].value
            uncalibrated = (num, den) == (1, 1) and not unit
            if num > 0 and den > 0 and not uncalibrated:
                um = length_to_um(den / num, unit)
                if um is not None:
                    sizes[axis] = um
    if "spacing" in meta:
        um = length_to_um(float(meta["spacing"]), unit)
        if um is not None and um > 0:
            sizes["Z"] = um
    return sizes


_TIFF_ERRORS = (tifffile.TiffFileError, OSError, ValueError, KeyError, IndexError, EOFError, struct.error)


def _corrupt(path: Path, exc: BaseException) -> InputError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputError(f"{path}: cannot read TIFF file (corrupt or not a TIFF: {reason})")


#: More channels than ImageJ shows as a composite: a bare ImageJ stack of more "channels" is a z-stack.
IMAGEJ_MAX_CHANNELS = 7


def _imagej_plain_stack(tif: tifffile.TiffFile) -> bool:
    """Whether an ImageJ file is a plain stack that says "channels" only because no axes were given.

    ``tifffile.imwrite(path, volume, imagej=True)`` without ``metadata={"axes": ...}``
    records a (z, y, x) array as N channels (no slices, no frames, grayscale mode); Fiji
    opens such a stack of more than :data:`IMAGEJ_MAX_CHANNELS` planes as a z-stack, and so
    does mediar3d. Composite or colour-mode files, and those with slices or frames, keep
    their channels.
    """
    meta = tif.imagej_metadata or {}
    channels = int(meta.get("channels", 1) or 1)
    mode = str(meta.get("mode", "grayscale")).lower()
    return (channels > IMAGEJ_MAX_CHANNELS and int(meta.get("slices", 1) or 1) == 1
            and int(meta.get("frames", 1) or 1) == 1 and mode not in ("composite", "color"))


def _series_axes(tif: tifffile.TiffFile, series: tifffile.TiffPageSeries, ndim: int, path: Path) -> str:
    """Axes of the first series over ``TCZYX?`` (``?``: unknown, to be inferred)."""
    file_axes = series.axes
    mapped = parse_axes(file_axes, ndim, path, strict=False)
    if tif.is_imagej and "C" in mapped and "Z" not in mapped and _imagej_plain_stack(tif):
        logger.info("%s: ImageJ stack of %d planes without axes metadata read as a z-stack (as Fiji does)", path,
                    series.shape[file_axes.index("C")])
        mapped = mapped.replace("C", "Z")
    trusted = tif.is_ome or tif.is_imagej
    if not trusted and "C" in mapped and 0 <= file_axes.find("S") < file_axes.find("Y"):
        # A plain multi-page TIFF of 3 or 4 slices is stored as planar RGB by some writers
        # (tifffile included): without ImageJ/OME metadata it is a volume, not colour channels.
        mapped = mapped.replace("C", UNKNOWN)
    return mapped


def _voxel(tif: tifffile.TiffFile) -> dict[str, float]:
    if tif.is_ome:
        return _ome_voxel_size(tif.ome_metadata or "")
    if tif.is_imagej:
        return _imagej_voxel_size(tif)
    return {}


def read_tiff(path: Path, axes: str | None = None) -> tuple[np.ndarray, str, dict[str, float]]:
    """Read the first series of a TIFF file.

    Args:
        path: TIFF / OME-TIFF / ImageJ TIFF file.
        axes: caller's axes for the stored array (overrides metadata), or None.

    Returns:
        ``(data, axes, voxel_size)``: the array as stored (singletons squeezed), its axes over
        ``TCZYX?`` (``?``: unknown, to be inferred), and the physical size per axis letter in
        micrometres (only the axes the metadata calibrates).

    Raises:
        InputError: unreadable or corrupt file, axes that do not fit.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(f"{path}: TIFF file holds no images")
            series = tif.series[0]
            check_array_fits(series.shape, series.dtype, path)
            data = series.asarray()
            full_shape = series.get_shape(False)
            voxel = _voxel(tif)
            if axes is None:
                return data, _series_axes(tif, series, data.ndim, path), voxel
    except InputError:
        raise
    except _TIFF_ERRORS as exc:
        raise _corrupt(path, exc) from exc
    if len(axes) != data.ndim and len(axes) == len(full_shape):
        data = data.reshape(full_shape)
    return data, parse_axes(axes, data.ndim, path), voxel


def tiff_shape(path: Path) -> tuple[int, ...]:
    """Shape of a TIFF's first series (as :func:`open_tiff_lazy` opens it), read from its header only."""
    return tiff_header(path)[0]


def tiff_header(path: Path) -> tuple[tuple[int, ...], np.dtype, dict[str, float]]:
    """Shape, dtype and voxel size (micrometres per axis letter, as :func:`read_tiff`) of a TIFF's
    first series, read from its header only."""
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(f"{path}: TIFF file holds no images")
            series = tif.series[0]
            return tuple(int(n) for n in series.shape), np.dtype(series.dtype), _voxel(tif)
    except InputError:
        raise
    except _TIFF_ERRORS as exc:
        raise _corrupt(path, exc) from exc


def open_tiff_lazy(path: Path) -> tuple[Any, str, dict[str, float]]:
    """Open the first series of a TIFF as a read-only zarr array without loading it.

    Returns:
        ``(array, axes, voxel_size)`` as for :func:`read_tiff` (axes of the squeezed series).
    """
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(f"{path}: TIFF file holds no images")
            series = tif.series[0]
            axes = _series_axes(tif, series, len(series.shape), path)
            voxel = _voxel(tif)
        store = tifffile.imread(path, aszarr=True, series=0, level=0)
        array = zarr.open(store, mode="r")
    except InputError:
        raise
    except _TIFF_ERRORS as exc:
        raise _corrupt(path, exc) from exc
    return array, axes, voxel


def _sanitize_voxel(voxel_size: Sequence[float] | None, n_spatial: int) -> tuple[float, ...] | None:
    if voxel_size is None:
        return None
    sizes = tuple(float(v) for v in voxel_size)
    if len(sizes) != n_spatial or not all(np.isfinite(s) and s > 0 for s in sizes):
        raise InputError(f"voxel_size {voxel_size!r} must be {n_spatial} positive numbers in "
                         f"{'(z, y, x)' if n_spatial == 3 else '(y, x)'} order")
    return sizes


def write_tiff(path: Path, array: np.ndarray, axes: str, voxel_size: Sequence[float] | None = None, *,
               ome: bool = False, compress: bool = True) -> None:
    """Write an array as ImageJ hyperstack TIFF (uint8/uint16/float32) or else OME-TIFF.

    Args:
        path: output file (written directly: wrap in :func:`atomic_output` for atomicity).
        array: data whose dimensions are named by ``axes`` (``YX``, ``ZYX``, ``CYX``, ``CZYX``).
        axes: axis letters of ``array``.
        voxel_size: physical voxel size in micrometres, (z, y, x) or (y, x), or None.
        ome: force OME-TIFF even when ImageJ could store the data.
        compress: zlib-compress (worth it for label images).
    """
    spatial = [a for a in axes if a in "ZYX"]
    sizes = _sanitize_voxel(voxel_size, len(spatial))
    calib = dict(zip(spatial, sizes)) if sizes else {}
    kwargs: dict = {"compression": "zlib", "compressionargs": {"level": 3}} if compress else {}
    use_imagej = not ome and array.dtype in _IMAGEJ_DTYPES and array.nbytes < _IMAGEJ_MAX_BYTES
    if use_imagej:
        order = [axes.index(a) for a in "ZCYX" if a in axes]
        data = np.transpose(array, order)
        metadata: dict = {"axes": "".join(axes[i] for i in order)}
        if calib:
            metadata["unit"] = "um"
            if "Z" in calib:
                metadata["spacing"] = calib["Z"]
            kwargs["resolution"] = (1.0 / calib["X"], 1.0 / calib["Y"])
        tifffile.imwrite(path, data, imagej=True, photometric="minisblack", metadata=metadata, **kwargs)
    else:
        metadata = {"axes": axes}
        for axis, size in calib.items():
            metadata[f"PhysicalSize{axis}"] = size
            metadata[f"PhysicalSize{axis}Unit"] = "µm"
        tifffile.imwrite(path, array, ome=True, photometric="minisblack", bigtiff=array.nbytes >= _IMAGEJ_MAX_BYTES,
                         metadata=metadata, **kwargs)
    logger.debug("wrote %s %s %s to %s", array.shape, array.dtype, "ImageJ" if use_imagej else "OME", path)
