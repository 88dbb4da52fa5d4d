"""Cut 3D volumes into 2D slices along z, y and x, and put per-slice results back.

An *orientation* is named by the axis the slices are taken across:

- ``"z"``: slices ``volume[i, :, :]``, planes (y, x);
- ``"y"``: slices ``volume[:, i, :]``, planes (z, x);
- ``"x"``: slices ``volume[:, :, i]``, planes (z, y).

The in-plane axes keep the volume's (z, y, x) order, so a 2D flow predicted on a slice
has components (first plane axis, second plane axis): (dy, dx) for ``"z"``, (dz, dx) for
``"y"``, (dz, dy) for ``"x"``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from mediar3d.errors import ConfigError, InputError

log = logging.getLogger(__name__)

ORIENTATIONS: tuple[str, ...] = ("z", "y", "x")
_AXIS = {"z": 0, "y": 1, "x": 2}
# Volume axes (z=0, y=1, x=2) that make up the plane of each orientation, in order.
PLANE_AXES: dict[str, tuple[int, int]] = {"z": (1, 2), "y": (0, 2), "x": (0, 1)}


def check_orientations(orientations: Sequence[str], source: object = "orientations") -> tuple[str, ...]:
    """Validate and normalise a list of orientations.

    Args:
        orientations: Any non-empty subset of ``("z", "y", "x")`` (case-insensitive).
        source: Name used in the error message.

    Returns:
        The orientations, lower case, duplicates removed, in the given order.

    Raises:
        ConfigError: If the list is empty or names an unknown orientation.
    """
    if isinstance(orientations, str):
        orientations = [orientations]
    out: list[str] = []
    for item in orientations:
        name = str(item).lower()
        if name not in _AXIS:
            raise ConfigError(f"{source}: unknown orientation {item!r}; use any of 'z', 'y', 'x'")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"{source}: no orientation given; use any of 'z', 'y', 'x'")
    return tuple(out)


def num_slices(shape: Sequence[int], orientation: str) -> int:
    """Number of slices of a (z, y, x) volume of ``shape`` along ``orientation``."""
    return int(shape[_AXIS[orientation]])


def take_slice(volume: np.ndarray, orientation: str, index: int) -> np.ndarray:
    """One 2D slice of a (z, y, x) volume (see the module docstring for plane axes).

    Args:
        volume: Array (z, y, x), or (c, z, y, x) with channels first.
        orientation: ``"z"``, ``"y"`` or ``"x"``.
        index: Slice index along that axis.

    Returns:
        A view of shape (y, x), (z, x) or (z, y) (channels first kept if present).
    """
    offset = volume.ndim - 3
    if offset < 0:
        raise InputError(f"take_slice: expected a (z, y, x) volume, got shape {volume.shape}")
    key: list[slice | int] = [slice(None)] * volume.ndim
    key[offset + _AXIS[orientation]] = int(index)
    return volume[tuple(key)]


def iter_slices(volume: np.ndarray, orientations: Sequence[str] = ORIENTATIONS) -> Iterator[tuple[str, int, np.ndarray]]:
    """Yield ``(orientation, index, slice)`` for every slice of a (z, y, x) volume."""
    for orientation in check_orientations(orientations):
        for index in range(num_slices(volume.shape[-3:], orientation)):
            yield orientation, index, take_slice(volume, orientation, index)


def stack_slices(slices: Sequence[np.ndarray], orientation: str) -> np.ndarray:
    """Inverse of slicing: stack the 2D results of every slice back into (..., z, y, x).

    Args:
        slices: One array per slice index, each (..., a, b) with (a, b) the plane axes of
            ``orientation``; leading (channel) axes are kept in front.
        orientation: The orientation the slices were cut along.

    Returns:
        Array (..., z, y, x).
    """
    stacked = np.stack(list(slices), axis=0)  # (n, ..., a, b)
    lead = stacked.ndim - 3
    # Move the slice axis to its volume position among the last three axes.
    return np.moveaxis(stacked, 0, lead + _AXIS[orientation])


def resample_plane(plane: np.ndarray, orientation: str, anisotropy: float, *, labels: bool) -> np.ndarray:
    """Stretch the z axis of a (z, x) or (z, y) slice by ``anisotropy`` (z spacing / xy spacing).

    Slices across z (``"z"``) have no z axis and come back unchanged, as do volumes with
    ``anisotropy == 1``. Labels use nearest-neighbour interpolation, images linear.

    Args:
        plane: 2D slice, plane axes as in the module docstring.
        orientation: The orientation the slice was cut along.
        anisotropy: Ratio of z voxel size to in-plane voxel size (> 0).
        labels: Whether ``plane`` holds integer labels.

    Returns:
        The resampled slice (z axis length ``round(n_z * anisotropy)``).
    """
    if orientation == "z" or abs(anisotropy - 1.0) < 1e-6:
        return plane
    if anisotropy <= 0:
        raise ConfigError(f"anisotropy must be > 0, got {anisotropy}")
    new_z = max(1, int(round(plane.shape[0] * anisotropy)))
    zoom = (new_z / plane.shape[0], 1.0)
    if labels:
        return ndimage.zoom(plane, zoom, order=0, mode="nearest", grid_mode=True)
    return ndimage.zoom(plane.astype(np.float32, copy=False), zoom, order=1, mode="nearest", grid_mode=True)


def annotated_slices(labels: np.ndarray, orientation: str) -> np.ndarray:
    """Indices of the slices along ``orientation`` that hold at least one labelled voxel.

    Args:
        labels: Integer labels (z, y, x).
        orientation: ``"z"``, ``"y"`` or ``"x"``.

    Returns:
        Sorted int64 array of slice indices.
    """
    axis = _AXIS[orientation]
    other = tuple(a for a in range(3) if a != axis)
    return np.flatnonzero(np.any(labels != 0, axis=other)).astype(np.int64)


def export_slices(image: np.ndarray, labels: np.ndarray, out_dir: str | Path, *, stem: str,
                  orientations: Sequence[str] = ORIENTATIONS, anisotropy: float = 1.0,
                  skip_empty: bool = False) -> list[tuple[Path, Path]]:
    """Write every slice of an image/label volume pair as 2D TIFF pairs.

    Files go to ``out_dir/images/<stem>_<orientation><index>.tif`` and
    ``out_dir/labels/<same name>``.

    Args:
        image: Intensity volume (z, y, x).
        labels: Integer labels (z, y, x), same shape as ``image``.
        out_dir: Output folder (created).
        stem: File name stem for this volume.
        orientations: Orientations to export.
        anisotropy: z spacing / xy spacing; y and x slices are stretched to isotropic.
        skip_empty: Leave out slices without any label.

    Returns:
        The written (image path, label path) pairs.
    """
    from mediar3d.io import write_image, write_labels

    if image.shape != labels.shape or image.ndim != 3:
        raise InputError(f"{stem}: image {image.shape} and labels {labels.shape} must be two (z, y, x) volumes of one shape")
    out = Path(out_dir)
    written: list[tuple[Path, Path]] = []
    for orientation in check_orientations(orientations):
        keep = set(annotated_slices(labels, orientation).tolist()) if skip_empty else None
        digits = len(str(num_slices(image.shape, orientation)))
        for index in range(num_slices(image.shape, orientation)):
            if keep is not None and index not in keep:
                continue
            name = f"{stem}_{orientation}{index:0{digits}d}.tif"
            img = resample_plane(np.asarray(take_slice(image, orientation, index)), orientation, anisotropy, labels=False)
            lab = resample_plane(np.asarray(take_slice(labels, orientation, index)), orientation, anisotropy, labels=True)
            pair = (out / "images" / name, out / "labels" / name)
            pair[0].parent.mkdir(parents=True, exist_ok=True)
            pair[1].parent.mkdir(parents=True, exist_ok=True)
            write_image(pair[0], img)
            write_labels(pair[1], lab)
            written.append(pair)
    log.info("wrote %d slice pairs of %s to %s", len(written), stem, out)
    return written
