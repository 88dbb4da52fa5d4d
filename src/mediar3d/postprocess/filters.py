"""Per-mask clean-up of an instance label volume (Algorithm 4, step 6).

Every operation works on each mask separately, so touching masks keep their own labels
(never binarise and relabel by connected components).
"""

from __future__ import annotations

import fastremap
import numba
import numpy as np
from scipy import ndimage

from mediar3d.flows.diffusion import flow_errors, object_boxes
from mediar3d.postprocess.follow import field_unit

__all__ = ["label_counts", "size_filter", "relative_size_filter", "weighted_median", "drop_labels",
           "flow_consistency_errors", "fill_holes", "fill_holes_reference", "renumber", "widen_into"]


#: Labels counted or remapped at a time (np.bincount casts its input to int64: a slab, not the volume).
_SLAB = 1 << 22


def _flat_view(labels: np.ndarray) -> np.ndarray:
    """A flat view of ``labels`` (a copy only for a non-contiguous array, which is then not written back)."""
    return labels.reshape(-1) if labels.flags.c_contiguous else np.ravel(labels)


def label_counts(labels: np.ndarray) -> np.ndarray:
    """Voxels of every label, ``np.bincount(labels.ravel())``, counted a slab at a time.

    Args:
        labels: non-negative integer labels of any shape.

    Returns:
        int64 array (max + 1,): voxels of label k at index k.
    """
    flat = _flat_view(labels)
    counts = np.zeros(int(flat.max(initial=0)) + 1, np.int64)
    for start in range(0, flat.size, _SLAB):
        part = np.bincount(flat[start:start + _SLAB], minlength=counts.size)
        counts += part
    return counts


