"""Zarr and OME-Zarr (NGFF 0.4 / 0.5) reading, lazy opening and writing; zarr v2 and v3 APIs.

``zarr`` is imported on first use (:func:`zarr_module`), not with this module, so a TIFF run
does not pay for it at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mediar3d.errors import InputError
from mediar3d.io.axes import UNKNOWN, parse_axes
from mediar3d.io.memory import check_array_fits
from mediar3d.io.tiff import length_to_um

__all__ = ["zarr_module", "zarr_v3", "open_group", "new_array", "is_zarr", "resolve_zarr", "open_zarr_lazy",
           "read_zarr", "zarr_axes_and_voxel_size", "write_zarr", "create_zarr", "default_chunks", "pyramid",
           "add_pyramid", "ngff_datasets"]

logger = logging.getLogger(__name__)

NGFF_VERSION = "0.4"
#: Pyramid levels stop once y or x would drop below this many pixels.
MIN_LEVEL_SIZE = 64
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError)
_MARKERS = (".zarray", ".zgroup", "zarr.json")


def zarr_module() -> Any:
    """The ``zarr`` package, imported on first use."""
    import zarr

    return zarr


def zarr_v3() -> bool:
    """True for zarr-python 3.x (its API differs from 2.x when creating arrays)."""
    return int(zarr_module().__version__.split(".")[0]) >= 3


def is_zarr(path: Path) -> bool:
    """True when ``path`` is a folder holding Zarr (v2 or v3) metadata or is named ``*.zarr``."""
    return path.suffix.lower() == ".zarr" or (path.is_dir() and any((path / m).exists() for m in _MARKERS))


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


def _ngff_multiscales(attrs: Mapping[str, Any]) -> list | None:
    if "multiscales" in attrs:
        return attrs["multiscales"]
    ome = attrs.get("ome")
    if isinstance(ome, Mapping) and "multiscales" in ome:
        return ome["multiscales"]
    return None


def _scale_of(transforms: Sequence[Mapping[str, Any]] | None, ndim: int) -> list[float]:
    scale = [1.0] * ndim
    for transform in transforms or ():
        if transform.get("type") == "scale" and "scale" in transform and len(transform["scale"]) == ndim:
            scale = [a * float(b) for a, b in zip(scale, transform["scale"])]
    return scale


def resolve_zarr(path: Path, level: int = 0) -> tuple[Any, str | None, dict[str, float]]:
    """Open a Zarr store and find the image array (OME-NGFF level, a plain array, or a group's only array).

    Returns:
        ``(zarr array, axes over TCZYX? or None when unknown, voxel size per axis letter in um)``.
    """
    if not path.exists():
        raise InputError(f"{path}: file not found")
    zarr = zarr_module()
    try:
        node = zarr.open(str(path), mode="r")
    except _READ_ERRORS as exc:
        raise InputError(f"{path}: cannot open as Zarr (corrupt or not a Zarr store: {_reason(exc)})") from exc
    if isinstance(node, zarr.Array):
        names = node.attrs.get("_ARRAY_DIMENSIONS") or getattr(getattr(node, "metadata", None), "dimension_names", None)
        hint = None
        if names and all(n is not None for n in names):
            hint = parse_axes(list(names), node.ndim, path, strict=False)
        return node, hint, {}
    multiscales = _ngff_multiscales(node.attrs)
    if not multiscales:
        arrays = [name for name, _ in node.arrays()]
        if len(arrays) == 1:
            return node[arrays[0]], None, {}
        raise InputError(f"{path}: Zarr group has no OME-NGFF multiscales metadata and {len(arrays)} arrays; "
                         f"give the path of one array (e.g. {path}/<name>)")
    try:
        meta = multiscales[0]
        datasets = meta["datasets"]
        if not 0 <= level < len(datasets):
            raise InputError(f"{path}: resolution level {level} does not exist; the file has "
                             f"{len(datasets)} level(s), 0..{len(datasets) - 1}")
        array = node[datasets[level]["path"]]
        axes_meta = meta.get("axes")
    except InputError:
        raise
    except _READ_ERRORS as exc:
        raise InputError(f"{path}: invalid OME-NGFF metadata ({_reason(exc)})") from exc
    if axes_meta is None:
        return array, None, {}
    if not isinstance(axes_meta, (list, tuple)) or any(isinstance(a, Mapping) and not isinstance(a.get("name"), str)
                                                         for a in axes_meta):
        raise InputError(f"{path}: invalid OME-NGFF metadata (every entry of 'axes' needs a \"name\", got "
                         f"{axes_meta!r:.120})")
    names = [a["name"] if isinstance(a, Mapping) else str(a) for a in axes_meta]
    units = [a.get("unit") if isinstance(a, Mapping) else None for a in axes_meta]
    hint = parse_axes(names, array.ndim, path, strict=False)
    scale = _scale_of(datasets[level].get("coordinateTransformations"), array.ndim)
    scale = [a * b for a, b in zip(scale, _scale_of(meta.get("coordinateTransformations"), array.ndim))]
    voxel: dict[str, float] = {}
    spatial = [(size, unit) for letter, size, unit in zip(hint, scale, units) if letter in "ZYX"]
    if all(unit is None and size == 1.0 for size, unit in spatial):
        return array, hint, voxel  # default scale without units: not calibrated
    for letter, size, unit in zip(hint, scale, units):
        if letter in "ZYX":
            um = length_to_um(size, unit)
            if um is not None and um > 0:
                voxel[letter] = um
    return array, hint, voxel


def open_zarr_lazy(path: str | Path, *, level: int = 0) -> Any:
    """Open a Zarr array or an OME-Zarr resolution level without loading it.

    Args:
        path: ``.zarr`` / ``.ome.zarr`` folder (an array, or a group with NGFF multiscales).
        level: resolution level of an OME-Zarr pyramid (0: full resolution).

    Returns:
        A read-only ``zarr.Array`` in the stored axis order (see :func:`zarr_axes_and_voxel_size`).
    """
    return resolve_zarr(Path(path), level)[0]


def zarr_axes_and_voxel_size(path: str | Path, *, level: int = 0) -> tuple[str, dict[str, float]]:
    """Axes of the stored array (letters of ``TCZYX``, ``?`` where unknown) and voxel size per axis (um)."""
    array, hint, voxel = resolve_zarr(Path(path), level)
    return (hint or UNKNOWN * array.ndim), voxel


def read_zarr(path: Path, axes: str | None = None, *, level: int = 0) -> tuple[np.ndarray, str, dict[str, float]]:
    """Load a Zarr / OME-Zarr array into memory.

    Returns:
        ``(data, axes, voxel_size)`` as for :func:`mediar3d.io.tiff.read_tiff`.
    """
    array, hint, voxel = resolve_zarr(path, level)
    check_array_fits(array.shape, array.dtype, path)
    try:
        data = np.asarray(array[...])
    except _READ_ERRORS as exc:
        raise InputError(f"{path}: cannot read Zarr data (corrupt chunk: {_reason(exc)})") from exc
    if axes is not None:
        return data, parse_axes(axes, data.ndim, path), voxel
    return data, (hint or UNKNOWN * data.ndim), voxel


def default_chunks(shape: Sequence[int], axes: str) -> tuple[int, ...]:
    """Chunks of about 1 M elements: one channel/time point, up to 256 x 256 in y, x, the rest in z."""
    chunks = []
    yx = 1
    for size, axis in zip(shape, axes):
        if axis in "YX":
            yx *= min(int(size), 256)
    for size, axis in zip(shape, axes):
        if axis in "YX":
            chunks.append(min(int(size), 256))
        elif axis == "Z":
            chunks.append(max(1, min(int(size), 2**20 // yx)))
        else:
            chunks.append(1)
    return tuple(chunks)


def pyramid(data: np.ndarray, axes: str, *, labels: bool) -> list[np.ndarray]:
    """Resolution levels of ``data``: level 0 itself, then y and x halved while both stay >= MIN_LEVEL_SIZE.

    Labels take every other pixel (nearest: no new ids, no mixed labels); images the mean of
    each 2 x 2 block in y, x, cast back to their dtype. Other axes (t, c, z) are kept.
    """
    y, x = axes.index("Y"), axes.index("X")
    levels = [data]
    while min(levels[-1].shape[y], levels[-1].shape[x]) // 2 >= MIN_LEVEL_SIZE:
        prev = levels[-1]
        if labels:
            index = [slice(None)] * prev.ndim
            index[y] = index[x] = slice(None, None, 2)
            levels.append(prev[tuple(index)])
            continue
        even = [slice(None)] * prev.ndim
        even[y], even[x] = slice(0, prev.shape[y] // 2 * 2), slice(0, prev.shape[x] // 2 * 2)
        cropped = prev[tuple(even)].astype(np.float64)
        shape = list(cropped.shape)
        shape[x:x + 1] = [shape[x] // 2, 2]
        shape[y:y + 1] = [shape[y] // 2, 2]  # y < x: insert the later axis first
        mean = cropped.reshape(shape).mean(axis=(y + 1, x + 2))
        levels.append(np.round(mean).astype(prev.dtype) if prev.dtype.kind in "iu" else mean.astype(prev.dtype))
    return levels


def add_pyramid(path: str | Path, *, slab_voxels: int = 2**26) -> int:
    """Add :func:`pyramid`'s lower levels (labels: every other pixel in y, x) to a one-level OME-Zarr label image.

    For stores written block by block (too large to hold whole): each level is read from the
    one above it a few z-planes at a time (about ``slab_voxels`` voxels); the ``datasets``
    metadata is updated once all levels are written. Returns the number of levels.
    """
    group = open_group(path, "r+")
    meta = _ngff_multiscales(group.attrs)[0]
    axes = "".join(a["name"].upper() for a in meta["axes"])
    scale = meta["datasets"][0]["coordinateTransformations"][0]["scale"]
    y, x = axes.index("Y"), axes.index("X")
    source = group[meta["datasets"][0]["path"]]
    n_levels = 1
    while min(source.shape[y], source.shape[x]) // 2 >= MIN_LEVEL_SIZE:
        shape = list(source.shape)
        shape[y], shape[x] = (shape[y] + 1) // 2, (shape[x] + 1) // 2
        target = new_array(group, str(n_levels), shape, source.dtype, default_chunks(shape, axes))
        step = source.shape[0] if y == 0 else max(1, slab_voxels // max(1, source.shape[y] * source.shape[x]))
        for start in range(0, source.shape[0], step):
            index = [slice(None)] * len(shape)
            index[0] = slice(start, start + step)
            block = np.asarray(source[tuple(index)])
            down = [slice(None)] * len(shape)
            down[y] = down[x] = slice(None, None, 2)
            target[tuple(index)] = block[tuple(down)]
        source, n_levels = target, n_levels + 1
    meta["datasets"] = ngff_datasets(axes, scale, n_levels)
    attrs = dict(group.attrs)
    attrs["multiscales"] = [meta] + list(attrs["multiscales"][1:])
    group.attrs.update(attrs)
    return n_levels


def ngff_datasets(axes: str, scale: Sequence[float], n_levels: int) -> list[dict[str, Any]]:
    """NGFF ``datasets`` entries of :func:`pyramid`'s levels: paths "0", "1", ... with y, x scales doubling."""
    return [{"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [
        float(s) * (2.0 ** i if a in "YX" else 1.0) for a, s in zip(axes, scale)]}]} for i in range(n_levels)]


