"""Per-object measurements with scikit-image's regionprops, in voxels and in micrometres."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np
from skimage.measure import regionprops_table

from mediar3d.errors import InputError

__all__ = ["measure", "write_table_csv"]

AXES = "zyx"


def _intensity_std(mask: np.ndarray, intensity: np.ndarray) -> float:
    return float(np.std(intensity[mask]))


def measure(labels: np.ndarray, image: np.ndarray | None = None,
            voxel_size: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """Measure every object of a label volume (z, y, x) or image (y, x).

    Columns (one entry per object, ordered by label): ``label``; ``voxels`` (size in voxels);
    ``centroid_z``, ``centroid_y``, ``centroid_x`` and ``bbox_z0`` ... ``bbox_x1`` (voxel
    indices, end exclusive; no ``z`` columns for 2D); ``touches_border`` (the object reaches
    the first or last plane along some axis, so it is probably cut off). With a voxel size
    also ``volume_um3`` (``area_um2`` in 2D) = voxels x voxel volume, ``centroid_z_um`` ...
    and ``equivalent_diameter_um`` (of the sphere / disc of that volume / area). With an
    image also ``intensity_mean``, ``intensity_std``, ``intensity_min``, ``intensity_max``.

    Args:
        labels: Integer labels, 0 = background, (z, y, x) or (y, x).
        image: Intensities of the same shape, or None.
        voxel_size: Micrometres per voxel in the labels' axis order, or None (voxel units only).

    Returns:
        Dict of column name -> 1D array (a napari Labels layer takes it as ``features``).
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels of shape {labels.shape} and dtype {labels.dtype}: expected integer (z, y, x) or (y, x)")
    if labels.size and labels.min() < 0:
        raise InputError(f"labels of shape {labels.shape}: negative label {labels.min()}")
    if image is not None:
        image = np.asarray(image)
        if image.shape != labels.shape:
            raise InputError(f"image of shape {image.shape} does not match labels of shape {labels.shape}")
    spacing = check_spacing(voxel_size, labels.ndim)

    properties = ["label", "area", "centroid", "bbox"]
    if image is not None:
        properties += ["intensity_mean", "intensity_min", "intensity_max"]
    raw = regionprops_table(labels, intensity_image=image, properties=properties,
                            extra_properties=(_intensity_std,) if image is not None else ())
    n = labels.ndim
    intensity = None
    if image is not None:
        intensity = (raw["intensity_mean"], raw["_intensity_std"], raw["intensity_min"], raw["intensity_max"])
    return finish_table(raw["label"], raw["area"], [raw[f"centroid-{i}"] for i in range(n)],
                        [raw[f"bbox-{i}"] for i in range(n)], [raw[f"bbox-{i + n}"] for i in range(n)],
                        labels.shape, spacing, intensity)


def check_spacing(voxel_size: Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    """``voxel_size`` as ``ndim`` positive floats (None stays None); InputError otherwise."""
    if voxel_size is None:
        return None
    spacing = tuple(float(v) for v in voxel_size)
    if len(spacing) != ndim or not all(np.isfinite(v) and v > 0 for v in spacing):
        raise InputError(f"voxel_size {tuple(voxel_size)}: expected {ndim} positive numbers ({AXES[-ndim:]})")
    return spacing


def finish_table(label: np.ndarray, voxels: np.ndarray, centroids: Sequence[np.ndarray], starts: Sequence[np.ndarray],
                 stops: Sequence[np.ndarray], shape: Sequence[int], spacing: Sequence[float] | None,
                 intensity: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The table's columns (see `measure`) from per-object sizes, centroids, boxes and intensity statistics.

    Args:
        label, voxels: Object ids and sizes in voxels.
        centroids, starts, stops: One array per axis (z, y, x or y, x): centroid, first and end index.
        shape: Shape of the label volume (for ``touches_border``).
        spacing: Micrometres per voxel (validated, see `check_spacing`), or None.
        intensity: (mean, std, min, max) per object, or None.
    """
    axes = AXES[-len(shape):]
    table: dict[str, np.ndarray] = {"label": np.asarray(label).astype(np.int64),
                                    "voxels": np.asarray(voxels).astype(np.int64)}
    for axis, centroid in zip(axes, centroids):
        table[f"centroid_{axis}"] = np.asarray(centroid, np.float64)
    for axis, start in zip(axes, starts):
        table[f"bbox_{axis}0"] = np.asarray(start).astype(np.int64)
    for axis, stop in zip(axes, stops):
        table[f"bbox_{axis}1"] = np.asarray(stop).astype(np.int64)
    touches = np.zeros(len(table["label"]), dtype=bool)
    for i, axis in enumerate(axes):
        touches |= (table[f"bbox_{axis}0"] == 0) | (table[f"bbox_{axis}1"] == shape[i])
    table["touches_border"] = touches
    if spacing is not None:
        unit = float(np.prod(spacing))
        size = table["voxels"] * unit
        table["volume_um3" if len(axes) == 3 else "area_um2"] = size
        for i, axis in enumerate(axes):
            table[f"centroid_{axis}_um"] = table[f"centroid_{axis}"] * spacing[i]
        table["equivalent_diameter_um"] = ((6.0 * size / np.pi) ** (1.0 / 3.0) if len(axes) == 3
                                           else np.sqrt(4.0 * size / np.pi))
    if intensity is not None:
        for name, values in zip(("mean", "std", "min", "max"), intensity):
            table[f"intensity_{name}"] = np.asarray(values)
    return table


def write_table_csv(path: str | os.PathLike, table: dict[str, np.ndarray]) -> None:
    """Write a column table (as returned by `measure`) to CSV, atomically; floats written exactly (shortest repr)."""
    from mediar3d.io import atomic_output

    columns = list(table)
    with atomic_output(path) as temp, open(temp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in zip(*(table[c] for c in columns)):
            writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else
                             (str(bool(v)) if isinstance(v, np.bool_) else v) for v in row])
