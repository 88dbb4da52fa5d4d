"""Euler integration of voxels along an interpolated flow field (Algorithm 4, steps 1-2).

Every foreground voxel starts at its own grid position and takes ``niter`` steps
``p <- clip(p + v(p), 0, L - 1)``, with ``v`` interpolated (trilinear in 3D, bilinear in 2D)
from the field at voxel centres; positions are in voxel units, one step moves by the
local flow vector.

:func:`follow_flows` is the fast version (numba, parallel over voxels): a voxel stops
being integrated as soon as it has settled on a fixed point or on a 2-cycle (its step, or
its move over two steps, is below ``tol`` voxels), and its final position is then read off
that point or the cycle phase that step ``niter`` lands on. Most voxels settle within a
few steps of reaching their centre, so the cost follows the distance to the centre
rather than ``niter``. The default tolerance, :data:`SETTLE_TOL` (0.01 voxel), stops a voxel
while it may still creep towards its fixed point by under 1 % of a voxel per step: its
position can then differ from the ``niter``-step one by a few hundredths of a voxel, which
moves a few percent of end points to a neighbouring bin but leaves the labels equal except
for a handful of voxels (the basins of step 4 take in neighbouring bins), for 1.6-2.7x fewer
steps than ``tol=1e-4`` (mean 43 -> 16 steps per voxel on exact flows, 35 -> 22 on a network's).
:func:`follow_flows_reference` is the plain version with SciPy's
``map_coordinates`` for every voxel and every step.

Memory: :func:`follow_to_bins` is :func:`follow_flows` followed by
:func:`mediar3d.postprocess.seeds.endpoint_bins` in one pass that reads the start positions
off the foreground mask (no (N, 3) start or end positions are stored) and writes each voxel's
end-point bin (int32 below 2**31 voxels). A field may be stored as int16 fixed point
(:data:`INT16_UNIT` voxels per unit, for flows capped at length <= 1): half of float32's
memory, and a resolution of 3e-5 voxels, finer than the float16 flows it is made from.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage

__all__ = ["prepare_field", "field_unit", "FIELD_SLAB_VOXELS", "SETTLE_TOL", "foreground_coords", "follow_flows",
           "follow_to_bins", "follow_flows_reference", "INT16_UNIT"]

#: Voxels per unit of an int16 field (the largest component, 1 voxel, is stored as 32767).
INT16_UNIT = 1.0 / 32767.0
#: A voxel whose step (or two-step move) is below this many voxels has settled (see above).
SETTLE_TOL = 1e-2
#: Voxels converted to float32 at a time when a field is made from float16 flows.
FIELD_SLAB_VOXELS = 1 << 22


@numba.njit(parallel=True, cache=True)
def _prepare_kernel(flows, fg, max_norm, scale, quantize, out):  # pragma: no cover - compiled
    nc = flows.shape[0]
    nz, ny, nx = fg.shape
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                v0 = 0.0
                v1 = 0.0
                v2 = 0.0
                if nc == 3:
                    v0 = flows[0, z, y, x]
                    v1 = flows[1, z, y, x]
                    v2 = flows[2, z, y, x]
                else:
                    v1 = flows[0, z, y, x]
                    v2 = flows[1, z, y, x]
                s = 1.0
                if max_norm > 0.0:
                    nrm = np.sqrt(v0 * v0 + v1 * v1 + v2 * v2)
                    if nrm > max_norm:
                        s = max_norm / nrm
                w = s if fg[z, y, x] else 0.0
                if quantize:
                    out[z, y, x, 0] = np.rint(v0 * w * scale)
                    out[z, y, x, 1] = np.rint(v1 * w * scale)
                    out[z, y, x, 2] = np.rint(v2 * w * scale)
                else:
                    out[z, y, x, 0] = v0 * w
                    out[z, y, x, 1] = v1 * w
                    out[z, y, x, 2] = v2 * w


def prepare_field(flows: np.ndarray, fg: np.ndarray | None = None,
                  max_norm: float | None = 1.0, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Interleave a flow field for following, capping its length and zeroing the background.

    Args:
        flows: (3, Z, Y, X) ordered (dz, dy, dx), or (2, Y, X) ordered (dy, dx); float32, or
            float16 (converted a slab at a time: no float32 copy of the whole field is made).
        fg: bool mask (Z, Y, X) or (Y, X) of voxels whose flows are kept (None: all).
        max_norm: vectors longer than this are scaled down to it (None or 0: unchanged).
        dtype: float32, or int16 for a fixed-point field in units of :data:`INT16_UNIT`
            voxels (half the memory; needs ``0 < max_norm <= 1`` so every component fits).

    Returns:
        array (Z, Y, X, 3) of ``dtype`` with components (dz, dy, dx); a 2D input gives Z = 1
        and dz = 0. :func:`field_unit` gives its voxels per unit.

    Raises:
        ValueError: an int16 field asked for flows that are not capped at length <= 1.
    """
    dtype = np.dtype(dtype)
    quantize = dtype == np.int16
    if dtype not in (np.float32, np.int16):
        raise ValueError(f"prepare_field: dtype must be float32 or int16, not {dtype}")
    if quantize and not 0.0 < float(max_norm or 0.0) <= 1.0:
        raise ValueError(f"prepare_field: an int16 field needs 0 < max_norm <= 1, got {max_norm}")
    spatial = flows.shape[1:]
    flows3 = flows if flows.shape[0] == 3 else flows[:, None]
    if fg is None:
        fg = np.ones(spatial, bool)
    fg3 = np.ascontiguousarray(np.asarray(fg, bool).reshape(flows3.shape[1:]))
    out = np.empty(flows3.shape[1:] + (3,), dtype)
    norm, scale = float(max_norm or 0.0), 1.0 / INT16_UNIT
    if flows3.dtype == np.float32:
        _prepare_kernel(np.ascontiguousarray(flows3), fg3, norm, scale, quantize, out)
        return out
    plane = max(1, int(np.prod(flows3.shape[2:])))
    step = max(1, FIELD_SLAB_VOXELS // plane)
    for z0 in range(0, flows3.shape[1], step):
        z1 = min(z0 + step, flows3.shape[1])
        _prepare_kernel(np.ascontiguousarray(flows3[:, z0:z1], dtype=np.float32), fg3[z0:z1], norm, scale,
                        quantize, out[z0:z1])
    return out


def field_unit(field: np.ndarray) -> float:
    """Voxels per stored unit of a field from :func:`prepare_field`: 1 for float, INT16_UNIT for int16."""
    return INT16_UNIT if field.dtype == np.int16 else 1.0


@numba.njit(cache=True)
def _coords_kernel(fg, out):  # pragma: no cover - compiled
    n = 0
    for z in range(fg.shape[0]):
        for y in range(fg.shape[1]):
            for x in range(fg.shape[2]):
                if fg[z, y, x]:
                    out[n, 0] = z
                    out[n, 1] = y
                    out[n, 2] = x
                    n += 1


def foreground_coords(fg: np.ndarray) -> np.ndarray:
    """Grid positions of the foreground voxels, in C order (as ``np.argwhere``), compactly.

    Args:
        fg: bool mask (Z, Y, X).

    Returns:
        int32 array (N, 3) of (z, y, x); a third of ``np.argwhere``'s int64 memory traffic.
    """
    fg = np.ascontiguousarray(fg, dtype=bool)
    out = np.empty((int(np.count_nonzero(fg)), 3), np.int32)
    if out.shape[0]:
        _coords_kernel(fg, out)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _interp(field, pz, py, px):  # pragma: no cover - compiled
    nz, ny, nx = field.shape[0], field.shape[1], field.shape[2]
    z0 = min(int(pz), nz - 1)
    y0 = min(int(py), ny - 1)
    x0 = min(int(px), nx - 1)
    z1 = min(z0 + 1, nz - 1)
    y1 = min(y0 + 1, ny - 1)
    x1 = min(x0 + 1, nx - 1)
    fz = pz - z0
    fy = py - y0
    fx = px - x0
    gz = 1.0 - fz
    gy = 1.0 - fy
    gx = 1.0 - fx
    w000 = gz * gy * gx
    w001 = gz * gy * fx
    w010 = gz * fy * gx
    w011 = gz * fy * fx
    w100 = fz * gy * gx
    w101 = fz * gy * fx
    w110 = fz * fy * gx
    w111 = fz * fy * fx
    v0 = (w000 * field[z0, y0, x0, 0] + w001 * field[z0, y0, x1, 0] + w010 * field[z0, y1, x0, 0]
          + w011 * field[z0, y1, x1, 0] + w100 * field[z1, y0, x0, 0] + w101 * field[z1, y0, x1, 0]
          + w110 * field[z1, y1, x0, 0] + w111 * field[z1, y1, x1, 0])
    v1 = (w000 * field[z0, y0, x0, 1] + w001 * field[z0, y0, x1, 1] + w010 * field[z0, y1, x0, 1]
          + w011 * field[z0, y1, x1, 1] + w100 * field[z1, y0, x0, 1] + w101 * field[z1, y0, x1, 1]
          + w110 * field[z1, y1, x0, 1] + w111 * field[z1, y1, x1, 1])
    v2 = (w000 * field[z0, y0, x0, 2] + w001 * field[z0, y0, x1, 2] + w010 * field[z0, y1, x0, 2]
          + w011 * field[z0, y1, x1, 2] + w100 * field[z1, y0, x0, 2] + w101 * field[z1, y0, x1, 2]
          + w110 * field[z1, y1, x0, 2] + w111 * field[z1, y1, x1, 2])
    return v0, v1, v2


@numba.njit(cache=True, nogil=True, inline="always")
def _follow_point(field, unit, pz, py, px, niter, tol, nz, ny, nx):  # pragma: no cover - compiled
    """End position of one voxel after ``niter`` steps (stopping once settled)."""
    qz, qy, qx = pz, py, px  # position one step earlier
    for t in range(niter):
        v0, v1, v2 = _interp(field, pz, py, px)
        rz = min(max(pz + v0 * unit, 0.0), nz)
        ry = min(max(py + v1 * unit, 0.0), ny)
        rx = min(max(px + v2 * unit, 0.0), nx)
        step = max(abs(rz - pz), abs(ry - py), abs(rx - px))
        if step < tol:  # fixed point
            return rz, ry, rx
        if t > 0 and max(abs(rz - qz), abs(ry - qy), abs(rx - qx)) < tol:
            # 2-cycle: positions alternate between (rz, ry, rx) and (pz, py, px)
            if (niter - t - 1) % 2 == 0:
                return rz, ry, rx
            return pz, py, px
        qz, qy, qx = pz, py, px
        pz, py, px = rz, ry, rx
    return pz, py, px


@numba.njit(parallel=True, cache=True)
def _follow_kernel(field, unit, coords, niter, tol, out):  # pragma: no cover - compiled
    nz, ny, nx = field.shape[0] - 1.0, field.shape[1] - 1.0, field.shape[2] - 1.0
    n = coords.shape[0]
    for i in numba.prange(n):
        pz, py, px = _follow_point(field, unit, np.float64(coords[i, 0]), np.float64(coords[i, 1]),
                                   np.float64(coords[i, 2]), niter, tol, nz, ny, nx)
        out[i, 0] = pz
        out[i, 1] = py
        out[i, 2] = px


@numba.njit(parallel=True, cache=True)
def _follow_bins_kernel(field, unit, fg, starts, niter, tol, out):  # pragma: no cover - compiled
    nz, ny, nx = fg.shape
    hz, hy, hx = nz - 1.0, ny - 1.0, nx - 1.0
    for row in numba.prange(nz * ny):
        z = row // ny
        y = row % ny
        i = starts[row]
        for x in range(nx):
            if fg[z, y, x]:
                pz, py, px = _follow_point(field, unit, np.float64(z), np.float64(y), np.float64(x), niter, tol,
                                           hz, hy, hx)
                # as endpoint_bins on the float32 positions follow_flows returns
                bz = min(max(np.int64(np.rint(np.float32(pz))), 0), nz - 1)
                by = min(max(np.int64(np.rint(np.float32(py))), 0), ny - 1)
                bx = min(max(np.int64(np.rint(np.float32(px))), 0), nx - 1)
                out[i] = (bz * ny + by) * nx + bx
                i += 1


def follow_flows(field: np.ndarray, coords: np.ndarray, niter: int = 200,
                 tol: float = SETTLE_TOL) -> np.ndarray:
    """Final positions of voxels after ``niter`` Euler steps along ``field`` (fast).

    Args:
        field: (Z, Y, X, 3) from :func:`prepare_field` (float32 or int16), components (dz, dy, dx).
        coords: (N, 3) integer or float start positions (z, y, x) in voxel units.
        niter: number of steps.
        tol: a voxel whose step (or two-step move) falls below this many voxels has settled.

    Returns:
        float32 array (N, 3): positions (z, y, x) after ``niter`` steps, inside the volume.
    """
    coords = np.ascontiguousarray(coords)
    out = np.empty((coords.shape[0], 3), np.float32)
    if coords.shape[0]:
        _follow_kernel(_field_array(field), field_unit(field), coords, int(niter), float(tol), out)
    return out


def _field_array(field: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(field) if field.dtype == np.int16 else np.ascontiguousarray(field, dtype=np.float32)


def follow_to_bins(field: np.ndarray, fg: np.ndarray, niter: int = 200, tol: float = SETTLE_TOL) -> np.ndarray:
    """End-point bin of every foreground voxel, lean: equal to
    ``endpoint_bins(follow_flows(field, foreground_coords(fg), niter, tol), fg.shape)``.

    Args:
        field: (Z, Y, X, 3) from :func:`prepare_field` (float32 or int16).
        fg: bool mask (Z, Y, X) of the voxels to follow, each from its own grid position.
        niter, tol: as for :func:`follow_flows`.

    Returns:
        (N,) flat C-order bins of the N foreground voxels in C order: int32 when the volume
        has fewer than 2**31 voxels, else int64.
    """
    fg = np.ascontiguousarray(fg, dtype=bool)
    rows = np.count_nonzero(fg.reshape(-1, fg.shape[-1]), axis=1)
    starts = np.zeros(rows.shape[0], np.int64)
    np.cumsum(rows[:-1], out=starts[1:])
    total = int(starts[-1] + rows[-1]) if rows.shape[0] else 0
    out = np.empty(total, np.int32 if fg.size < 2**31 else np.int64)
    if total:
        _follow_bins_kernel(_field_array(field), field_unit(field), fg, starts, int(niter), float(tol), out)
    return out


def follow_flows_reference(field: np.ndarray, coords: np.ndarray, niter: int = 200) -> np.ndarray:
    """Plain version of :func:`follow_flows`: every voxel takes every step.

    Args:
        field: float32 (Z, Y, X, 3), components (dz, dy, dx).
        coords: (N, 3) start positions (z, y, x).
        niter: number of steps.

    Returns:
        float32 array (N, 3) of final positions (z, y, x).
    """
    p = np.asarray(coords, np.float64).T.copy()
    hi = np.array(field.shape[:3], np.float64)[:, None] - 1.0
    comps = [np.asarray(field[..., c], np.float64) for c in range(3)]
    for _ in range(niter):
        v = np.stack([ndimage.map_coordinates(comp, p, order=1, mode="nearest") for comp in comps])
        p = np.clip(p + v, 0.0, hi)
    return p.T.astype(np.float32)