def new_array(group: Any, name: str, shape: Sequence[int], dtype: Any, chunks: Sequence[int]) -> Any:
    """An empty array ``name`` in ``group`` (zarr format 2, "/"-separated chunk keys, fill 0); zarr 2.x and 3.x."""
    if zarr_v3():
        return group.create_array(name, shape=tuple(shape), chunks=tuple(chunks), dtype=np.dtype(dtype),
                                  chunk_key_encoding={"name": "v2", "separator": "/"}, fill_value=0)
    return group.create_dataset(name, shape=tuple(shape), chunks=tuple(chunks), dtype=np.dtype(dtype),
                                dimension_separator="/", fill_value=0)


def open_group(path: str | Path, mode: str) -> Any:
    """``zarr.open_group`` writing zarr format 2 (what NGFF 0.4 readers expect) under zarr 2.x and 3.x."""
    zarr = zarr_module()
    return zarr.open_group(str(path), mode=mode, zarr_format=2) if zarr_v3() else zarr.open_group(str(path), mode=mode)


def _ngff_attrs(name: str, axes: str, voxel_size: Sequence[float] | None, labels: bool, n_levels: int = 1) -> dict:
    spatial = [a for a in axes if a in "ZYX"]
    sizes = dict(zip(spatial, voxel_size)) if voxel_size is not None else {}
    axes_meta = []
    for a in axes:
        entry: dict[str, str] = {"name": a.lower(),
                                 "type": {"T": "time", "C": "channel"}.get(a, "space")}
        if a in "ZYX" and sizes:
            entry["unit"] = "micrometer"
        axes_meta.append(entry)
    scale = [float(sizes.get(a, 1.0)) for a in axes]
    attrs: dict[str, Any] = {"multiscales": [{
        "version": NGFF_VERSION, "name": name, "axes": axes_meta, "datasets": ngff_datasets(axes, scale, n_levels),
    }]}
    if labels:
        attrs["image-label"] = {"version": NGFF_VERSION}
    return attrs


