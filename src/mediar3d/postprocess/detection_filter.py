"""Detection-guided filtering: keep only the predicted masks that contain a detected centre.

A detector (spot finder, manual clicks in napari, a nuclear-marker channel) gives cell
centres as a point list ``(z, y, x)`` or as a marker label volume; predicted masks that
hold no centre are dropped. Everything is vectorised: the label volume is indexed at the
points (or at the marker voxels) once and :func:`fastremap.mask_except` zeroes every other
label, so the cost is one pass over the volume whatever the number of masks.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import fastremap
import numpy as np

from mediar3d.errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "filter_by_markers",
    "filter_by_points",
    "filter_by_points_reference",
    "labels_at_points",
    "read_points_csv",
]

#: Column names accepted for the coordinates, first match wins: (z, y, x) or napari's axis-N.
_COLUMN_SETS = (("z", "y", "x"), ("axis-0", "axis-1", "axis-2"), ("y", "x"), ("axis-0", "axis-1"))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_points_csv(path: str | Path, *, ndim: int = 3) -> np.ndarray:
    """Read centres from a CSV file as a float64 array (N, ndim) in (z, y, x) / (y, x) order.

    With a header, the columns named ``z, y, x`` (or napari's ``axis-0, axis-1, axis-2``)
    are used, in that order, whatever other columns there are. Without a header, the last
    ``ndim`` columns are taken as (z, y, x). Empty lines are skipped.

    Args:
        path: CSV file (comma, semicolon or tab separated).
        ndim: 3 for volumes, 2 for images.

    Raises:
        InputError: unreadable file, missing columns or non-numeric coordinates.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(f"points file {path}: cannot be read ({err.strerror or err})") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(text.splitlines(), dialect) if any(cell.strip() for cell in row)]
    if not rows:
        return np.zeros((0, ndim), dtype=np.float64)
    header = [cell.strip().lower() for cell in rows[0]]
    if all(_is_number(cell) for cell in header if cell):
        columns = list(range(len(header) - ndim, len(header)))
        body = rows
        if columns[0] < 0:
            raise InputError(f"points file {path}: rows have {len(header)} columns, need {ndim} (z, y, x)")
    else:
        names = next((names for names in _COLUMN_SETS if len(names) == ndim and set(names) <= set(header)), None)
        if names is None:
            wanted = " or ".join(", ".join(n) for n in _COLUMN_SETS if len(n) == ndim)
            raise InputError(f"points file {path}: header {rows[0]} has no columns {wanted}")
        columns = [header.index(name) for name in names]
        body = rows[1:]
    try:
        points = np.array([[float(row[c]) for c in columns] for row in body], dtype=np.float64).reshape(-1, ndim)
    except (ValueError, IndexError) as err:
        raise InputError(f"points file {path}: a row has a missing or non-numeric coordinate ({err})") from None
    if not np.isfinite(points).all():
        raise InputError(f"points file {path}: coordinates must be finite numbers")
    return points


def _point_indices(points: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != len(shape):
        raise InputError(f"points of shape {points.shape}: expected (N, {len(shape)}) coordinates in "
                         f"{'(z, y, x)' if len(shape) == 3 else '(y, x)'} order for labels of shape {shape}")
    index = np.rint(points).astype(np.int64)
    outside = ((index < 0) | (index >= np.array(shape))).any(axis=1)
    if outside.any():
        raise InputError(f"{int(outside.sum())} of {len(points)} points fall outside the labels of shape {shape}; "
                         "are the columns in (z, y, x) order and in pixels?")
    return tuple(index.T)


def labels_at_points(labels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Label under each point (rounded to the nearest voxel): int array (N,), 0 = background.

    Args:
        labels: Instance labels (z, y, x) or (y, x).
        points: (N, labels.ndim) coordinates in the same axis order, in pixels.

    Raises:
        InputError: wrong point dimensions, or points outside the volume.
    """
    labels = np.asarray(labels)
    return labels[_point_indices(points, labels.shape)]


def _keep(labels: np.ndarray, ids: np.ndarray, renumber: bool) -> np.ndarray:
    keep = fastremap.unique(np.asarray(ids))
    keep = keep[keep != 0]
    out = fastremap.mask_except(np.array(labels, copy=True, order="C"), [int(k) for k in keep], in_place=True)
    if renumber:
        out, _ = fastremap.renumber(out, in_place=True)
    n_before = int(fastremap.unique(labels).size - (labels.min(initial=0) == 0))
    logger.info("detection filter keeps %d of %d masks", keep.size, n_before)
    return out


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.ndim not in (2, 3):
        raise InputError(f"labels of dtype {labels.dtype} and shape {labels.shape}: expected integer (z, y, x) "
                         "or (y, x) instance labels")
    return labels


def filter_by_points(labels: np.ndarray, points: np.ndarray, *, renumber: bool = False) -> np.ndarray:
    """Drop every mask that contains none of the points.

    Args:
        labels: Instance labels (z, y, x) or (y, x), integers, 0 = background.
        points: (N, ndim) centres in the same axis order, in pixels (rounded to voxels).
        renumber: Relabel the kept masks 1..K (default: keep their ids).

    Returns:
        New labels of the same shape and dtype with the masks without a point set to 0.

    Raises:
        InputError: non-integer labels, wrong point dimensions, points outside the volume.
    """
    labels = _check_labels(labels)
    return _keep(labels, labels_at_points(labels, points), renumber)


def filter_by_markers(labels: np.ndarray, markers: np.ndarray, *, renumber: bool = False) -> np.ndarray:
    """Drop every mask that overlaps no marker voxel (markers: any non-zero value).

    Args:
        labels: Instance labels (z, y, x) or (y, x).
        markers: Marker image of the same shape (labels or a binary mask of detected centres).
        renumber: Relabel the kept masks 1..K (default: keep their ids).

    Returns:
        New labels of the same shape and dtype.

    Raises:
        InputError: non-integer labels or shapes that differ.
    """
    labels = _check_labels(labels)
    markers = np.asarray(markers)
    if markers.shape != labels.shape:
        raise InputError(f"markers of shape {markers.shape} do not match labels of shape {labels.shape}")
    return _keep(labels, labels[markers != 0], renumber)


def filter_by_points_reference(labels: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Plain loop over masks doing what :func:`filter_by_points` does (slow; for tests)."""
    labels = np.asarray(labels)
    out = labels.copy()
    rounded = [tuple(round(c) for c in p) for p in np.asarray(points, dtype=np.float64)]
    for k in np.unique(labels):
        if k == 0:
            continue
        if not any(labels[p] == k for p in rounded):
            out[labels == k] = 0
    return out
