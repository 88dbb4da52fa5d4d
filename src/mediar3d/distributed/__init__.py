"""Block-wise segmentation of volumes larger than memory on Dask, with stitched labels.

``segment_blocks`` cuts a Zarr / OME-Zarr volume (z, y, x) into blocks read with a
halo, runs a block function on each (the full pipeline by default) on a local Dask
cluster or any scheduler, stitches labels across block faces by ownership and halo
overlap, and writes labels 1..N to Zarr. Dask itself is imported only when a cluster
is started (the ``[dask]`` extra).
"""

from mediar3d.distributed.blockfns import FlowsBlockFn, SegmentBlockFn, worker_device
from mediar3d.distributed.blockwise import BlockRunResult, segment_blocks
from mediar3d.distributed.grid import BlockGrid, choose_block_size, default_halo, should_use_blocks
from mediar3d.distributed.intensity import global_percentiles

__all__ = [
    "BlockGrid",
    "BlockRunResult",
    "FlowsBlockFn",
    "SegmentBlockFn",
    "choose_block_size",
    "default_halo",
    "global_percentiles",
    "segment_blocks",
    "should_use_blocks",
    "worker_device",
]
