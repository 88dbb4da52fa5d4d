"""Flows + cell probability -> instance labels (Algorithm 4), in 2D and 3D.

Memory: the inputs are read once, into the foreground mask and the capped, interleaved flow
field that the following and the flow check use; float16 flows give an int16 fixed-point
field (half of float32's memory). :func:`compute_masks_taking` gets its inputs from a
callable, so a caller that owns them (`mediar3d.inference.predict.labels` with
``release=True``) holds no reference and the flows are freed once the field is made.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import numpy as np

from mediar3d.errors import ConfigError, InputError
from mediar3d.postprocess.filters import (drop_labels, fill_holes, flow_consistency_errors,
                                          relative_size_filter, renumber, size_filter)
from mediar3d.postprocess.follow import (foreground_coords, follow_flows_reference, follow_to_bins,
                                         prepare_field)
from mediar3d.postprocess.params import PostprocessParams
from mediar3d.postprocess.seeds import (basin_map, basin_map_reference, endpoint_bins_reference,
                                        find_seeds, find_seeds_reference, histogram, scatter_basins,
                                        scatter_labels)

__all__ = ["compute_masks", "compute_masks_taking", "check_inputs"]

logger = logging.getLogger(__name__)


def check_inputs(flows: np.ndarray, cellprob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a flow field and its cell probability.

    Args:
        flows: (3, Z, Y, X) ordered (dz, dy, dx), or (2, Y, X) ordered (dy, dx).
        cellprob: logits (Z, Y, X) or (Y, X).

    Returns:
        (flows, cellprob): float32, or float16 where given so (no copy of either).

    Raises:
        InputError: wrong dimensions, mismatched shapes, non-numeric or non-finite values.
    """
    flows = np.asarray(flows)
    cellprob = np.asarray(cellprob)
    for name, arr in (("flows", flows), ("cellprob", cellprob)):
        if arr.dtype.kind not in "fiub":
            raise InputError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if cellprob.ndim not in (2, 3):
        raise InputError(f"cellprob: expected (Z, Y, X) or (Y, X), got shape {cellprob.shape}")
    want = (cellprob.ndim,) + cellprob.shape
    if flows.shape != want:
        raise InputError(f"flows: shape {flows.shape} does not match cellprob shape {cellprob.shape}; "
                         f"expected {want} (components first: (dz, dy, dx) in 3D, (dy, dx) in 2D)")
    if cellprob.size == 0:
        raise InputError(f"cellprob: empty array of shape {cellprob.shape}")
    flows = flows if flows.dtype in (np.float16, np.float32) else flows.astype(np.float32)
    cellprob = cellprob if cellprob.dtype in (np.float16, np.float32) else cellprob.astype(np.float32)
    for name, arr in (("flows", flows), ("cellprob", cellprob)):
        bad = _count_nonfinite(arr)
        if bad:
            raise InputError(f"{name}: {bad} NaN or infinite values; fix the network output first")
    return flows, cellprob


def _count_nonfinite(array: np.ndarray, chunk: int = 1 << 22) -> int:
    """Number of NaN / infinite values, a slab at a time (no full-size boolean temporary)."""
    flat = array.reshape(-1) if array.flags.c_contiguous else np.ravel(array)
    return sum(int(np.count_nonzero(~np.isfinite(flat[i:i + chunk]))) for i in range(0, flat.size, chunk))


@dataclasses.dataclass
class _Prepared:
    """What :func:`_masks_from_prepared` needs of the flows and the cell probability.

    Attributes:
        field: (Z, Y, X, 3) capped flows (dz, dy, dx), zero in the background: float32, or
            int16 fixed point for float16 flows (see `mediar3d.postprocess.follow.prepare_field`).
        fg: bool (Z, Y, X) foreground (Z = 1 for a 2D input).
        shape: the cell probability's shape, (Z, Y, X) or (Y, X): the labels' shape.
        method: "fast" or "reference".
    """

    field: np.ndarray
    fg: np.ndarray
    shape: tuple[int, ...]
    method: str = "fast"


