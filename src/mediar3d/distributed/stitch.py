"""Label stitching across block faces: ownership, merge links, components, remap tables.

The rule, per block, from its labels on the extent (core + halo):

1. Objects with voxels in the core get block-local ids 1..n; the rest are dropped (0).
2. An object is *owned* by the block when its centre (the centroid of the block's
   mask of it) lies in the core. An object that reaches into several cores is seen
   whole by each of them (halo > diameter), has the same centre in each, so exactly
   one of them owns it; in the others its core part is a *fragment*.
3. A fragment in core m links to the object of a neighbour b that covers it in b's
   halo: to an object b owns when that object holds >= ``overlap_threshold`` of the
   fragment's voxels there (majority overlap, not mere touching), otherwise, as a
   fallback for blocks that disagree on the centre, to a fragment of b with IoU
   >= ``iou_threshold``. Each fragment keeps one link, its best; owned objects have none.
4. Every node has at most one outgoing link and owned objects none, so a connected
   component holds at most one owned object: two cells a block told apart are never
   merged, and a cell's pieces join its owner instead of being split at a face.

Only pairs of labels that meet in a halo are ever tabulated; the remap of a block is
a table over that block's own labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import fastremap
import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from mediar3d.distributed.grid import BlockGrid, Triple, relative


@dataclass
class BlockLabels:
    """One block's labels on its extent, renumbered so core objects are 1..n.

    Attributes:
        labels: int32 (z, y, x) on the block extent; 0 = background or an object
            that never enters the core.
        n: number of objects with voxels in the core.
        owned: bool (n + 1,); ``owned[k]`` when object k's centre lies in the core.
    """

    labels: np.ndarray
    n: int
    owned: np.ndarray


def centroids(labels: np.ndarray, n: int) -> np.ndarray:
    """Centroids of labels 1..n of a (z, y, x) volume, plane by plane (no coordinate grids).

    Returns:
        float64 (n + 1, 3) in (z, y, x) voxel coordinates; row 0 and absent labels are NaN.
    """
    sums = np.zeros((n + 1, 3), dtype=np.float64)
    counts = np.zeros(n + 1, dtype=np.float64)
    yy, xx = np.indices(labels.shape[1:], dtype=np.float64)
    yy, xx = yy.ravel(), xx.ravel()
    for z in range(labels.shape[0]):
        plane = labels[z].ravel()
        c = np.bincount(plane, minlength=n + 1)
        counts += c
        sums[:, 0] += z * c
        sums[:, 1] += np.bincount(plane, weights=yy, minlength=n + 1)
        sums[:, 2] += np.bincount(plane, weights=xx, minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts[:, None]
    out[0] = np.nan
    return out


def prepare_block(labels: np.ndarray, grid: BlockGrid, index: Triple) -> BlockLabels:
    """Renumber a block's extent labels (core objects 1..n) and decide which it owns.

    Args:
        labels: integer (z, y, x) labels of the block extent ``grid.extent(index)``.
        grid: the block grid.
        index: block index (i, j, k).

    Returns:
        The block's :class:`BlockLabels`.
    """
    ext = grid.extent(index)
    core = grid.core(index)
    core_rel = relative(core, ext)
    labels = np.ascontiguousarray(labels)
    if labels.dtype.kind not in "iu":
        labels = labels.astype(np.int64)
    ids = fastremap.unique(labels[core_rel])
    ids = ids[ids != 0]
    n = int(ids.size)
    if n == 0:
        return BlockLabels(np.zeros(labels.shape, np.int32), 0, np.zeros(1, bool))
    kept = fastremap.mask_except(labels, [int(i) for i in ids])
    table = {int(i): k + 1 for k, i in enumerate(ids)}
    table[0] = 0
    local = fastremap.remap(kept, table).astype(np.int32, copy=False)
    centre = centroids(local, n) + np.array([s.start for s in ext], dtype=np.float64)
    lo = np.array([s.start for s in core], dtype=np.float64)
    hi = np.array([s.stop for s in core], dtype=np.float64)
    owned = np.all((centre >= lo) & (centre < hi), axis=1)
    owned[0] = False
    return BlockLabels(local, n, owned)


def fragment_links(
    core_labels: np.ndarray,
    owned: np.ndarray,
    pieces: Iterable[tuple[int, tuple[slice, ...], np.ndarray, np.ndarray]],
    *,
    overlap_threshold: float = 0.5,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Best link of every fragment of one core to a neighbour's object.

    Args:
        core_labels: int (z, y, x) block-local labels of core m (1..n_m).
        owned: bool (n_m + 1,) ownership of core m's labels.
        pieces: per neighbour b: (flat id of b, slices of the overlap region relative
            to core m, b's block-local labels on that region (0 = none), b's owned flags).
        overlap_threshold: fraction of the fragment's voxels in the region that an
            owned object must cover.
        iou_threshold: IoU in the region for the fragment-to-fragment fallback.

    Returns:
        int64 (k, 3) rows (fragment id in m, flat id of b, object id in b).
    """
    owned = np.asarray(owned, bool)
    best: dict[int, tuple[tuple, tuple[int, int]]] = {}
    for b_flat, rel, other, other_owned in pieces:
        y = core_labels[rel].ravel()
        x = np.asarray(other).ravel()
        frag = (y > 0) & ~owned[y]
        if not frag.any():
            continue
        n_b = int(other_owned.size) - 1
        y_size = np.bincount(y[frag], minlength=owned.size)
        x_size = np.bincount(x, minlength=n_b + 1)
        keys, counts = np.unique(y[frag].astype(np.int64) * (n_b + 1) + x[frag], return_counts=True)
        for key, c in zip(keys.tolist(), counts.tolist()):
            yi, xi = divmod(key, n_b + 1)
            if xi == 0:
                continue
            if other_owned[xi]:
                if c < overlap_threshold * y_size[yi]:
                    continue
                rank = (1, float(c), -b_flat, -xi)
            else:
                iou = c / float(y_size[yi] + x_size[xi] - c)
                if iou < iou_threshold:
                    continue
                rank = (0, iou, -b_flat, -xi)
            if yi not in best or rank > best[yi][0]:
                best[yi] = (rank, (b_flat, xi))
    if not best:
        return np.zeros((0, 3), np.int64)
    return np.array([(yi, b, xi) for yi, (_, (b, xi)) in sorted(best.items())], dtype=np.int64)


