"""Numba kernels of the synthetic generator; the plain references live in :mod:`synthetic_shapes`."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["place_numba", "rasterize_numba"]


@njit(cache=True)
def _radius(form: np.ndarray, u: np.ndarray) -> float:
    q = 0.0
    for a in range(u.shape[0]):
        for b in range(u.shape[0]):
            q += u[a] * form[a, b] * u[b]
    return 1.0 / math.sqrt(q)


@njit(cache=True)
def place_numba(order, low, high, uniform, neighbour, direction, reach, priority, forms, bound,
                overlap, n_near):  # pragma: no cover - compiled
    """Numba twin of :func:`mediar3d.data.synthetic_shapes.place_reference` (same inputs and outputs)."""
    n, n_tries, ndim = uniform.shape
    centers = np.zeros((n, ndim))
    placed = np.zeros(n, np.bool_)
    placed_list = np.empty(n, np.int64)
    m = 0
    cand = np.empty((n_tries, ndim))
    v = np.empty(ndim)
    u = np.empty(ndim)
    for i in order:
        for t in range(n_tries):
            for a in range(ndim):
                cand[t, a] = low[i, a] + uniform[i, t, a] * (high[i, a] - low[i, a])
        if m > 0:
            for t in range(n_near):
                j = placed_list[int(neighbour[i, t] * m)]
                norm = 0.0
                for a in range(ndim):
                    norm += direction[i, t, a] * direction[i, t, a]
                norm = math.sqrt(norm)
                for a in range(ndim):
                    v[a] = direction[i, t, a] / norm
                step = (_radius(forms[j], v) + _radius(forms[i], v)) * reach[i, t]
                for a in range(ndim):
                    cand[t, a] = centers[j, a] + v[a] * step
        for k in range(n_tries):
            t = priority[i, k]
            ok = True
            for a in range(ndim):
                if cand[t, a] < low[i, a] or cand[t, a] > high[i, a]:
                    ok = False
            for pi in range(m):
                if not ok:
                    break
                p = placed_list[pi]
                dist = 0.0
                for a in range(ndim):
                    d = cand[t, a] - centers[p, a]
                    dist += d * d
                dist = math.sqrt(dist)
                if dist < overlap * (bound[p] + bound[i]):
                    for a in range(ndim):
                        u[a] = (cand[t, a] - centers[p, a]) / max(dist, 1e-9)
                    if dist < overlap * (_radius(forms[p], u) + _radius(forms[i], u)):
                        ok = False
            if ok:
                for a in range(ndim):
                    centers[i, a] = cand[t, a]
                placed[i] = True
                placed_list[m] = i
                m += 1
                break
    return centers, placed


@njit(cache=True)
def rasterize_numba(centers, forms, irregularity, freqs, phases, lo, hi, spacing, cutoff,
                    owner, best):  # pragma: no cover - compiled
    """Numba twin of the reference loop in :func:`mediar3d.data.synthetic_shapes.rasterize_nuclei` (3D, in place)."""
    n_bumps = phases.shape[1]
    for i in range(centers.shape[0]):
        m = forms[i]
        irr = irregularity[i]
        for z in range(lo[i, 0], hi[i, 0]):
            gz = z * spacing[0] - centers[i, 0]
            for y in range(lo[i, 1], hi[i, 1]):
                gy = y * spacing[1] - centers[i, 1]
                for x in range(lo[i, 2], hi[i, 2]):
                    gx = x * spacing[2] - centers[i, 2]
                    q = 0.0
                    q += (m[0, 0] * 1.0) * (gz * gz)
                    q += (m[0, 1] * 2.0) * (gz * gy)
                    q += (m[0, 2] * 2.0) * (gz * gx)
                    q += (m[1, 1] * 1.0) * (gy * gy)
                    q += (m[1, 2] * 2.0) * (gy * gx)
                    q += (m[2, 2] * 1.0) * (gx * gx)
                    r = math.sqrt(max(q, 0.0))
                    if r >= (1.0 + irr) * min(best[z, y, x], cutoff[i]):
                        continue  # no bump can bring this voxel closer
                    if irr > 0:
                        norm = max(math.sqrt(0.0 + gz * gz + gy * gy + gx * gx), 1e-6)
                        bump = 0.0
                        for k in range(n_bumps):
                            arg = 0.0 + freqs[i, k, 0] * (gz / norm) + freqs[i, k, 1] * (gy / norm) \
                                + freqs[i, k, 2] * (gx / norm)
                            bump += math.cos(arg * math.pi + phases[i, k])
                        r = r / (1.0 + irr * (bump / n_bumps))
                    if r < best[z, y, x] and r < cutoff[i]:
                        best[z, y, x] = r
                        owner[z, y, x] = i