def _prepare(take: Callable[[], tuple[np.ndarray, np.ndarray]], *, cellprob_threshold: float,
             max_flow_norm: float, method: str) -> _Prepared:
    """Steps 1-2 of :func:`compute_masks`: the inputs ``take()`` gives -> foreground and flow field.

    ``method`` is checked before ``take()`` is called. The cell probability is dropped once
    thresholded, before the field is made; no reference to either input is kept.
    """
    if method not in ("fast", "reference"):
        raise ConfigError(f"compute_masks method: expected 'fast' or 'reference', got {method!r}")
    flows, cellprob = check_inputs(*take())
    shape = tuple(cellprob.shape)
    shape3 = shape if len(shape) == 3 else (1,) + shape
    fg = (cellprob > cellprob_threshold).reshape(shape3)
    del cellprob
    lean = method == "fast" and flows.dtype == np.float16 and 0.0 < max_flow_norm <= 1.0
    field = prepare_field(flows, fg, max_flow_norm, dtype=np.int16 if lean else np.float32)
    return _Prepared(field=field, fg=fg, shape=shape, method=method)


def compute_masks(flows: np.ndarray, cellprob: np.ndarray, *, niter: int = 200,
                  cellprob_threshold: float = 0.0, flow_threshold: float = 0.4,
                  min_size: int = 15, max_size_fraction: float = 0.4,
                  min_size_fraction: float = 0.0, max_flow_norm: float = 1.0, seed_min_count: int = 10,
                  basin_threshold: int = 2, peak_kernel: int = 5, basin_box: int = 11,
                  method: str = "fast") -> np.ndarray:
    """Instance labels from flows and cell-probability logits (Algorithm 4).

    1. Foreground: ``cellprob > cellprob_threshold``.
    2. Flows longer than ``max_flow_norm`` are shortened to it (unit flows are unchanged;
       flows summed over orthogonal slice views, components up to 2, become unit length),
       background flows are zeroed, and every foreground voxel follows the interpolated
       field for ``niter`` steps, clipped to the volume.
    3. End points are rounded and counted; histogram peaks (max-pool ``peak_kernel``) with
       more than ``seed_min_count`` points are seeds.
    4. Each seed grows in a ``basin_box``-sided box through bins with more than
       ``basin_threshold`` points; each voxel takes the label of its end point's basin.
    5. Masks larger than ``max_size_fraction`` of the volume or smaller than ``min_size``
       are dropped; masks whose flow-consistency error (mean squared difference between
       the capped flows and the flows recomputed from the mask) exceeds ``flow_threshold``
       are dropped, in 2D and 3D; masks smaller than ``min_size_fraction`` of the typical
       mask (voxel-weighted median size) are dropped; holes of each mask are filled;
       labels are renumbered.

    Args:
        flows: (3, Z, Y, X) ordered (dz, dy, dx), or (2, Y, X) ordered (dy, dx), on the
            unit scale of :func:`mediar3d.flows.masks_to_flows` (undo a network's x5
            training scale first; summed orthogonal-view flows are fine as they are).
        cellprob: cell-probability logits, (Z, Y, X) or (Y, X).
        niter: Euler steps.
        cellprob_threshold: foreground logit threshold (0.0 = probability 0.5).
        flow_threshold: maximum flow-consistency error (0 turns the check off).
        min_size: smallest mask kept, in voxels (0 keeps all).
        max_size_fraction: largest mask kept, as a fraction of the volume.
        min_size_fraction: smallest mask kept, as a fraction of the typical mask (0 keeps all).
        max_flow_norm: cap on the flow length in voxels per step (0: no cap).
        seed_min_count: a seed needs more end points than this.
        basin_threshold: basins grow through bins with more end points than this.
        peak_kernel: max-pool window for seeds (odd).
        basin_box: side of the box a basin grows in (odd).
        method: ``"fast"`` (numba) or ``"reference"`` (plain SciPy; slow, for checks).

    Returns:
        int32 labels of ``cellprob``'s shape, 0 background, masks 1..N.

    Raises:
        InputError: bad arrays (see :func:`check_inputs`).
        ConfigError: a parameter is out of range or ``method`` is unknown.
    """
    return compute_masks_taking(lambda: (flows, cellprob), niter=niter, cellprob_threshold=cellprob_threshold,
                                flow_threshold=flow_threshold, min_size=min_size, max_size_fraction=max_size_fraction,
                                min_size_fraction=min_size_fraction, max_flow_norm=max_flow_norm,
                                seed_min_count=seed_min_count, basin_threshold=basin_threshold,
                                peak_kernel=peak_kernel, basin_box=basin_box, method=method)