def create_zarr(path: str | Path, shape: Sequence[int], dtype: Any, *, axes: str,
                voxel_size: Sequence[float] | None = None, chunks: Sequence[int] | None = None,
                labels: bool = False, name: str | None = None) -> Any:
    """Create an empty OME-Zarr (NGFF 0.4, one resolution level) for block-wise writing.

    Not atomic: the store is written in place (callers that need atomicity create it under
    :func:`mediar3d.io.atomic.atomic_output`).

    Args:
        path: output folder (``.zarr`` / ``.ome.zarr``); replaced if it exists.
        shape: array shape, dimensions named by ``axes``.
        dtype: numpy dtype.
        axes: letters of ``TCZYX`` in storage order, e.g. ``"ZYX"`` or ``"CZYX"``.
        voxel_size: physical size in micrometres of the spatial axes, in (z, y, x) order.
        chunks: chunk shape (default :func:`default_chunks`).
        labels: mark the image as a label image (NGFF ``image-label``).
        name: ``multiscales[0].name`` (default: the folder name; give it when writing under a temporary name).

    Returns:
        The writable ``zarr.Array`` at resolution level ``0``.
    """
    path = Path(path)
    chunks = tuple(int(c) for c in (chunks or default_chunks(shape, axes)))
    attrs = _ngff_attrs(name or path.name, axes, voxel_size, labels)
    group = open_group(path, "w")
    array = new_array(group, "0", shape, dtype, chunks)
    group.attrs.update(attrs)
    return array


def write_zarr(path: Path, array: np.ndarray, axes: str, voxel_size: Sequence[float] | None = None, *,
               chunks: Sequence[int] | None = None, labels: bool = False, name: str | None = None) -> None:
    """Write an in-memory array as a multiscale OME-Zarr (NGFF 0.4) at ``path`` (not atomic by itself).

    Levels as :func:`pyramid` (level 0 = ``array``); ``chunks`` applies to level 0, ``name`` as `create_zarr`.
    """
    path = Path(path)
    levels = pyramid(array, axes, labels=labels)
    group = open_group(path, "w")
    for i, level in enumerate(levels):
        level_chunks = chunks if (i == 0 and chunks) else default_chunks(level.shape, axes)
        new_array(group, str(i), level.shape, level.dtype, level_chunks)[...] = level
    group.attrs.update(_ngff_attrs(name or path.name, axes, voxel_size, labels, len(levels)))
    logger.debug("wrote %s %s to %s (%d levels)", array.shape, array.dtype, path, len(levels))
