"""Block-wise segmentation of volumes larger than memory, with stitched labels.

Three stages, each a set of independent per-block tasks on Dask:

1. segment: every block extent (core + halo) goes through ``block_fn``; its labels are
   renumbered (objects in the core 1..n), ownership is decided from object centres,
   and the result is stored with a completion marker (resumable).
2. link: each core's fragments (objects whose centre lies in another core) are matched
   to the objects neighbours see in their halos (see :mod:`mediar3d.distributed.stitch`).
   The links, a few per object crossing a face, are joined on the client.
3. relabel: each core block is written to the output through a table over its own
   labels only, giving labels 1..N over the volume.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mediar3d.distributed.cluster import Executor
from mediar3d.distributed.grid import BlockGrid, choose_block_size, default_halo
from mediar3d.distributed.stitch import block_remaps, merge_components
from mediar3d.distributed.store import WorkStore, commit_output, create_output, input_voxel_size, open_lazy
from mediar3d.distributed.tasks import link_block, relabel_block, segment_block
from mediar3d.errors import ConfigError, InputError
from mediar3d.io.naming import anisotropy_from_voxel_size

log = logging.getLogger(__name__)

#: Object diameter (voxels) assumed for the default halo when none is given or estimated.
DEFAULT_DIAMETER = 30.0


@dataclass
class BlockRunResult:
    """Summary of a block-wise run.

    Attributes:
        output: path of the written label store.
        n_labels: objects in the output (labels 1..n_labels).
        n_blocks: blocks in the grid.
        blocks_run: blocks segmented in this call.
        blocks_skipped: blocks found finished in the work store and skipped.
        merges: labels joined across block faces.
        grid: the block grid used.
        seconds: wall time per stage.
    """

    output: Path
    n_labels: int
    n_blocks: int
    blocks_run: int
    blocks_skipped: int
    merges: int
    grid: BlockGrid
    seconds: dict[str, float]


def _fingerprint(block_fn: Any) -> str:
    """Stable description of a block function for the resume check."""
    fp = getattr(block_fn, "fingerprint", None)
    if callable(fp):
        return str(fp())
    target = getattr(block_fn, "func", block_fn)  # functools.partial
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__qualname__)}"


def segment_blocks(
    source: Any,
    output: str | os.PathLike,
    *,
    block_fn: Callable[[Any], np.ndarray] | None = None,
    model: Any = None,
    segment_options: dict[str, Any] | None = None,
    block_size: int | Sequence[int] | None = None,
    halo: int | Sequence[int] | None = None,
    diameter: float | None = None,
    anisotropy: float | None = None,
    channel: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    workers: int = 2,
    threads_per_worker: int = 1,
    memory_limit: int | str | None = None,
    processes: bool = True,
    overlap_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    work_dir: str | os.PathLike | None = None,
    resume: bool = True,
    keep_work: bool = False,
    overwrite: bool = False,
    voxel_size: Sequence[float] | None = None,
    progress: bool = True,
) -> BlockRunResult:
    """Segment a (z, y, x) volume block by block on Dask and write stitched labels to Zarr.

    Args:
        source: a Zarr / OME-Zarr path or array-like, (z, y, x) or (c, z, y, x); or a
            tuple of them sharing (z, y, x), handed to ``block_fn`` together as a tuple.
        output: ``.zarr`` (plain array) or ``.ome.zarr`` (OME-Zarr image) label store.
        block_fn: maps a block extent (array or tuple, spatial axes last) to integer
            labels of the extent's (z, y, x) shape. Default: the full pipeline,
            :class:`mediar3d.distributed.SegmentBlockFn` with ``model``, ``diameter``,
            ``anisotropy``, the whole volume's intensity percentiles and ``segment_options``.
        model: for the default pipeline: None (bundled model), a name, a checkpoint path
            or a torch module.
        segment_options: for the default pipeline: more ``mediar3d.inference.segment``
            keyword arguments (cellprob_threshold, flow_threshold, min_size, tile, tta, device...).
        block_size: core block (z, y, x); default: the largest that fits
            ``memory_limit`` per thread.
        halo: voxels read around each core (z, y, x); default ``default_halo(diameter)``
            (1.5 diameters). Must exceed the largest object's diameter.
        diameter: expected object diameter in y/x voxels: sets the default halo and,
            for the default pipeline, the network scale shared by every block. None:
            estimated once on the central block (default pipeline), else 30.
        anisotropy: z spacing over y/x spacing (default halo and pipeline); None
            (default): from the voxel size (given or read from an OME-Zarr input), else 1.
        channel: channel of a (c, z, y, x) single input.
        scheduler: None (new local cluster), "synchronous", "threads", or a Dask
            scheduler address such as "tcp://host:8786".
        client: an existing ``distributed.Client`` (overrides ``scheduler``).
        workers: local cluster workers.
        threads_per_worker: threads (parallel blocks) per local worker.
        memory_limit: per local worker, bytes or "4GB"; default RAM / workers.
        processes: local workers as separate processes.
        overlap_threshold: share of a fragment an owning neighbour's object must cover.
        iou_threshold: IoU for joining two fragments no block owns.
        work_dir: per-block results; default ``<output>.work`` next to the output.
        resume: reuse finished blocks of an earlier run with the same settings.
        keep_work: keep the work store after success (else it is deleted).
        overwrite: replace an existing output.
        voxel_size: (z, y, x) for the OME-Zarr metadata; default from an OME-Zarr input.
        progress: tqdm bars per stage.

    Returns:
        A :class:`BlockRunResult` (output path, label count, blocks run/skipped, timings).
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise InputError(f"{output}: output exists; pass overwrite=True to replace it")
    for name, value in (("overlap_threshold", overlap_threshold), ("iou_threshold", iou_threshold)):
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"{name}={value!r}: must be in (0, 1]")
    many = isinstance(source, tuple)
    items = list(source) if many else [source]
    if channel is not None and many:
        raise ConfigError("channel is for a single (c, z, y, x) input; select channels in block_fn for several inputs")
    arrays = [open_lazy(s, channel=channel) for s in items]
    spatial = {tuple(int(n) for n in a.shape[-3:]) for a in arrays}
    if len(spatial) != 1:
        raise InputError(f"inputs disagree on the (z, y, x) shape: {sorted(spatial)}")
    shape = spatial.pop()
    if voxel_size is None and not many:
        voxel_size = input_voxel_size(source)
    if anisotropy is None:
        anisotropy = anisotropy_from_voxel_size(voxel_size) or 1.0
    if block_fn is None:
        if many:
            raise ConfigError("several inputs need a block_fn (the default pipeline takes one image volume)")
        from mediar3d.distributed.blockfns import default_segment_fn

        block_fn = default_segment_fn(arrays[0], model=model, diameter=diameter, anisotropy=anisotropy,
                                      options=segment_options)
        diameter = block_fn.diameter
    elif model is not None or segment_options:
        raise ConfigError("model and segment_options are for the default pipeline; a block_fn carries its own")
    diameter = diameter or DEFAULT_DIAMETER
    halo3 = BlockGrid.create(shape, 1, default_halo(diameter, anisotropy=anisotropy) if halo is None else halo).halo
    quantum = int(getattr(block_fn, "grid_quantum", 1) or 1)
    halo3 = tuple(-(-h // quantum) * quantum for h in halo3)
    work = Path(work_dir) if work_dir is not None else output.with_name(output.name + ".work")
    settings = {
        "block_fn": _fingerprint(block_fn),
        "inputs": [str(s) if isinstance(s, (str, os.PathLike)) else type(s).__name__ for s in items],
        "channel": channel,
    }
    seconds: dict[str, float] = {}

    with Executor(
        scheduler=scheduler, client=client, workers=workers, threads_per_worker=threads_per_worker,
        memory_limit=memory_limit, processes=processes, progress=progress,
    ) as ex:
        if block_size is None:
            block_size = choose_block_size(shape, halo3, memory_limit=ex.memory_per_thread() // 2)
        if quantum > 1:  # block starts on the common resampling grid of the pipeline
            sizes = BlockGrid.create(shape, block_size, halo3).block_size
            block_size = tuple(max(quantum, b // quantum * quantum) for b in sizes)
        grid = BlockGrid.create(shape, block_size, halo3)
        store = WorkStore(work, grid)
        skipped = store.open(settings, resume=resume)
        log.info("%d blocks of %s (halo %s) over %s; %d already done",
                 len(grid), grid.block_size, grid.halo, shape, skipped)
        # Paths travel as paths (each worker opens them); in-memory arrays are sent once.
        sent = tuple(
            s if isinstance(s, (str, os.PathLike)) and channel is None else ex.scatter(a)
            for s, a in zip(items, arrays)
        )
        todo = [i for i in grid.indices() if not store.is_done(i)]
        t0 = time.perf_counter()
        for _ in ex.map(segment_block, [(sent, block_fn, grid, i, str(work)) for i in todo], desc="segment blocks"):
            pass
        seconds["segment"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        indices = list(grid.indices())
        counts = np.array([store.marker(i).n for i in indices], np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        links = []
        jobs = [(grid, i, str(work), overlap_threshold, iou_threshold) for i in indices]
        for k, rows in ex.map(link_block, jobs, desc="link faces"):
            if len(rows):
                links.append(np.stack([offsets[k] + rows[:, 0], offsets[rows[:, 1]] + rows[:, 2]], axis=1))
        merges = merge_components(np.concatenate(links) if links else np.zeros((0, 2), np.int64))
        remaps = block_remaps(offsets, counts, merges)
        n_labels = int(counts.sum()) - int(merges.sources.size)
        seconds["link"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        dtype = "uint32" if n_labels <= np.iinfo(np.uint32).max else "uint64"  # unsigned, like every label file
        tmp, array_path = create_output(output, grid.shape, grid.block_size, dtype, voxel_size=voxel_size)
        jobs = [(grid, i, str(work), remaps[k], int(counts[k]), str(tmp), array_path, dtype) for k, i in enumerate(indices)]
        for _ in ex.map(relabel_block, jobs, desc="relabel"):
            pass
        from mediar3d.io.zarr_io import add_pyramid

        add_pyramid(tmp)  # lower resolution levels for viewers, before the store appears
        commit_output(tmp, output, overwrite=overwrite)
        seconds["relabel"] = time.perf_counter() - t0

    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    log.info("%s: %d labels, %d merged across faces", output, n_labels, merges.sources.size)
    return BlockRunResult(output, n_labels, len(grid), len(todo), skipped, int(merges.sources.size), grid, seconds)
