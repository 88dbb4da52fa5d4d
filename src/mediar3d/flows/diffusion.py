"""Cellpose heat diffusion, one object at a time on its own bounding box.

Cellpose (v4, ``dynamics.masks_to_flows_gpu(_3d)``) puts a unit heat source on each
object's centre (the object voxel nearest to the mean of its coordinates) and, for
``niter`` Jacobi steps, replaces every object voxel by the mean of its neighbourhood,
counting neighbours outside the object as 0: a 7-point stencil (self + 6 faces) divided
by 7 in 3D, the 3x3 stencil divided by 9 in 2D. The flow is the central difference of the
heat ``T`` (``T[z+1] - T[z-1]`` ...), normalised to unit length.

Here the same diffusion runs per object on its bounding box (padded by one voxel), so the
cost grows with the foreground volume rather than with objects x volume, and objects are
spread over threads with numba. Two deliberate differences from Cellpose: the number of
steps is taken from each object's own bounding box (Cellpose uses the largest object's for
all), and the gradient at a voxel that touches another object reads that neighbour as 0
(Cellpose reads the other object's heat there).

Both 2D and 3D kernels take a 3D label stack ``(S, Y, X)`` with 1..N labels and a
``(N, 6)`` box table; in 2D every object lies in one slice of the stack, which lets
:func:`~mediar3d.flows.ortho.ortho2d_flows` treat all slices of a volume in one call.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage

__all__ = [
    "object_boxes",
    "object_boxes_reference",
    "default_niter",
    "diffuse_flows",
    "diffuse_flows_reference",
    "flow_errors",
]

_EPS = 1e-60  # as Cellpose: 0 / (0 + eps) keeps an exact zero gradient at zero


def object_boxes(labels: np.ndarray) -> np.ndarray:
    """Bounding boxes of labels 1..N of a 3D stack (fast: numba over z-slabs).

    Args:
        labels: integer array (S, Y, X), background 0, labels 1..N (gaps allowed).

    Returns:
        int64 array (N, 6): ``z0, z1, y0, y1, x0, x1`` (half-open); an absent label has
        ``z1 == z0 == 0``. Equal to :func:`object_boxes_reference`.
    """
    labels = np.ascontiguousarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3D stack (S, Y, X), got shape {labels.shape}")
    n = int(labels.max()) if labels.size else 0
    if n <= 0:
        return np.zeros((0, 6), np.int64)
    chunks = max(1, min(labels.shape[0], numba.get_num_threads()))
    return _boxes_kernel(labels, n, chunks)


def object_boxes_reference(labels: np.ndarray) -> np.ndarray:
    """:func:`object_boxes` with ``scipy.ndimage.find_objects`` (slower; for tests)."""
    slices = ndimage.find_objects(labels)
    boxes = np.zeros((len(slices), 6), np.int64)
    for k, sl in enumerate(slices):
        if sl is not None:
            boxes[k] = (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop, sl[2].start, sl[2].stop)
    return boxes


@numba.njit(parallel=True, cache=True)
def _boxes_kernel(labels, n, chunks):  # pragma: no cover - compiled
    """Per slab of z-planes, each label's min/max z, y, x; then the slabs' boxes merged."""
    nz, ny, nx = labels.shape
    big = np.int64(1) << 62
    part = np.empty((chunks, n, 6), np.int64)
    for c in numba.prange(chunks):
        box = part[c]
        for k in range(n):
            box[k, 0] = big
            box[k, 1] = -1
            box[k, 2] = big
            box[k, 3] = -1
            box[k, 4] = big
            box[k, 5] = -1
        for z in range(c * nz // chunks, (c + 1) * nz // chunks):
            for y in range(ny):
                for x in range(nx):
                    v = labels[z, y, x]
                    if v > 0:
                        k = v - 1
                        if z < box[k, 0]:
                            box[k, 0] = z
                        if z > box[k, 1]:
                            box[k, 1] = z
                        if y < box[k, 2]:
                            box[k, 2] = y
                        if y > box[k, 3]:
                            box[k, 3] = y
                        if x < box[k, 4]:
                            box[k, 4] = x
                        if x > box[k, 5]:
                            box[k, 5] = x
    out = np.zeros((n, 6), np.int64)
    for k in range(n):
        lo_z, hi_z, lo_y, hi_y, lo_x, hi_x = big, -1, big, -1, big, -1
        for c in range(chunks):
            lo_z = min(lo_z, part[c, k, 0])
            hi_z = max(hi_z, part[c, k, 1])
            lo_y = min(lo_y, part[c, k, 2])
            hi_y = max(hi_y, part[c, k, 3])
            lo_x = min(lo_x, part[c, k, 4])
            hi_x = max(hi_x, part[c, k, 5])
        if hi_z >= 0:
            out[k, 0] = lo_z
            out[k, 1] = hi_z + 1
            out[k, 2] = lo_y
            out[k, 3] = hi_y + 1
            out[k, 4] = lo_x
            out[k, 5] = hi_x + 1
    return out


def default_niter(boxes: np.ndarray, ndim: int) -> np.ndarray:
    """Cellpose's number of diffusion steps, taken per object from its own box.

    3D: ``6 * (dz + dy + dx + 3)``; 2D: ``2 * (dy + dx + 2)`` (box extents).

    Args:
        boxes: (N, 6) boxes from :func:`object_boxes`.
        ndim: 2 or 3.

    Returns:
        int64 array (N,).
    """
    ext = boxes[:, 1::2] - boxes[:, 0::2]
    if ndim == 3:
        return 6 * (ext.sum(axis=1) + 3)
    return 2 * (ext[:, 1] + ext[:, 2] + 2)


# ---------------------------------------------------------------------------------------
# numba kernels
@numba.njit(cache=True, nogil=True)
def _jacobi_step(t, t2, m, lo, hi, ndim):  # pragma: no cover - compiled
    """One diffusion step ``t2 = m * mean(stencil of t)`` over the object rows of a padded box.

    Works on the flat arrays with unsigned offsets: the same sums in the same order as
    indexing ``t[z, y, x - 1]``..., but without negative-index checks, so LLVM vectorises
    the row loop (several times faster on the short rows of a nucleus' box).
    """
    nz, ny, nx = t.shape
    tf = t.ravel()
    of = t2.ravel()
    mf = m.ravel()
    one = np.uint64(1)
    sy = np.uint64(nx)
    sz = np.uint64(nx * ny)
    for z in range(1, nz - 1):
        for y in range(1, ny - 1):
            base = np.uint64((z * ny + y) * nx)
            i = base + np.uint64(lo[z, y])
            end = base + np.uint64(hi[z, y])
            if ndim == 3:
                while i < end:
                    of[i] = mf[i] * (tf[i] + tf[i + sz] + tf[i - sz] + tf[i + sy] + tf[i - sy]
                                     + tf[i + one] + tf[i - one]) / 7.0
                    i += one
            else:
                while i < end:
                    of[i] = mf[i] * (tf[i] + tf[i - sy] + tf[i + sy] + tf[i - one] + tf[i + one]
                                     + tf[i - sy - one] + tf[i - sy + one] + tf[i + sy - one]
                                     + tf[i + sy + one]) / 9.0
                    i += one


@numba.njit(cache=True, nogil=True)
def _object_mask(labels, box, lab, proto):  # pragma: no cover - compiled
    """Mask (padded box, dtype of ``proto``), its row extents and its centre voxel."""
    z0, z1, y0, y1, x0, x1 = box[0], box[1], box[2], box[3], box[4], box[5]
    nz, ny, nx = z1 - z0 + 2, y1 - y0 + 2, x1 - x0 + 2
    m = np.zeros((nz, ny, nx), proto.dtype)
    # first and last+1 object voxel of every (z, y) row: the update skips the box corners
    lo = np.full((nz, ny), nx, np.int64)
    hi = np.zeros((nz, ny), np.int64)
    sz = 0.0
    sy = 0.0
    sx = 0.0
    cnt = 0
    for z in range(z0, z1):
        for y in range(y0, y1):
            for x in range(x0, x1):
                if labels[z, y, x] == lab:
                    zz, yy, xx = z - z0 + 1, y - y0 + 1, x - x0 + 1
                    m[zz, yy, xx] = 1.0
                    lo[zz, yy] = min(lo[zz, yy], xx)
                    hi[zz, yy] = xx + 1
                    sz += zz
                    sy += yy
                    sx += xx
                    cnt += 1
    mz, my, mx = sz / cnt, sy / cnt, sx / cnt
    best = np.inf
    cz, cy, cx = 1, 1, 1
    for z in range(1, nz - 1):
        for y in range(1, ny - 1):
            for x in range(1, nx - 1):
                if m[z, y, x] > 0.0:
                    d = (z - mz) ** 2 + (y - my) ** 2 + (x - mx) ** 2
                    if d < best:
                        best = d
                        cz, cy, cx = z, y, x
    return m, lo, hi, cz, cy, cx


@numba.njit(cache=True, nogil=True)
def _object_heat(labels, box, lab, niter, ndim):  # pragma: no cover - compiled
    """Heat T (padded box, float64) and the mask of one object."""
    m, lo, hi, cz, cy, cx = _object_mask(labels, box, lab, np.zeros(1, np.float64))
    t = np.zeros(m.shape, np.float64)
    t2 = np.zeros(m.shape, np.float64)
    for _ in range(niter):
        t[cz, cy, cx] += 1.0
        _jacobi_step(t, t2, m, lo, hi, ndim)
        tmp = t
        t = t2
        t2 = tmp
    return t, m


@numba.njit(cache=True, nogil=True)
def _object_heat_single(labels, box, lab, niter, ndim):  # pragma: no cover - compiled
    """:func:`_object_heat` in float32, each step one flat loop over the whole box.

    About 2x faster (8 float32 lanes, no per-row bookkeeping); the heat differs from the
    float64 one by float32 rounding, which moves a flow-consistency error by ~1e-6.
    """
    m, lo, hi, cz, cy, cx = _object_mask(labels, box, lab, np.zeros(1, np.float32))
    t = np.zeros(m.shape, np.float32)
    t2 = np.zeros(m.shape, np.float32)
    nz, ny, nx = m.shape
    mf = m.ravel()
    one = np.uint64(1)
    sy = np.uint64(nx)
    sz = np.uint64(nx * ny)
    first = sz + sy + one
    last = np.uint64(nz * ny * nx) - sz - sy - one
    w3 = np.float32(1.0 / 7.0)
    w2 = np.float32(1.0 / 9.0)
    for _ in range(niter):
        t[cz, cy, cx] += np.float32(1.0)
        tf = t.ravel()
        of = t2.ravel()
        i = first
        if ndim == 3:
            while i < last:
                of[i] = mf[i] * w3 * (tf[i] + tf[i + sz] + tf[i - sz] + tf[i + sy] + tf[i - sy]
                                      + tf[i + one] + tf[i - one])
                i += one
        else:
            while i < last:
                of[i] = mf[i] * w2 * (tf[i] + tf[i - sy] + tf[i + sy] + tf[i - one] + tf[i + one]
                                      + tf[i - sy - one] + tf[i - sy + one] + tf[i + sy - one]
                                      + tf[i + sy + one])
                i += one
        tmp = t
        t = t2
        t2 = tmp
    return t, m


@numba.njit(parallel=True, cache=True)
def _diffuse_kernel(labels, boxes, niters, ndim, out):  # pragma: no cover - compiled
    n = boxes.shape[0]
    for k in numba.prange(n):
        box = boxes[k]
        if box[1] <= box[0]:
            continue
        t, m = _object_heat(labels, box, k + 1, niters[k], ndim)
        z0, y0, x0 = box[0], box[2], box[4]
        nz, ny, nx = t.shape
        for z in range(1, nz - 1):
            for y in range(1, ny - 1):
                for x in range(1, nx - 1):
                    if m[z, y, x] > 0.0:
                        gy = t[z, y + 1, x] - t[z, y - 1, x]
                        gx = t[z, y, x + 1] - t[z, y, x - 1]
                        if ndim == 3:
                            gz = t[z + 1, y, x] - t[z - 1, y, x]
                            nrm = _EPS + np.sqrt(gz * gz + gy * gy + gx * gx)
                            out[0, z0 + z - 1, y0 + y - 1, x0 + x - 1] = gz / nrm
                            out[1, z0 + z - 1, y0 + y - 1, x0 + x - 1] = gy / nrm
                            out[2, z0 + z - 1, y0 + y - 1, x0 + x - 1] = gx / nrm
                        else:
                            nrm = _EPS + np.sqrt(gy * gy + gx * gx)
                            out[0, z0 + z - 1, y0 + y - 1, x0 + x - 1] = gy / nrm
                            out[1, z0 + z - 1, y0 + y - 1, x0 + x - 1] = gx / nrm


@numba.njit(parallel=True, cache=True)
def _error_kernel(labels, boxes, niters, ndim, field, unit, err):  # pragma: no cover - compiled
    n = boxes.shape[0]
    for k in numba.prange(n):
        box = boxes[k]
        if box[1] <= box[0]:
            continue
        t, m = _object_heat(labels, box, k + 1, niters[k], ndim)
        err[k] = _object_error(t, m, box, ndim, field, unit)


@numba.njit(parallel=True, cache=True)
def _error_kernel_single(labels, boxes, niters, ndim, field, unit, err):  # pragma: no cover - compiled
    n = boxes.shape[0]
    for k in numba.prange(n):
        box = boxes[k]
        if box[1] <= box[0]:
            continue
        t, m = _object_heat_single(labels, box, k + 1, niters[k], ndim)
        err[k] = _object_error(t, m, box, ndim, field, unit)


@numba.njit(cache=True, nogil=True)
def _object_error(t, m, box, ndim, field, unit):  # pragma: no cover - compiled
    """Mean squared difference between the unit gradient of ``t`` and ``field`` (x ``unit``) over the mask."""
    z0, y0, x0 = box[0], box[2], box[4]
    nz, ny, nx = t.shape
    acc = 0.0
    cnt = 0
    for z in range(1, nz - 1):
        for y in range(1, ny - 1):
            for x in range(1, nx - 1):
                if m[z, y, x] > 0.0:
                    gz = 0.0
                    if ndim == 3:
                        gz = np.float64(t[z + 1, y, x]) - np.float64(t[z - 1, y, x])
                    gy = np.float64(t[z, y + 1, x]) - np.float64(t[z, y - 1, x])
                    gx = np.float64(t[z, y, x + 1]) - np.float64(t[z, y, x - 1])
                    nrm = _EPS + np.sqrt(gz * gz + gy * gy + gx * gx)
                    zz, yy, xx = z0 + z - 1, y0 + y - 1, x0 + x - 1
                    dz = gz / nrm - field[zz, yy, xx, 0] * unit
                    dy = gy / nrm - field[zz, yy, xx, 1] * unit
                    dx = gx / nrm - field[zz, yy, xx, 2] * unit
                    acc += dz * dz + dy * dy + dx * dx
                    cnt += 1
    return acc / cnt


# ---------------------------------------------------------------------------------------
def _check_stack(labels: np.ndarray, ndim: int) -> np.ndarray:
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    return np.ascontiguousarray(labels, dtype=np.int32)


def diffuse_flows(labels: np.ndarray, ndim: int, niter: int | None = None,
                  boxes: np.ndarray | None = None) -> np.ndarray:
    """Unit heat-diffusion flows of every object of a label stack (fast, numba).

    Args:
        labels: int array (S, Y, X), labels 1..N (gaps allowed), 0 background. For
            ``ndim=2`` each label must lie in one slice of the stack.
        ndim: 3 for 3D objects, 2 for per-slice 2D objects.
        niter: diffusion steps for every object; None for Cellpose's per-object default.
        boxes: precomputed :func:`object_boxes` (optional).

    Returns:
        float32 array (3, S, Y, X) ordered (dz, dy, dx) for ``ndim=3``, or (2, S, Y, X)
        ordered (dy, dx) for ``ndim=2``; zero outside objects.
    """
    labels = _check_stack(labels, ndim)
    if boxes is None:
        boxes = object_boxes(labels)
    niters = default_niter(boxes, ndim) if niter is None else np.full(len(boxes), int(niter))
    out = np.zeros((ndim,) + labels.shape, np.float32)
    if len(boxes):
        _diffuse_kernel(labels, boxes, niters.astype(np.int64), ndim, out)
    return out


def flow_errors(labels: np.ndarray, field: np.ndarray, ndim: int,
                boxes: np.ndarray | None = None, single: bool = False, unit: float = 1.0,
                step_share: float = 1.0) -> np.ndarray:
    """Cellpose's flow-consistency error of every object, without storing its flows.

    The error of an object is the mean over its voxels of the squared distance between
    its own diffusion flow (recomputed from the mask) and ``field``.

    Args:
        labels: int array (S, Y, X), labels 1..N (gaps allowed).
        field: float32 array (S, Y, X, 3) with components (dz, dy, dx) (dz = 0 in 2D), or an
            int16 fixed-point one (:func:`mediar3d.postprocess.follow.prepare_field`), read in
            units of ``unit``.
        ndim: 3, or 2 for per-slice objects.
        boxes: precomputed :func:`object_boxes` (optional).
        single: diffuse in float32 (about 2x faster; errors move by ~1e-6, so a mask
            changes side of a threshold only when it sits that close to it).
        unit: scale of an int16 ``field``.
        step_share: share of Cellpose's per-object diffusion steps (:func:`default_niter`)
            to run (at least one step); the time is proportional to it.

    Returns:
        float64 array (N,): error of label k+1 at index k; NaN for absent labels.
    """
    if not 0.0 < step_share <= 1.0:
        raise ValueError(f"step_share must be in (0, 1], got {step_share}")
    labels = _check_stack(labels, ndim)
    if boxes is None:
        boxes = object_boxes(labels)
    err = np.full(len(boxes), np.nan)
    if len(boxes):
        kernel = _error_kernel_single if single else _error_kernel
        array = np.ascontiguousarray(field) if field.dtype == np.int16 else np.ascontiguousarray(field, np.float32)
        niters = np.maximum(1, np.round(default_niter(boxes, ndim) * float(step_share))).astype(np.int64)
        kernel(labels, boxes, niters, ndim, array, float(unit), err)
    return err


# ---------------------------------------------------------------------------------------
def diffuse_flows_reference(labels: np.ndarray, ndim: int, niter: int | None = None) -> np.ndarray:
    """Plain NumPy version of :func:`diffuse_flows` (slow; for tests).

    Same arguments and result; every object is diffused with whole-array slicing on its
    padded box.
    """
    labels = _check_stack(labels, ndim)
    out = np.zeros((ndim,) + labels.shape, np.float32)
    for k, sl in enumerate(ndimage.find_objects(labels)):
        if sl is None:
            continue
        box = np.array([sl[0].start, sl[0].stop, sl[1].start, sl[1].stop, sl[2].start, sl[2].stop])
        steps = int(default_niter(box[None], ndim)[0]) if niter is None else int(niter)
        m = np.pad(labels[sl] == k + 1, 1).astype(np.float64)
        coords = np.argwhere(m > 0)
        centre = tuple(coords[np.argmin(((coords - coords.mean(0)) ** 2).sum(1))])
        t = np.zeros_like(m)
        c = (slice(1, -1),) * 3
        for _ in range(steps):
            t[centre] += 1.0
            if ndim == 3:
                s = (t[c] + t[2:, 1:-1, 1:-1] + t[:-2, 1:-1, 1:-1] + t[1:-1, 2:, 1:-1]
                     + t[1:-1, :-2, 1:-1] + t[1:-1, 1:-1, 2:] + t[1:-1, 1:-1, :-2])
                new = m[c] * s / 7.0
            else:
                s = (t[c] + t[1:-1, :-2, 1:-1] + t[1:-1, 2:, 1:-1] + t[1:-1, 1:-1, :-2]
                     + t[1:-1, 1:-1, 2:] + t[1:-1, :-2, :-2] + t[1:-1, :-2, 2:]
                     + t[1:-1, 2:, :-2] + t[1:-1, 2:, 2:])
                new = m[c] * s / 9.0
            t = np.zeros_like(t)
            t[c] = new
        grads = [t[1:-1, 2:, 1:-1] - t[1:-1, :-2, 1:-1], t[1:-1, 1:-1, 2:] - t[1:-1, 1:-1, :-2]]
        if ndim == 3:
            grads.insert(0, t[2:, 1:-1, 1:-1] - t[:-2, 1:-1, 1:-1])
        g = np.stack(grads)
        g = g / (_EPS + np.sqrt((g ** 2).sum(0)))
        inside = m[c] > 0
        for i in range(ndim):
            out[i][sl][inside] = g[i][inside]
    return out