@dataclass
class Merges:
    """Result of joining linked labels: which global ids disappear and into what.

    Attributes:
        sources: sorted int64 global ids that are merged into another id.
        targets: int64 representative (smallest id of the component) for each source.
    """

    sources: np.ndarray
    targets: np.ndarray


def merge_components(links: np.ndarray) -> Merges:
    """Connected components over (global id, global id) links; smallest id represents.

    Args:
        links: int64 (k, 2) pairs of global label ids to be joined.

    Returns:
        :class:`Merges` listing every non-representative id and its representative.
    """
    links = np.asarray(links, dtype=np.int64).reshape(-1, 2)
    if links.shape[0] == 0:
        return Merges(np.zeros(0, np.int64), np.zeros(0, np.int64))
    nodes, inverse = np.unique(links, return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    graph = sparse.coo_matrix(
        (np.ones(len(inverse), np.int8), (inverse[:, 0], inverse[:, 1])), shape=(nodes.size, nodes.size)
    )
    _, comp = csgraph.connected_components(graph, directed=False)
    rep = np.full(comp.max() + 1, np.iinfo(np.int64).max, np.int64)
    np.minimum.at(rep, comp, nodes)
    target = rep[comp]
    moved = target != nodes
    return Merges(nodes[moved], target[moved])


@dataclass
class BlockRemap:
    """What one block needs to turn its local ids into final compact ids.

    Final id of local label l (not overridden): ``offset + l - shift - #(removed < l)``.
    """

    offset: int
    shift: int
    removed: np.ndarray
    overrides: dict[int, int]

    def table(self, n: int) -> np.ndarray:
        """Lookup table (n + 1,) int64 from local id to final id (0 stays 0)."""
        local = np.arange(n + 1, dtype=np.int64)
        out = self.offset + local - self.shift - np.searchsorted(self.removed, local, side="left")
        for k, v in self.overrides.items():
            out[k] = v
        out[0] = 0
        return out


def block_remaps(offsets: Sequence[int], counts: Sequence[int], merges: Merges) -> list[BlockRemap]:
    """Per-block remaps so labels become 1..N with merged ids sharing one value.

    Args:
        offsets: global id of local label 0 for every block (flat order); a block's
            labels are ``offset + 1 .. offset + count``.
        counts: number of labels per block.
        merges: merged ids and their representatives (global ids).

    Returns:
        One :class:`BlockRemap` per block; each holds only that block's merged ids.
    """
    src, tgt = merges.sources, merges.targets
    final_of_target = tgt - np.searchsorted(src, tgt, side="left")
    out = []
    for off, n in zip(offsets, counts):
        lo, hi = np.searchsorted(src, [off + 1, off + n + 1])
        removed_local = src[lo:hi] - off
        overrides = {int(s - off): int(f) for s, f in zip(src[lo:hi], final_of_target[lo:hi])}
        out.append(BlockRemap(int(off), int(lo), removed_local, overrides))
    return out


def reference_stitch(core_global: np.ndarray, links: np.ndarray) -> np.ndarray:
    """Plain whole-volume version of the relabel, for tests: union-find then renumber.

    Args:
        core_global: int (z, y, x) volume of globally unique block labels.
        links: int64 (k, 2) global id pairs to join.

    Returns:
        int64 (z, y, x) labels 1..N, numbered in order of each component's smallest id.
    """
    parent: dict[int, int] = {}

    def find(a: int) -> int:
        while parent.get(a, a) != a:
            a = parent[a]
        return a

    for a, b in np.asarray(links, np.int64).reshape(-1, 2).tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    ids = np.unique(core_global)
    ids = ids[ids != 0]
    roots = np.array([find(int(i)) for i in ids], dtype=np.int64)
    uniq = np.unique(roots)
    final = np.searchsorted(uniq, roots) + 1
    lut = dict(zip(ids.tolist(), final.tolist()))
    lut[0] = 0
    return np.vectorize(lut.__getitem__, otypes=[np.int64])(core_global)
