"""Numba kernels of the synthetic generator; the plain references live in :mod:`synthetic_shapes`."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["place_numba", "rasterize_numba", "nucleoli_numba"]


@njit(cache=True)
def _radius(form: np.ndarray, u: np.ndarray) -> float:
    q = 0.0
    for a in range(u.shape[0]):
        for b in range(u.shape[0]):
            q += u[a] * form[a, b] * u[b]
    return 1.0 / math.sqrt(q)


@njit(cache=True)
def _cell_of(x, origin, cell, dims):  # pragma: no cover - compiled
    flat = 0
    for a in range(x.shape[0]):
        c = int((x[a] - origin[a]) / cell)
        c = min(max(c, 0), dims[a] - 1)
        flat = flat * dims[a] + c
    return flat


@njit(cache=True)
def _collides(x, i, centers, forms, bound, overlap, head, chain, origin, cell, dims, u):  # pragma: no cover
    """True when a nucleus i at x overlaps a placed one (cell list: only the 3^d neighbouring cells)."""
    ndim = x.shape[0]
    base = np.empty(ndim, np.int64)
    for a in range(ndim):
        base[a] = min(max(int((x[a] - origin[a]) / cell), 0), dims[a] - 1)
    n_cells = 3**ndim
    for k in range(n_cells):
        flat = 0
        rest = k
        valid = True
        for a in range(ndim - 1, -1, -1):
            off = rest % 3 - 1
            rest //= 3
            c = base[a] + off
            if c < 0 or c >= dims[a]:
                valid = False
        if not valid:
            continue
        rest = k
        offs = np.empty(ndim, np.int64)
        for a in range(ndim - 1, -1, -1):
            offs[a] = rest % 3 - 1
            rest //= 3
        for a in range(ndim):
            flat = flat * dims[a] + base[a] + offs[a]
        p = head[flat]
        while p >= 0:
            dist = 0.0
            for a in range(ndim):
                d = x[a] - centers[p, a]
                dist += d * d
            dist = math.sqrt(dist)
            if dist < overlap * (bound[p] + bound[i]):
                for a in range(ndim):
                    u[a] = (x[a] - centers[p, a]) / max(dist, 1e-9)
                if dist < overlap * (_radius(forms[p], u) + _radius(forms[i], u)):
                    return True
            p = chain[p]
    return False


@njit(cache=True)
def place_numba(order, low, high, uniform, neighbour, direction, reach, priority, forms, bound,
                overlap, n_near):  # pragma: no cover - compiled
    """Numba twin of :func:`mediar3d.data.synthetic_shapes.place_reference` (same inputs and outputs).

    Placed nuclei are kept in a grid of cells at least as wide as the largest collision
    distance, so a candidate is checked only against its neighbourhood.
    """
    n, n_tries, ndim = uniform.shape
    centers = np.zeros((n, ndim))
    placed = np.zeros(n, np.bool_)
    placed_list = np.empty(n, np.int64)
    m = 0
    cand = np.empty((n_tries, ndim))
    v = np.empty(ndim)
    u = np.empty(ndim)
    x = np.empty(ndim)
    cell = 2.0 * overlap * (bound.max() if n else 1.0) + 1e-6
    origin = np.empty(ndim)
    dims = np.empty(ndim, np.int64)
    total = 1
    for a in range(ndim):
        origin[a] = low[:, a].min() if n else 0.0
        dims[a] = int((high[:, a].max() - origin[a]) / cell) + 1 if n else 1
        total *= dims[a]
    head = np.full(total, -1, np.int64)
    chain = np.full(n, -1, np.int64)
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
                x[a] = cand[t, a]
                if x[a] < low[i, a] or x[a] > high[i, a]:
                    ok = False
            if ok and m > 0:
                ok = not _collides(x, i, centers, forms, bound, overlap, head, chain, origin, cell, dims, u)
            if ok:
                for a in range(ndim):
                    centers[i, a] = x[a]
                placed[i] = True
                placed_list[m] = i
                m += 1
                flat = _cell_of(x, origin, cell, dims)
                chain[i] = head[flat]
                head[flat] = i
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


@njit(cache=True)
def nucleoli_numba(labels, factor, owners, centres, radii, darkness, lo, hi, spacing):  # pragma: no cover
    """Numba twin of the reference loop in :func:`mediar3d.data.synthetic.nucleoli_factor` (3D, in place)."""
    for k in range(owners.shape[0]):
        r2 = radii[k] * radii[k]
        for z in range(lo[k, 0], hi[k, 0]):
            dz = z * spacing[0] - centres[k, 0]
            for y in range(lo[k, 1], hi[k, 1]):
                dy = y * spacing[1] - centres[k, 1]
                for x in range(lo[k, 2], hi[k, 2]):
                    if labels[z, y, x] != owners[k]:
                        continue
                    dx = x * spacing[2] - centres[k, 2]
                    d2 = (dz * dz + dy * dy + dx * dx) / r2
                    factor[z, y, x] *= 1.0 - darkness[k] * math.exp(-(d2 * d2))
