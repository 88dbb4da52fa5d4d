"""Geometry of synthetic nuclei: sampling touching, randomly oriented ellipsoids and rasterising them.

Coordinates are physical (isotropic) units in (z, y, x) / (y, x) order; a voxel of the
output grid is ``spacing`` physical units wide (z spacing = anisotropy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Nuclei", "sample_nuclei", "rasterize_nuclei", "keep_largest_fragment"]

N_BUMPS = 3


@dataclass
class Nuclei:
    """Parameters of n ellipsoids (or ellipses) in physical coordinates.

    Attributes:
        centers: (n, d) centres, (z, y, x) order.
        forms: (n, d, d) quadratic forms M; a point x is inside when (x-c)^T M (x-c) < 1.
        semi_axes: (n, d) semi-axis lengths.
        rotations: (n, d, d) orthonormal matrices whose columns are the semi-axis directions.
        irregularity: (n,) amplitude of the low-frequency boundary bumps (0: exact ellipsoid).
        bump_freqs: (n, N_BUMPS, d) frequencies of the bumps.
        bump_phases: (n, N_BUMPS) phases of the bumps.
    """

    centers: np.ndarray
    forms: np.ndarray
    semi_axes: np.ndarray
    rotations: np.ndarray
    irregularity: np.ndarray
    bump_freqs: np.ndarray
    bump_phases: np.ndarray

    def __len__(self) -> int:
        return len(self.centers)

    def subset(self, index: np.ndarray) -> Nuclei:
        """The nuclei at ``index`` (an integer array), in that order."""
        return Nuclei(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def _random_rotation(rng: np.random.Generator, ndim: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(ndim, ndim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _directional_radius(forms: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Distance from centre to surface along unit vectors u (..., d) for forms (..., d, d)."""
    return 1.0 / np.sqrt(np.einsum("...i,...ij,...j->...", u, forms, u))


def sample_nuclei(rng: np.random.Generator, extent: Sequence[float], n: int, *,
                  radius_range: tuple[float, float], elongation: float = 0.2, flatten: float = 1.0,
                  irregularity: float = 0.08, overlap: float = 0.88, cluster: float = 0.5,
                  border_cut: bool = True, n_tries: int = 24) -> Nuclei:
    """Place up to ``n`` non-overlapping (up to ``overlap``) ellipsoids in a box, largest first.

    Each nucleus tries ``n_tries`` positions, a fraction ``cluster`` of them right next to an
    already placed nucleus (so that nuclei touch even when sparse), and takes the first one
    at which the centre distance to every placed nucleus is at least ``overlap`` times the sum
    of their radii along the joining line. Nuclei that find no place are dropped.

    Args:
        rng: random generator (the only source of randomness).
        extent: physical size of the box, (z, y, x) or (y, x).
        n: number of nuclei to try to place.
        radius_range: (min, max) mean radius, physical units.
        elongation: log-normal spread of the semi-axes around the mean radius.
        flatten: divide the z semi-axis extent by this (adherent cells are flat); 3D only.
        irregularity: maximal relative amplitude of the boundary bumps.
        overlap: < 1 lets neighbours overlap slightly before the overlap is split between them.
        cluster: fraction of candidate positions drawn next to a placed nucleus.
        border_cut: allow centres up to 0.6 radius outside the box (nuclei cut by the border).
        n_tries: candidate positions per nucleus.

    Returns:
        :class:`Nuclei` with the placed nuclei.
    """
    extent = np.asarray(extent, float)
    ndim = len(extent)
    radii = rng.uniform(radius_range[0], radius_range[1], size=n)
    semi = radii[:, None] * np.exp(rng.normal(0.0, elongation, size=(n, ndim)))
    semi *= (radii / np.exp(np.log(semi).mean(axis=1)))[:, None]  # keep the mean radius
    rotations = np.stack([_random_rotation(rng, ndim) for _ in range(n)]) if n else np.zeros((0, ndim, ndim))
    forms = np.einsum("nij,nj,nkj->nik", rotations, 1.0 / semi**2, rotations)
    if ndim == 3 and flatten != 1.0:
        squash = np.diag([flatten, 1.0, 1.0])
        forms = squash @ forms @ squash
    irr = irregularity * rng.uniform(0.3, 1.0, size=n)
    bump_freqs = rng.normal(0.0, 1.6, size=(n, N_BUMPS, ndim))
    bump_phases = rng.uniform(0.0, 2 * np.pi, size=(n, N_BUMPS))
    order = np.argsort(-radii, kind="stable")
    bound = 1.0 / np.sqrt(np.linalg.eigvalsh(forms)[:, 0]) if n else np.zeros(0)  # longest semi-axis

    placed: list[int] = []
    centers = np.zeros((n, ndim))
    for i in order:
        # inside the box, the whole nucleus (bumps included) stays clear of the border
        margin = -0.6 * radii[i] if border_cut else (1.0 + irr[i]) * bound[i] + 1.0
        low = np.full(ndim, margin)
        high = extent - margin
        high = np.maximum(high, low + 1e-6)
        cand = rng.uniform(low, high, size=(n_tries, ndim))
        if placed:
            n_near = int(round(cluster * n_tries))
            if n_near:
                j = rng.choice(placed, size=n_near)
                v = rng.normal(size=(n_near, ndim))
                v /= np.linalg.norm(v, axis=1, keepdims=True)
                reach = _directional_radius(forms[j], v) + _directional_radius(forms[i][None], v)
                cand[:n_near] = centers[j] + v * (reach * rng.uniform(overlap, 1.0, size=n_near))[:, None]
            inside = np.all((cand >= low) & (cand <= high), axis=1)
            cand = cand[inside]
            if len(cand) == 0:
                continue
            rng.shuffle(cand)
            p = np.asarray(placed)
            diff = cand[:, None, :] - centers[p][None]
            dist = np.linalg.norm(diff, axis=2)
            close = dist < overlap * (bound[p][None] + bound[i])  # only these can collide
            ok = np.ones(len(cand), bool)
            if close.any():
                ci, pj = np.nonzero(close)
                u = diff[ci, pj] / np.maximum(dist[ci, pj], 1e-9)[:, None]
                reach = _directional_radius(forms[p[pj]], u) + _directional_radius(forms[i][None], u)
                hit = dist[ci, pj] < overlap * reach
                ok[ci[hit]] = False
            if not ok.any():
                continue
            centers[i] = cand[np.argmax(ok)]
        else:
            centers[i] = cand[0]
        placed.append(i)
    nuclei = Nuclei(centers, forms, semi, rotations, irr, bump_freqs, bump_phases)
    return nuclei.subset(np.asarray(placed, dtype=int))


