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
rather than ``niter``. :func:`follow_flows_reference` is the plain version with SciPy's
``map_coordinates`` for every voxel and every step.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage

__all__ = ["prepare_field", "foreground_coords", "follow_flows", "follow_flows_reference"]


@numba.njit(parallel=True, cache=True)
def _prepare_kernel(flows, fg, max_norm, out):  # pragma: no cover - compiled
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
                out[z, y, x, 0] = v0 * w
                out[z, y, x, 1] = v1 * w
                out[z, y, x, 2] = v2 * w


def prepare_field(flows: np.ndarray, fg: np.ndarray | None = None,
                  max_norm: float | None = 1.0) -> np.ndarray:
    """Interleave a flow field for following, capping its length and zeroing the background.

    Args:
        flows: (3, Z, Y, X) ordered (dz, dy, dx), or (2, Y, X) ordered (dy, dx).
        fg: bool mask (Z, Y, X) or (Y, X) of voxels whose flows are kept (None: all).
        max_norm: vectors longer than this are scaled down to it (None or 0: unchanged).

    Returns:
        float32 array (Z, Y, X, 3) with components (dz, dy, dx); a 2D input gives Z = 1 and
        dz = 0.
    """
    spatial = flows.shape[1:]
    flows3 = flows if flows.shape[0] == 3 else flows[:, None]
    if fg is None:
        fg = np.ones(spatial, bool)
    fg3 = np.asarray(fg, bool).reshape(flows3.shape[1:])
    out = np.empty(flows3.shape[1:] + (3,), np.float32)
    _prepare_kernel(np.ascontiguousarray(flows3, dtype=np.float32), np.ascontiguousarray(fg3),
                    float(max_norm or 0.0), out)
    return out


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


@numba.njit(parallel=True, cache=True)
def _follow_kernel(field, coords, niter, tol, out):  # pragma: no cover - compiled
    nz, ny, nx = field.shape[0] - 1.0, field.shape[1] - 1.0, field.shape[2] - 1.0
    n = coords.shape[0]
    for i in numba.prange(n):
        pz = np.float64(coords[i, 0])
        py = np.float64(coords[i, 1])
        px = np.float64(coords[i, 2])
        qz, qy, qx = pz, py, px  # position one step earlier
        for t in range(niter):
            v0, v1, v2 = _interp(field, pz, py, px)
            rz = min(max(pz + v0, 0.0), nz)
            ry = min(max(py + v1, 0.0), ny)
            rx = min(max(px + v2, 0.0), nx)
            step = max(abs(rz - pz), abs(ry - py), abs(rx - px))
            if step < tol:  # fixed point
                pz, py, px = rz, ry, rx
                break
            if t > 0 and max(abs(rz - qz), abs(ry - qy), abs(rx - qx)) < tol:
                # 2-cycle: positions alternate between (rz, ry, rx) and (pz, py, px)
                if (niter - t - 1) % 2 == 0:
                    pz, py, px = rz, ry, rx
                break
            qz, qy, qx = pz, py, px
            pz, py, px = rz, ry, rx
        out[i, 0] = pz
        out[i, 1] = py
        out[i, 2] = px


def follow_flows(field: np.ndarray, coords: np.ndarray, niter: int = 200,
                 tol: float = 1e-4) -> np.ndarray:
    """Final positions of voxels after ``niter`` Euler steps along ``field`` (fast).

    Args:
        field: float32 (Z, Y, X, 3) from :func:`prepare_field`, components (dz, dy, dx).
        coords: (N, 3) integer or float start positions (z, y, x) in voxel units.
        niter: number of steps.
        tol: a voxel whose step (or two-step move) falls below this many voxels has settled.

    Returns:
        float32 array (N, 3): positions (z, y, x) after ``niter`` steps, inside the volume.
    """
    coords = np.ascontiguousarray(coords)
    out = np.empty((coords.shape[0], 3), np.float32)
    if coords.shape[0]:
        _follow_kernel(np.ascontiguousarray(field, dtype=np.float32), coords, int(niter),
                       float(tol), out)
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
