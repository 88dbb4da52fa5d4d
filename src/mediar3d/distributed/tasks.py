"""The three per-block tasks that run on workers: segment, link, relabel.

Each reads only its own block (and, for linking, the halo overlaps of its
neighbours), so a worker's memory is bounded by the block extent, never the volume.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from mediar3d.distributed.grid import BlockGrid, Triple, intersect, relative
from mediar3d.distributed.stitch import BlockRemap, fragment_links, prepare_block
from mediar3d.distributed.store import WorkStore, open_lazy, open_output_array
from mediar3d.errors import InputError


def read_extent(inputs: Sequence[Any], grid: BlockGrid, index: Triple) -> Any:
    """Read a block's extent from every input; a single input gives one array.

    Args:
        inputs: array-likes or Zarr paths, each (z, y, x) or (c, z, y, x).
        grid: the block grid.
        index: block index.

    Returns:
        One ndarray (or a tuple, one per input) of shape (..., ez, ey, ex).
    """
    ext = grid.extent(index)
    blocks = []
    for item in inputs:
        arr = open_lazy(item) if isinstance(item, (str, os.PathLike)) else item
        blocks.append(np.asarray(arr[(Ellipsis,) + tuple(ext)]))
    return blocks[0] if len(blocks) == 1 else tuple(blocks)


def segment_block(
    inputs: Sequence[Any], block_fn: Callable[[Any], np.ndarray], grid: BlockGrid, index: Triple, work: str
) -> int:
    """Segment one block extent, renumber, decide ownership, store it; returns its label count."""
    data = read_extent(inputs, grid, index)
    labels = np.asarray(block_fn(data))
    ext = grid.extent(index)
    shape = tuple(s.stop - s.start for s in ext)
    if labels.shape != shape or labels.dtype.kind not in "iu":
        raise InputError(
            f"block {index}: block_fn returned {labels.dtype} {labels.shape}, expected integer labels of shape {shape}"
        )
    prepared = prepare_block(labels, grid, index)
    WorkStore(work, grid).write_block(index, prepared.labels, prepared.n, prepared.owned)
    return prepared.n


def link_block(grid: BlockGrid, index: Triple, work: str, overlap_threshold: float, iou_threshold: float) -> np.ndarray:
    """Links of this block's fragments to neighbours' objects, as (y, flat b, x) rows."""
    store = WorkStore(work, grid)
    mark = store.marker(index)
    if mark.n == 0 or mark.owned[1:].all():
        return np.zeros((0, 3), np.int64)
    core = grid.core(index)
    core_labels = store.core_labels(index)

    def pieces():
        for nb in grid.neighbours(index):
            box = intersect(grid.extent(nb), core)
            if box is None:
                continue
            rel = relative(box, core)
            if not (~mark.owned[core_labels[rel]] & (core_labels[rel] > 0)).any():
                continue
            yield grid.flat(nb), rel, store.extent_labels(nb, box), store.marker(nb).owned

    return fragment_links(
        core_labels, mark.owned, pieces(), overlap_threshold=overlap_threshold, iou_threshold=iou_threshold
    )


def relabel_block(
    grid: BlockGrid, index: Triple, work: str, remap: BlockRemap, n: int, out: str, array_path: str, dtype: str
) -> int:
    """Write one output chunk: the block's core labels through its remap table."""
    store = WorkStore(work, grid)
    table = remap.table(n).astype(dtype)
    labels = table[store.core_labels(index)]
    open_output_array(out, array_path)[grid.core(index)] = labels
    return int(labels.size)
