"""Geometry of synthetic nuclei: sampling touching, randomly oriented ellipsoids and rasterising them.

Coordinates are physical (isotropic) units in (z, y, x) / (y, x) order; a voxel of the
output grid is ``spacing`` physical units wide (z spacing = anisotropy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Nuclei", "PlacementDraws", "sample_nuclei", "place_reference", "rasterize_nuclei",
           "keep_largest_fragment"]

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


def _random_rotations(rng: np.random.Generator, n: int, ndim: int) -> np.ndarray:
    """(n, d, d) uniformly random rotation matrices (QR of Gaussian matrices, signs fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(n, ndim, ndim)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    flip = np.linalg.det(q) < 0
    q[flip, :, 0] = -q[flip, :, 0]
    return q


def _directional_radius(forms: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Distance from centre to surface along unit vectors u (..., d) for forms (..., d, d)."""
    return 1.0 / np.sqrt(np.einsum("...i,...ij,...j->...", u, forms, u))


def sample_nuclei(rng: np.random.Generator, extent: Sequence[float], n: int, *,
                  radius_range: tuple[float, float], elongation: float = 0.2, flatten: float = 1.0,
                  irregularity: float = 0.08, overlap: float = 0.88, cluster: float = 0.5,
                  border_cut: bool = True, n_tries: int = 24, fast: bool = True) -> Nuclei:
    """Place up to ``n`` non-overlapping (up to ``overlap``) ellipsoids in a box, largest first.

    Each nucleus tries ``n_tries`` positions, a fraction ``cluster`` of them right next to an
    already placed nucleus (so that nuclei touch even when sparse), and takes the first one
    at which the centre distance to every placed nucleus is at least ``overlap`` times the sum
    of their radii along the joining line. Nuclei that find no place are dropped. All random
    numbers are drawn up front, so the numba and the reference placement agree.

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
        fast: use the numba kernel (False: the plain numpy reference).

    Returns:
        :class:`Nuclei` with the placed nuclei.
    """
    extent = np.asarray(extent, float)
    ndim = len(extent)
    radii = rng.uniform(radius_range[0], radius_range[1], size=n)
    semi = radii[:, None] * np.exp(rng.normal(0.0, elongation, size=(n, ndim)))
    semi *= (radii / np.exp(np.log(semi).mean(axis=1)))[:, None]  # keep the mean radius
    rotations = _random_rotations(rng, n, ndim)
    forms = np.einsum("nij,nj,nkj->nik", rotations, 1.0 / semi**2, rotations)
    if ndim == 3 and flatten != 1.0:
        squash = np.diag([flatten, 1.0, 1.0])
        forms = squash @ forms @ squash
    irr = irregularity * rng.uniform(0.3, 1.0, size=n)
    bump_freqs = rng.normal(0.0, 1.6, size=(n, N_BUMPS, ndim))
    bump_phases = rng.uniform(0.0, 2 * np.pi, size=(n, N_BUMPS))
    order = np.argsort(-radii, kind="stable")
    bound = 1.0 / np.sqrt(np.linalg.eigvalsh(forms)[:, 0]) if n else np.zeros(0)  # longest semi-axis
    # inside the box, the whole nucleus (bumps included) stays clear of the border
    margin = -0.6 * radii if border_cut else (1.0 + irr) * bound + 1.0
    low = np.repeat(margin[:, None], ndim, axis=1)
    high = np.maximum(extent[None] - low, low + 1e-6)
    draws = PlacementDraws(
        uniform=rng.random((n, n_tries, ndim)), neighbour=rng.random((n, n_tries)),
        direction=rng.normal(size=(n, n_tries, ndim)), reach=rng.uniform(overlap, 1.0, size=(n, n_tries)),
        priority=np.argsort(rng.random((n, n_tries)), axis=1))
    n_near = int(round(cluster * n_tries))
    if fast:
        from mediar3d.data.synthetic_kernels import place_numba

        centers, placed = place_numba(order, low, high, draws.uniform, draws.neighbour, draws.direction,
                                      draws.reach, draws.priority, forms, bound, float(overlap), n_near)
    else:
        centers, placed = place_reference(order, low, high, draws, forms, bound, overlap, n_near)
    nuclei = Nuclei(centers, forms, semi, rotations, irr, bump_freqs, bump_phases)
    return nuclei.subset(order[placed[order]])


@dataclass
class PlacementDraws:
    """Random numbers of the placement, drawn up front: per nucleus and candidate position."""

    uniform: np.ndarray  # (n, T, d) in [0, 1): position in the allowed box
    neighbour: np.ndarray  # (n, T) in [0, 1): which placed nucleus a near candidate leans on
    direction: np.ndarray  # (n, T, d) normal: direction from that neighbour
    reach: np.ndarray  # (n, T) in [overlap, 1): fraction of the two radii to step
    priority: np.ndarray  # (n, T) permutation: order in which candidates are tried


def place_reference(order: np.ndarray, low: np.ndarray, high: np.ndarray, draws: PlacementDraws,
                    forms: np.ndarray, bound: np.ndarray, overlap: float,
                    n_near: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy placement (reference for the numba kernel): returns (centers (n, d), placed (n,) bool)."""
    n, n_tries, ndim = draws.uniform.shape
    centers = np.zeros((n, ndim))
    placed = np.zeros(n, bool)
    placed_list: list[int] = []
    for i in order:
        cand = low[i] + draws.uniform[i] * (high[i] - low[i])
        m = len(placed_list)
        if m and n_near:
            j = np.asarray(placed_list)[(draws.neighbour[i, :n_near] * m).astype(int)]
            v = draws.direction[i, :n_near]
            v = v / np.sqrt((v * v).sum(axis=1))[:, None]
            reach = _directional_radius(forms[j], v) + _directional_radius(forms[i][None], v)
            cand[:n_near] = centers[j] + v * (reach * draws.reach[i, :n_near])[:, None]
        cand = cand[draws.priority[i]]
        ok = np.all((cand >= low[i]) & (cand <= high[i]), axis=1)
        if m:
            p = np.asarray(placed_list)
            diff = cand[:, None, :] - centers[p][None]
            dist = np.sqrt((diff * diff).sum(axis=2))
            close = dist < overlap * (bound[p][None] + bound[i])  # only these can collide
            ci, pj = np.nonzero(close)
            u = diff[ci, pj] / np.maximum(dist[ci, pj], 1e-9)[:, None]
            reach = _directional_radius(forms[p[pj]], u) + _directional_radius(forms[i][None], u)
            hit = dist[ci, pj] < overlap * reach
            ok[ci[hit]] = False
        if ok.any():
            centers[i] = cand[np.argmax(ok)]
            placed[i] = True
            placed_list.append(i)
    return centers, placed


def _boxes(nuclei: Nuclei, shape: tuple[int, ...], spacing: np.ndarray,
           margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel bounding boxes (lo, hi) of every nucleus and its distance cutoff (normalised units)."""
    ndim = len(shape)
    if not len(nuclei):
        return np.zeros((0, ndim), np.int64), np.zeros((0, ndim), np.int64), np.zeros(0)
    inv = np.linalg.inv(nuclei.forms)
    half = np.sqrt(np.diagonal(inv, axis1=1, axis2=2)) * (1.0 + nuclei.irregularity)[:, None] + margin * spacing
    lo = np.maximum(np.floor((nuclei.centers - half) / spacing).astype(np.int64), 0)
    hi = np.minimum(np.ceil((nuclei.centers + half) / spacing).astype(np.int64) + 1, np.asarray(shape))
    cutoff = 1.0 + margin * spacing.max() / nuclei.semi_axes.min(axis=1)
    return lo, hi, cutoff


def rasterize_nuclei(nuclei: Nuclei, shape: Sequence[int], spacing: Sequence[float],
                     margin: float = 1.0, *, fast: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Assign every voxel to the nucleus of smallest normalised distance.

    Works per nucleus on its bounding box. Overlaps are split where the normalised distances
    are equal, so overlapping nuclei end up touching with a shared boundary.

    Args:
        nuclei: the nuclei (physical coordinates).
        shape: output grid, (z, y, x) or (y, x).
        spacing: physical size of a voxel along each axis.
        margin: also record distances up to ``margin`` voxels outside each nucleus (for
            anti-aliased edges).
        fast: use the numba kernel (False: the plain numpy reference).

    Returns:
        ``(owner, dist)``: owner (int32, index of the nearest nucleus or -1) and normalised
        distance (float32; < 1 inside a nucleus, inf far from all).
    """
    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(spacing, float)
    owner = np.full(shape, -1, np.int32)
    best = np.full(shape, np.inf, np.float32)
    lo, hi, cutoff = _boxes(nuclei, shape, spacing, margin)
    if fast:
        from mediar3d.data.synthetic_kernels import rasterize_numba

        pad = 3 - len(shape)  # the kernel is 3D: a 2D image is one z-slice
        eye = np.zeros((len(nuclei), 3, 3))
        eye[:, pad:, pad:] = nuclei.forms
        freqs = np.zeros((len(nuclei), N_BUMPS, 3))
        freqs[:, :, pad:] = nuclei.bump_freqs
        rasterize_numba(
            np.pad(nuclei.centers, ((0, 0), (pad, 0))), eye, nuclei.irregularity, freqs, nuclei.bump_phases,
            np.pad(lo, ((0, 0), (pad, 0))), np.pad(hi, ((0, 0), (pad, 0)), constant_values=1),
            np.pad(spacing, (pad, 0), constant_values=1.0), cutoff,
            owner.reshape((1,) * pad + shape), best.reshape((1,) * pad + shape))
        return owner, best
    for i in range(len(nuclei)):
        if np.any(hi[i] <= lo[i]):
            continue
        c = nuclei.centers[i]
        irr = float(nuclei.irregularity[i])
        grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo[i], hi[i]))]
        g = [grid * s - ci for grid, s, ci in zip(grids, spacing, c)]
        m = nuclei.forms[i]
        q = sum(float(m[a, b]) * (2.0 if a != b else 1.0) * (g[a] * g[b])
                for a in range(len(g)) for b in range(a, len(g)))
        r = np.sqrt(np.maximum(q, 0.0))
        if irr > 0:
            norm = np.maximum(np.sqrt(sum(x * x for x in g)), 1e-6)
            bump = sum(np.cos(sum(float(nuclei.bump_freqs[i, k, a]) * (g[a] / norm) for a in range(len(g)))
                              * np.pi + float(nuclei.bump_phases[i, k])) for k in range(N_BUMPS))
            r = r / (1.0 + irr * (bump / N_BUMPS))
        r = np.broadcast_to(r, tuple(hi[i] - lo[i]))
        box = tuple(slice(a, b) for a, b in zip(lo[i], hi[i]))
        view_best, view_owner = best[box], owner[box]
        closer = (r < view_best) & (r < cutoff[i])
        view_best[closer] = r[closer]
        view_owner[closer] = i
    return owner, best


def keep_largest_fragment(labels: np.ndarray) -> np.ndarray:
    """Set every connected piece of a label except its largest to 0 (in place); returns the mask removed.

    One pass of connected-component labelling over the whole volume (pieces are face-connected
    voxels of equal label), then a vectorised choice of the largest piece per label.
    """
    from skimage.measure import label as connected

    pieces = connected(labels, background=0, connectivity=1)
    n_pieces = int(pieces.max())
    owner = np.zeros(n_pieces + 1, labels.dtype)
    owner[pieces.ravel()] = labels.ravel()
    if n_pieces == np.count_nonzero(np.bincount(owner[1:])):
        return np.zeros(labels.shape, bool)  # every label is one piece
    sizes = np.bincount(pieces.ravel(), minlength=n_pieces + 1)
    ids = np.arange(1, n_pieces + 1)
    order = np.lexsort((-sizes[1:], owner[1:]))  # by label, largest piece first
    first = np.ones(n_pieces, bool)
    first[1:] = owner[1:][order][1:] != owner[1:][order][:-1]
    drop = np.zeros(n_pieces + 1, bool)
    drop[ids[order][~first]] = True
    removed = drop[pieces]
    labels[removed] = 0
    return removed
