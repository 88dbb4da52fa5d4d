"""End-point histogram, seeds and attraction basins (Algorithm 4, steps 3-5).

The final positions of the followed voxels are rounded to the grid and counted in a
histogram ``H``. Seeds are local maxima of ``H`` over a (5, 5, 5) window (ties count as
maxima, as with Cellpose's max-pool) whose count exceeds ``min_count``. From each seed,
taken in order of increasing count, a basin grows by 26-connected dilation inside an
(11, 11, 11) box around it, through bins with ``H > basin_threshold``, until it stops
changing; where basins overlap the seed with the larger count wins. A voxel takes the
label of the basin its end point fell in (0 if none).

Fast versions (numba) work on the few non-empty bins; the ``*_reference`` versions use
SciPy's ``maximum_filter`` and ``binary_dilation`` on whole arrays.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage

__all__ = [
    "endpoint_bins",
    "endpoint_bins_reference",
    "histogram",
    "find_seeds",
    "find_seeds_reference",
    "basin_map",
    "basin_map_reference",
    "scatter_labels",
    "scatter_basins",
]


@numba.njit(cache=True)
def _bins_kernel(positions, nz, ny, nx, out):  # pragma: no cover - compiled
    for i in range(positions.shape[0]):
        z = min(max(np.int64(np.rint(positions[i, 0])), 0), nz - 1)
        y = min(max(np.int64(np.rint(positions[i, 1])), 0), ny - 1)
        x = min(max(np.int64(np.rint(positions[i, 2])), 0), nx - 1)
        out[i] = (z * ny + y) * nx + x


def endpoint_bins(positions: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Flat index of the grid voxel nearest to each position (round half to even, clipped).

    Args:
        positions: (N, 3) positions (z, y, x) inside the volume.
        shape: volume shape (Z, Y, X).

    Returns:
        int64 array (N,) of flat (C-order) indices; no (N, 3) integer temporary is made.
    """
    out = np.empty(positions.shape[0], np.int64)
    if out.shape[0]:
        _bins_kernel(np.ascontiguousarray(positions), int(shape[0]), int(shape[1]), int(shape[2]), out)
    return out