def drop_labels(labels: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Set the given labels to 0, in place.

    Args:
        labels: int32 labels of any shape, values 0..N.
        drop: bool array (N + 1,) marking the labels to remove (index 0 ignored).

    Returns:
        ``labels``.
    """
    if drop[1:].any():
        lut = np.arange(len(drop), dtype=labels.dtype)
        lut[drop] = 0
        lut[0] = 0
        if not labels.flags.c_contiguous:
            labels[...] = lut[labels]
            return labels
        flat = labels.reshape(-1)
        for start in range(0, flat.size, _SLAB):  # in place, a slab at a time
            part = flat[start:start + _SLAB]
            part[...] = lut[part]
    return labels


def size_filter(labels: np.ndarray, *, min_size: int = 15, max_size: float | None = None) -> np.ndarray:
    """Remove masks with fewer than ``min_size`` or more than ``max_size`` voxels, in place.

    Args:
        labels: int32 labels 0..N of any shape.
        min_size: smallest mask kept (<= 0 keeps all).
        max_size: largest mask kept (None keeps all).

    Returns:
        ``labels``.
    """
    counts = label_counts(labels)
    drop = np.zeros(len(counts), bool)
    if min_size > 0:
        drop |= counts < min_size
    if max_size is not None:
        drop |= counts > max_size
    return drop_labels(labels, drop)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float | None:
    """Median of ``values`` where each counts ``weights`` times (None for no values or no weight)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if values.size == 0 or weights.sum() <= 0:
        return None
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def relative_size_filter(labels: np.ndarray, min_fraction: float) -> np.ndarray:
    """Remove masks smaller than ``min_fraction`` of the typical mask, in place.

    The typical mask size is the voxel-weighted median of the mask sizes (the size of the
    mask a typical foreground voxel belongs to), so many small fragments do not pull it
    down. Fragments of a nucleus split by the flows and specks at the edges of dim
    nuclei are a small fraction of it; whole nuclei, even small ones, rarely are.

    Args:
        labels: int32 labels 0..N of any shape.
        min_fraction: smallest mask kept, as a fraction of the typical mask (<= 0 keeps all).

    Returns:
        ``labels``.
    """
    if min_fraction <= 0:
        return labels
    counts = label_counts(labels)
    present = counts[1:] > 0
    typical = weighted_median(counts[1:][present], counts[1:][present])
    if typical is None:
        return labels
    drop = counts < float(min_fraction) * typical
    drop[0] = False
    return drop_labels(labels, drop)


#: Share of Cellpose's diffusion steps the flow check recomputes each mask's flows with
#: (:func:`flow_consistency_errors`). The check's time is proportional to it; at half the
#: steps the errors of the bundled model's masks moved by at most 0.009 (a third: 0.02)
#: and the masks of all 10 volumes of the validation panel stayed identical (see
#: benchmarks/RESULTS.md, 2026-12-07), while thresholds are tuned in steps of 0.2.
FLOW_CHECK_STEP_SHARE = 0.5


def flow_consistency_errors(labels: np.ndarray, field: np.ndarray, *, single: bool = True) -> np.ndarray:
    """Flow-consistency error of every mask (Cellpose's ``flow_error``, in 2D and 3D).

    The error of a mask is the mean, over its voxels, of the squared difference between
    the unit flows recomputed from the mask alone (heat diffusion with
    :data:`FLOW_CHECK_STEP_SHARE` of Cellpose's steps) and the given flows.

    Args:
        labels: int32 labels 0..N, (Z, Y, X) or (Y, X).
        field: (Z, Y, X, 3) flows (dz, dy, dx) from
            :func:`~mediar3d.postprocess.follow.prepare_field` (Z = 1, dz = 0 in 2D), float32
            or int16 fixed point (read in its :func:`~mediar3d.postprocess.follow.field_unit`).
        single: recompute the flows in float32 (fast; errors within ~1e-6 of the float64
            ones, see :func:`mediar3d.flows.diffusion.flow_errors`); False for float64.

    Returns:
        float64 array (N + 1,): error of label k at index k; NaN at 0 and absent labels.
    """
    ndim = labels.ndim
    stack = labels if ndim == 3 else labels[None]
    err = flow_errors(stack, field, ndim, boxes=object_boxes(stack), single=single, unit=field_unit(field),
                      step_share=FLOW_CHECK_STEP_SHARE)
    return np.concatenate([[np.nan], err])


@numba.njit(cache=True)
def _fill_holes_kernel(labels, boxes, planar):  # pragma: no cover - compiled
    """Per mask, in label order: flood the box from its faces through voxels of other labels
    (6-connected; faces and moves in y, x only when ``planar``) and give the unreached 0s the label."""
    ny, nx = labels.shape[1], labels.shape[2]
    cap = 0
    for k in range(boxes.shape[0]):
        cap = max(cap, (boxes[k, 1] - boxes[k, 0]) * (boxes[k, 3] - boxes[k, 2]) * (boxes[k, 5] - boxes[k, 4]))
    seen = np.zeros(cap, np.bool_)
    queue = np.empty(cap, np.int64)
    for k in range(boxes.shape[0]):
        z0, z1, y0, y1, x0, x1 = boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3], boxes[k, 4], boxes[k, 5]
        if z1 <= z0:
            continue
        lab = k + 1
        bz, by, bx = z1 - z0, y1 - y0, x1 - x0
        n = bz * by * bx
        seen[:n] = False
        tail = 0
        for z in range(bz):
            for y in range(by):
                for x in range(bx):
                    face = y == 0 or y == by - 1 or x == 0 or x == bx - 1
                    if not planar:
                        face = face or z == 0 or z == bz - 1
                    if face and labels[z0 + z, y0 + y, x0 + x] != lab:
                        q = (z * by + y) * bx + x
                        seen[q] = True
                        queue[tail] = q
                        tail += 1
        head = 0
        while head < tail:
            q = queue[head]
            head += 1
            z = q // (by * bx)
            y = (q // bx) % by
            x = q % bx
            for d in range(6):
                zz, yy, xx = z, y, x
                if d == 0:
                    zz -= 1
                elif d == 1:
                    zz += 1
                elif d == 2:
                    yy -= 1
                elif d == 3:
                    yy += 1
                elif d == 4:
                    xx -= 1
                else:
                    xx += 1
                if zz < 0 or zz >= bz or yy < 0 or yy >= by or xx < 0 or xx >= bx:
                    continue
                r = (zz * by + yy) * bx + xx
                if not seen[r] and labels[z0 + zz, y0 + yy, x0 + xx] != lab:
                    seen[r] = True
                    queue[tail] = r
                    tail += 1
        if tail == n:
            continue
        for z in range(bz):
            for y in range(by):
                for x in range(bx):
                    if not seen[(z * by + y) * bx + x] and labels[z0 + z, y0 + y, x0 + x] == 0:
                        labels[z0 + z, y0 + y, x0 + x] = lab


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Fill the holes of each mask with its label, in place.

    A hole is a background region (6-connected in 3D, 4-connected in 2D) enclosed by one
    mask, i.e. not connected to a face of the mask's bounding box through voxels of other
    labels; voxels of other masks inside it are left alone. Masks are taken in label
    order, so where holes of two masks overlap the smaller label fills first (the same
    result as :func:`fill_holes_reference`, voxel for voxel).

    Args:
        labels: int32 labels, (Z, Y, X) or (Y, X).

    Returns:
        ``labels``.
    """
    stack = labels if labels.ndim == 3 else labels.reshape((1,) + labels.shape)
    if not stack.flags.c_contiguous or stack.dtype != np.int32:
        return fill_holes_reference(labels)
    boxes = object_boxes(stack)
    if len(boxes):
        _fill_holes_kernel(stack, boxes, labels.ndim == 2)
    return labels


def fill_holes_reference(labels: np.ndarray) -> np.ndarray:
    """Plain version of :func:`fill_holes` (``scipy.ndimage.label`` on every mask's box).

    A hole is a background region (6-connected in 3D, 4-connected in 2D) enclosed by one
    mask; voxels of other masks inside it are left alone.

    Args:
        labels: int32 labels, (Z, Y, X) or (Y, X).

    Returns:
        ``labels``.
    """
    for k, sl in enumerate(ndimage.find_objects(labels)):
        if sl is None:
            continue
        crop = labels[sl]
        outside, n = ndimage.label(crop != k + 1)
        if n == 0:
            continue
        border = np.zeros(n + 1, bool)
        for a in range(crop.ndim):
            for end in (0, -1):
                border[np.take(outside, end, axis=a)] = True
        hole = ~border[outside] & (crop == 0)
        crop[hole] = k + 1
    return labels


def renumber(labels: np.ndarray) -> np.ndarray:
    """Relabel to consecutive 1..N in order of first appearance, as int32.

    Args:
        labels: integer labels of any shape.

    Returns:
        int32 array of the same shape.
    """
    labels = np.ascontiguousarray(labels)
    out, _ = fastremap.renumber(labels, preserve_zero=True, in_place=True)
    return widen_into(labels, out, np.int32)


def widen_into(original: np.ndarray, renumbered: np.ndarray, dtype: type) -> np.ndarray:
    """``renumbered`` as ``dtype``, written back into ``original`` when that has the dtype.

    fastremap returns renumbered labels in the narrowest dtype that holds them, a new array
    even ``in_place``; copying them back into the caller's array (which is no longer needed)
    instead of widening into a third array saves a volume of labels at the peak.
    """
    if renumbered is original or renumbered.dtype == dtype:
        return renumbered
    if original.dtype == dtype and original.shape == renumbered.shape:
        np.copyto(original, renumbered, casting="unsafe")
        return original
    return renumbered.astype(dtype)