def compute_masks_taking(take: Callable[[], tuple[np.ndarray, np.ndarray]], *, niter: int = 200,
                         cellprob_threshold: float = 0.0, flow_threshold: float = 0.4,
                         min_size: int = 15, max_size_fraction: float = 0.4,
                         min_size_fraction: float = 0.0, max_flow_norm: float = 1.0, seed_min_count: int = 10,
                         basin_threshold: int = 2, peak_kernel: int = 5, basin_box: int = 11,
                         method: str = "fast") -> np.ndarray:
    """:func:`compute_masks` on the ``(flows, cellprob)`` that ``take()`` hands over.

    ``take`` is called once, after the settings are checked; its arrays are read into the
    foreground and the flow field and then dropped, so when the caller kept no reference
    (e.g. ``take`` pops them from its own store) they are freed before the following starts.
    Same settings and result as :func:`compute_masks`.
    """
    PostprocessParams(niter=niter, cellprob_threshold=cellprob_threshold,
                      flow_threshold=flow_threshold, min_size=min_size,
                      max_size_fraction=max_size_fraction, min_size_fraction=min_size_fraction,
                      max_flow_norm=max_flow_norm,
                      seed_min_count=seed_min_count, basin_threshold=basin_threshold,
                      peak_kernel=peak_kernel, basin_box=basin_box)
    prepared = _prepare(take, cellprob_threshold=cellprob_threshold, max_flow_norm=max_flow_norm, method=method)
    return _masks_from_prepared(prepared, niter=niter, flow_threshold=flow_threshold, min_size=min_size,
                                max_size_fraction=max_size_fraction, min_size_fraction=min_size_fraction,
                                seed_min_count=seed_min_count, basin_threshold=basin_threshold,
                                peak_kernel=peak_kernel, basin_box=basin_box)


def _masks_from_prepared(prepared: _Prepared, *, niter: int = 200, flow_threshold: float = 0.4,
                        min_size: int = 15, max_size_fraction: float = 0.4, min_size_fraction: float = 0.0,
                        seed_min_count: int = 10, basin_threshold: int = 2, peak_kernel: int = 5,
                        basin_box: int = 11) -> np.ndarray:
    """Steps 2-6 of :func:`compute_masks` on a :func:`_prepare` result.

    Args:
        prepared: from :func:`_prepare`.
        niter ... basin_box: as for :func:`compute_masks`.

    Returns:
        int32 labels of ``prepared.shape``, 0 background, masks 1..N.
    """
    field, method = prepared.field, prepared.method
    labels = _grow_masks(prepared, niter=niter, seed_min_count=seed_min_count, basin_threshold=basin_threshold,
                         peak_kernel=peak_kernel, basin_box=basin_box)
    if labels is None:
        return np.zeros(prepared.shape, np.int32)
    t0 = time.perf_counter()
    size_filter(labels, min_size=min_size, max_size=max_size_fraction * labels.size)
    errors = None
    if flow_threshold > 0 and labels.any():
        errors = flow_consistency_errors(_in_shape(labels, prepared.shape), field, single=method != "reference")
    del field
    labels = _finish_masks(labels, prepared.shape, errors, flow_threshold=flow_threshold,
                           min_size_fraction=min_size_fraction)
    logger.debug("compute_masks: filters %.2fs, %d masks", time.perf_counter() - t0, int(labels.max()))
    return labels