def endpoint_bins_reference(positions: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Plain NumPy version of :func:`endpoint_bins`."""
    idx = np.rint(positions).astype(np.int64)
    for a in range(3):
        np.clip(idx[:, a], 0, shape[a] - 1, out=idx[:, a])
    return (idx[:, 0] * shape[1] + idx[:, 1]) * shape[2] + idx[:, 2]


@numba.njit(cache=True)
def _count(bins, hist):  # pragma: no cover - compiled
    for i in range(bins.shape[0]):
        hist[bins[i]] += 1


def histogram(bins: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Counts of end points per voxel.

    Args:
        bins: int64 (or int32) (N,) flat indices from :func:`endpoint_bins` or
            :func:`mediar3d.postprocess.follow.follow_to_bins`.
        shape: volume shape (Z, Y, X).

    Returns:
        int32 array (Z, Y, X).
    """
    hist = np.zeros(int(np.prod(shape)), np.int32)
    _count(_index_array(bins), hist)
    return hist.reshape(shape)


@numba.njit(cache=True)
def _is_peak(hist, cand, r, keep):  # pragma: no cover - compiled
    nz, ny, nx = hist.shape
    for i in range(cand.shape[0]):
        f = cand[i]
        z = f // (ny * nx)
        y = (f // nx) % ny
        x = f % nx
        h = hist[z, y, x]
        ok = True
        for zz in range(max(z - r, 0), min(z + r + 1, nz)):
            for yy in range(max(y - r, 0), min(y + r + 1, ny)):
                for xx in range(max(x - r, 0), min(x + r + 1, nx)):
                    if hist[zz, yy, xx] > h:
                        ok = False
                        break
                if not ok:
                    break
            if not ok:
                break
        keep[i] = ok


def _order_by_count(hist: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    counts = hist.ravel()[seeds]
    return seeds[np.lexsort((seeds, counts))]


def find_seeds(hist: np.ndarray, *, kernel: int = 5, min_count: int = 10) -> np.ndarray:
    """Local maxima of the histogram with more than ``min_count`` end points.

    Args:
        hist: int32 histogram (Z, Y, X).
        kernel: max-pool window size (odd).
        min_count: a seed needs more end points than this.

    Returns:
        int64 flat indices of the seeds, by increasing count (ties by index).
    """
    cand = np.flatnonzero(hist > min_count)
    keep = np.zeros(cand.shape[0], np.bool_)
    _is_peak(hist, cand, kernel // 2, keep)
    return _order_by_count(hist, cand[keep])


def find_seeds_reference(hist: np.ndarray, *, kernel: int = 5, min_count: int = 10) -> np.ndarray:
    """Plain version of :func:`find_seeds` with ``scipy.ndimage.maximum_filter``."""
    hmax = ndimage.maximum_filter(hist, size=kernel, mode="constant", cval=0)
    seeds = np.flatnonzero((hist >= hmax) & (hist > min_count))
    return _order_by_count(hist, seeds)


@numba.njit(cache=True)
def _grow(hist, seeds, r, threshold, members, counts):  # pragma: no cover - compiled
    nz, ny, nx = hist.shape
    side = 2 * r + 1
    seen = np.zeros((side, side, side), np.bool_)
    queue = np.empty((side * side * side, 3), np.int64)
    for s in range(seeds.shape[0]):
        f = seeds[s]
        cz = f // (ny * nx)
        cy = (f // nx) % ny
        cx = f % nx
        seen[:] = False
        seen[r, r, r] = True
        queue[0, 0], queue[0, 1], queue[0, 2] = cz, cy, cx
        head = 0
        tail = 1
        while head < tail:
            z, y, x = queue[head, 0], queue[head, 1], queue[head, 2]
            head += 1
            for zz in range(max(z - 1, cz - r, 0), min(z + 2, cz + r + 1, nz)):
                for yy in range(max(y - 1, cy - r, 0), min(y + 2, cy + r + 1, ny)):
                    for xx in range(max(x - 1, cx - r, 0), min(x + 2, cx + r + 1, nx)):
                        lz, ly, lx = zz - cz + r, yy - cy + r, xx - cx + r
                        if not seen[lz, ly, lx] and hist[zz, yy, xx] > threshold:
                            seen[lz, ly, lx] = True
                            queue[tail, 0], queue[tail, 1], queue[tail, 2] = zz, yy, xx
                            tail += 1
        for q in range(tail):
            members[s, q] = (queue[q, 0] * ny + queue[q, 1]) * nx + queue[q, 2]
        counts[s] = tail


@numba.njit(cache=True)
def _paint(members, counts, out):  # pragma: no cover - compiled
    for s in range(counts.shape[0]):
        for q in range(counts[s]):
            out[members[s, q]] = s + 1


def basin_map(hist: np.ndarray, seeds: np.ndarray, *, box: int = 11, threshold: int = 2,
              overwrite: bool = False) -> np.ndarray:
    """Label map of the seeds' attraction basins.

    Args:
        hist: int32 histogram (Z, Y, X).
        seeds: flat seed indices by increasing count (from :func:`find_seeds`).
        box: side of the cubic box a basin may grow in (odd).
        threshold: basins grow through bins with more end points than this.
        overwrite: reuse ``hist``'s memory for the result.

    Returns:
        int32 array (Z, Y, X): basin k+1 for seed ``seeds[k]``, 0 elsewhere.
    """
    r = box // 2
    members = np.empty((len(seeds), box ** 3), np.int64)
    counts = np.zeros(len(seeds), np.int64)
    _grow(hist, np.ascontiguousarray(seeds, dtype=np.int64), r, threshold, members, counts)
    out = hist if overwrite else np.empty_like(hist, dtype=np.int32)
    out[...] = 0
    _paint(members, counts, out.reshape(-1))
    return out


def basin_map_reference(hist: np.ndarray, seeds: np.ndarray, *, box: int = 11,
                        threshold: int = 2) -> np.ndarray:
    """Plain version of :func:`basin_map` with ``scipy.ndimage.binary_dilation``."""
    r = box // 2
    out = np.zeros(hist.shape, np.int32)
    structure = np.ones((3, 3, 3), bool)
    for k, f in enumerate(seeds):
        c = np.unravel_index(int(f), hist.shape)
        sl = tuple(slice(max(ci - r, 0), min(ci + r + 1, n)) for ci, n in zip(c, hist.shape))
        allowed = hist[sl] > threshold
        grown = np.zeros(allowed.shape, bool)
        grown[tuple(ci - s.start for ci, s in zip(c, sl))] = True
        while True:
            nxt = ndimage.binary_dilation(grown, structure) & allowed
            nxt |= grown
            if np.array_equal(nxt, grown):
                break
            grown = nxt
        out[sl][grown] = k + 1
    return out


@numba.njit(cache=True)
def _scatter(labels, coords, basins, bins):  # pragma: no cover - compiled
    for i in range(coords.shape[0]):
        labels[coords[i, 0], coords[i, 1], coords[i, 2]] = basins[bins[i]]


def _index_array(bins: np.ndarray) -> np.ndarray:
    """``bins`` as a contiguous int32 or int64 array (no copy when it already is one)."""
    bins = np.asarray(bins)
    return np.ascontiguousarray(bins, dtype=bins.dtype if bins.dtype in (np.int32, np.int64) else np.int64)


@numba.njit(cache=True)
def _lookup_in_place(bins, basins):  # pragma: no cover - compiled
    for i in range(bins.shape[0]):
        bins[i] = basins[bins[i]]


@numba.njit(cache=True)
def _scatter_foreground(labels, fg, values):  # pragma: no cover - compiled
    i = 0
    for z in range(fg.shape[0]):
        for y in range(fg.shape[1]):
            for x in range(fg.shape[2]):
                if fg[z, y, x]:
                    labels[z, y, x] = values[i]
                    i += 1


def scatter_basins(basins: np.ndarray, fg: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Lean :func:`scatter_labels`: labels written over the basin map, no start positions stored.

    The followed voxels are the foreground voxels in C order (as from
    :func:`mediar3d.postprocess.follow.follow_to_bins`). Each bin is replaced by its basin's
    label, then the basin map (no longer needed) is cleared and the labels written into it, so
    neither a second (N,) array nor a second volume is made.

    Args:
        basins: int32 (Z, Y, X) basin map from :func:`basin_map`; becomes the labels.
        fg: bool (Z, Y, X) mask of the followed voxels.
        bins: int32 or int64 (N,) end-point bins of the N foreground voxels; overwritten.

    Returns:
        ``basins``, now int32 labels (Z, Y, X): each followed voxel the basin of its end point.
    """
    bins = _index_array(bins)
    _lookup_in_place(bins, np.ascontiguousarray(basins).reshape(-1))
    basins[...] = 0
    _scatter_foreground(basins, np.ascontiguousarray(fg, dtype=bool), bins)
    return basins


def scatter_labels(labels: np.ndarray, coords: np.ndarray, basins: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Give every followed voxel the basin label of its end point, in place.

    Args:
        labels: int32 (Z, Y, X) output.
        coords: (N, 3) start positions (z, y, x) of the followed voxels.
        basins: int32 flat basin map (Z * Y * X,) from :func:`basin_map`.
        bins: int64 (N,) flat end-point bins from :func:`endpoint_bins`.

    Returns:
        ``labels``.
    """
    _scatter(labels, np.ascontiguousarray(coords), np.ascontiguousarray(basins), np.ascontiguousarray(bins))
    return labels