def rasterize_nuclei(nuclei: Nuclei, shape: Sequence[int], spacing: Sequence[float],
                     margin: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Assign every voxel to the nucleus of smallest normalised distance.

    Works per nucleus on its bounding box. Overlaps are split where the normalised distances
    are equal, so overlapping nuclei end up touching with a shared boundary.

    Args:
        nuclei: the nuclei (physical coordinates).
        shape: output grid, (z, y, x) or (y, x).
        spacing: physical size of a voxel along each axis.
        margin: also record distances up to ``margin`` voxels outside each nucleus (for
            anti-aliased edges).

    Returns:
        ``(owner, dist)``: owner (int32, index of the nearest nucleus or -1) and normalised
        distance (float32; < 1 inside a nucleus, inf far from all).
    """
    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(spacing, float)
    owner = np.full(shape, -1, np.int32)
    best = np.full(shape, np.inf, np.float32)
    inv = np.linalg.inv(nuclei.forms) if len(nuclei) else np.zeros((0,) + (len(shape),) * 2)
    for i in range(len(nuclei)):
        c = nuclei.centers[i]
        irr = float(nuclei.irregularity[i])
        half = np.sqrt(np.diag(inv[i])) * (1.0 + irr) + margin * spacing
        lo = np.maximum(np.floor((c - half) / spacing).astype(int), 0)
        hi = np.minimum(np.ceil((c + half) / spacing).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        g = [(grid * s - ci).astype(np.float32) for grid, s, ci in zip(grids, spacing, c)]
        m = nuclei.forms[i]
        q = sum(float(m[a, b]) * (2.0 if a != b else 1.0) * (g[a] * g[b])
                for a in range(len(g)) for b in range(a, len(g)))
        r = np.sqrt(np.maximum(q, 0.0))
        if irr > 0:
            norm = np.sqrt(sum(x * x for x in g))
            norm = np.maximum(norm, 1e-6)
            bump = sum(np.cos(sum(float(nuclei.bump_freqs[i, k, a]) * (g[a] / norm) for a in range(len(g)))
                              * np.pi + float(nuclei.bump_phases[i, k])) for k in range(N_BUMPS))
            r = r / (1.0 + irr * bump / N_BUMPS)
        min_semi = float(nuclei.semi_axes[i].min())
        r = np.broadcast_to(r, tuple(hi - lo))
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        view_best, view_owner = best[box], owner[box]
        closer = (r < view_best) & (r < 1.0 + margin * spacing.max() / min_semi)
        view_best[closer] = r[closer]
        view_owner[closer] = i
    return owner, best


def keep_largest_fragment(labels: np.ndarray) -> np.ndarray:
    """Set every connected piece of a label except its largest to 0 (in place); returns the mask removed."""
    removed = np.zeros(labels.shape, bool)
    for index, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        mask = labels[box] == index + 1
        pieces, count = ndimage.label(mask)
        if count > 1:
            sizes = np.bincount(pieces.ravel())
            sizes[0] = 0
            drop = mask & (pieces != np.argmax(sizes))
            labels[box][drop] = 0
            removed[box] |= drop
    return removed