def _in_shape(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(Z, Y, X) labels as the input's shape: a view, (Y, X) for a 2D input."""
    return labels if len(shape) == 3 else labels[0]


def _grow_masks(prepared: _Prepared, *, niter: int, seed_min_count: int, basin_threshold: int, peak_kernel: int,
                basin_box: int) -> np.ndarray | None:
    """Steps 2-4 of :func:`compute_masks`: follow the flows, find seeds, grow basins, label.

    The fast method follows the foreground voxels straight to their end-point bins
    (`mediar3d.postprocess.follow.follow_to_bins`) and writes labels through them
    (`mediar3d.postprocess.seeds.scatter_basins`): no (N, 3) positions are stored. The
    reference method keeps the plain steps (start and end positions, SciPy filters).
    ``prepared.fg`` is released.

    Returns:
        int32 (Z, Y, X) labels before any filter (Z = 1 for a 2D input), or None when no
        voxel is foreground.
    """
    fg, field = prepared.fg, prepared.field
    shape3 = fg.shape
    if not fg.any():
        logger.info("compute_masks: no foreground voxel")
        return None
    ref = prepared.method == "reference"
    t0 = time.perf_counter()

    if ref:
        coords = foreground_coords(fg)
        pos = follow_flows_reference(field, coords, niter)
        bins = endpoint_bins_reference(pos, shape3)
        del pos
    else:
        bins = follow_to_bins(field, fg, niter)
    t1 = time.perf_counter()

    hist = histogram(bins, shape3)
    if ref:
        seeds = find_seeds_reference(hist, kernel=peak_kernel, min_count=seed_min_count)
        basins = basin_map_reference(hist, seeds, box=basin_box, threshold=basin_threshold)
    else:
        seeds = find_seeds(hist, kernel=peak_kernel, min_count=seed_min_count)
        basins = basin_map(hist, seeds, box=basin_box, threshold=basin_threshold, overwrite=True)
    del hist
    if ref:
        labels = np.zeros(shape3, np.int32)
        scatter_labels(labels, coords, basins.reshape(-1), bins)
        del coords
    else:
        labels = scatter_basins(basins, fg, bins)
    del basins, bins, fg
    prepared.fg = None  # not needed any more
    logger.debug("compute_masks: follow %.2fs, seeds+basins %.2fs", t1 - t0, time.perf_counter() - t1)
    return labels


def _finish_masks(labels: np.ndarray, shape: tuple[int, ...], errors: np.ndarray | None, *, flow_threshold: float,
                  min_size_fraction: float) -> np.ndarray:
    """Step 5's flow check and relative size filter, step 6 (holes, renumbering), on size-filtered labels.

    Args:
        labels: int32 (Z, Y, X) labels after :func:`size_filter` (changed in place).
        shape: the input's shape, (Z, Y, X) or (Y, X): the result's shape.
        errors: flow-consistency error of each label (index = label; longer than the
            labels' maximum + 1 is fine), or None when the check is off or nothing is left.
        flow_threshold, min_size_fraction: as for :func:`compute_masks`.
    """
    labels = _in_shape(labels, shape)
    if flow_threshold > 0 and errors is not None:
        bad = np.nan_to_num(errors, nan=0.0) > flow_threshold
        logger.debug("compute_masks: flow check drops %d of %d masks", int(bad.sum()), int(np.isfinite(errors).sum()))
        drop_labels(labels, bad)
    relative_size_filter(labels, min_size_fraction)
    fill_holes(labels)
    return renumber(labels).reshape(shape)
