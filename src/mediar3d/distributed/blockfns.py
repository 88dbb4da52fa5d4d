"""Block functions: what runs on one block extent (the full pipeline, or flows -> masks).

A block function maps the input read on a block extent (spatial axes last) to integer
labels of the extent's (z, y, x) shape. They are small picklable objects: the network
is loaded once per worker process and kept, and a worker with a GPU uses it.
"""

from __future__ import annotations

import inspect
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mediar3d.errors import ConfigError

_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def segment_takes_intensity_range() -> bool:
    """Whether ``mediar3d.inference.predict`` (run by ``run_segmentation``) accepts a fixed ``intensity_range``."""
    from mediar3d.inference import predict

    return "intensity_range" in inspect.signature(predict).parameters


def worker_device(device: str | None = None) -> str:
    """The device a worker should use: ``device`` if given (not "auto"), else as
    :func:`mediar3d.inference.device.select_device` picks (CUDA, MPS, CPU)."""
    if device and device != "auto":
        return device
    from mediar3d.inference.device import select_device

    return str(select_device(None))


@dataclass
class FlowsBlockFn:
    """Flows -> masks on a block: ``compute_masks(flows, cellprob, **options)``.

    Called with a tuple (flows float32 (3, z, y, x) ordered (dz, dy, dx), cellprob
    logits (z, y, x)) read on the block extent; returns int labels (z, y, x).
    """

    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, blocks: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        from mediar3d.postprocess import compute_masks

        flows, cellprob = blocks
        return np.asarray(compute_masks(np.asarray(flows, np.float32), np.asarray(cellprob, np.float32), **self.options))

    def fingerprint(self) -> str:
        """Stable description for the resume check."""
        return "FlowsBlockFn" + json.dumps(self.options, sort_keys=True, default=str)


@dataclass
class SegmentBlockFn:
    """The full pipeline on a block: ``mediar3d.inference.segment`` (network + post-processing).

    Every block must be processed alike, so nothing is estimated per block: the object
    diameter (network scale) and anisotropy are fixed here for all blocks.

    Args:
        model: None / "default" for the bundled model, a bundled name, a checkpoint
            path (resolved once per worker process and kept) or a torch module.
        diameter: object diameter in y/x pixels (None: the model's own scale, no rescaling).
        anisotropy: z spacing over y/x spacing.
        device: "cpu", "cuda", "cuda:1"...; default CUDA when the worker has it.
        intensity_range: (low, high) intensities mapped to 0 and 1 for every block (e.g.
            percentiles of the whole volume), passed to ``segment`` when it supports a
            fixed range; else each block is percentile-normalised on its own.
        options: further keyword arguments of ``segment`` (thresholds, tile, tta, ...).
        grid_quantum: block starts and sizes must be multiples of it (see :func:`snap_scale`).
    """

    model: Any = None
    diameter: float | None = None
    anisotropy: float | None = None
    device: str | None = None
    intensity_range: tuple[float, float] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: Block starts and sizes must be multiples of this for the blocks' resampled grids
    #: to be sub-grids of one common grid (see :func:`snap_scale`); 1 when no resampling.
    grid_quantum: int = 1

    def _resolved(self, device: str) -> Any:
        key = (str(self.model) if not hasattr(self.model, "forward") else f"module-{id(self.model)}", device)
        with _LOCK:
            if key not in _MODELS:
                from mediar3d.inference.loader import resolve_model

                _MODELS[key] = resolve_model(self.model)
            return _MODELS[key]

    def __call__(self, block: np.ndarray) -> np.ndarray:
        from mediar3d.inference import run_segmentation

        options = dict(self.options)
        device = worker_device(options.pop("device", None) or self.device)
        options.setdefault("progress", False)
        if self.intensity_range is not None:
            if not segment_takes_intensity_range():
                raise ConfigError("intensity_range: this mediar3d.inference.segment cannot take a fixed range")
            options["intensity_range"] = tuple(self.intensity_range)
        model = self._resolved(device)
        diameter = self.diameter if self.diameter is not None else model.diameter
        block = np.asarray(block)
        shape = block.shape
        if self.grid_quantum > 1:
            # Only extents that end at the volume's far border have sizes off the grid:
            # extend them there (edge values, as the zoom itself does) and crop back.
            block = np.pad(block, [(0, -n % self.grid_quantum) for n in shape], mode="edge")
        result = run_segmentation(block, model, diameter=diameter, anisotropy=self.anisotropy, device=device, **options)
        return np.asarray(result.labels)[tuple(slice(0, n) for n in shape)]

    def estimate_diameter(self, sample: np.ndarray) -> float | None:
        """Object diameter that ``segment`` estimates on a (z, y, x) sample, None if none found.

        Only the estimate runs (:func:`mediar3d.inference.predict.measure_diameter`), not a segmentation.
        """
        from mediar3d.inference.predict import measure_diameter

        options = dict(self.options)
        device = worker_device(options.pop("device", None) or self.device)
        if self.intensity_range is not None:
            options["intensity_range"] = tuple(self.intensity_range)
        value = measure_diameter(np.asarray(sample), self._resolved(device), device=device, **options)
        return float(value) if value else None

    def fingerprint(self) -> str:
        """Stable description for the resume check."""
        return "SegmentBlockFn" + json.dumps(
            {"model": self.model, "diameter": self.diameter, "anisotropy": self.anisotropy,
             "range": self.intensity_range, "options": self.options}, sort_keys=True, default=str
        )


def default_segment_fn(
    volume: Any,
    *,
    model: Any = None,
    diameter: float | None = None,
    anisotropy: float | None = None,
    options: dict[str, Any] | None = None,
    sample_block: tuple[int, int, int] = (64, 256, 256),
) -> SegmentBlockFn:
    """The full pipeline set up once for a whole (z, y, x) volume, so all blocks agree.

    Intensities are scaled by the whole volume's percentiles (from a strided sample);
    without a ``diameter`` it is estimated once, by ``segment`` on the central
    ``sample_block`` of the volume, and then fixed for every block.

    Args:
        volume: lazily sliced (z, y, x) array-like.
        model: as for :class:`SegmentBlockFn`.
        diameter: object diameter in y/x pixels, or None to estimate it.
        anisotropy: z spacing over y/x spacing.
        options: more ``segment`` keyword arguments.
        sample_block: size (z, y, x) of the central crop used to estimate the diameter.

    Returns:
        A :class:`SegmentBlockFn`; its ``diameter`` is None only when the model has no
        training diameter to scale to.
    """
    from mediar3d.distributed.intensity import global_percentiles
    from mediar3d.inference.loader import resolve_model

    resolved = resolve_model(model)
    intensity = None
    if segment_takes_intensity_range():
        intensity = global_percentiles(volume, tuple(resolved.percentiles))
    fn = SegmentBlockFn(model=model, diameter=diameter, anisotropy=anisotropy, intensity_range=intensity,
                        options=dict(options or {}))
    if diameter is None and resolved.diameter is not None:
        starts = [max((n - s) // 2, 0) for n, s in zip(volume.shape[-3:], sample_block)]
        box = tuple(slice(a, a + s) for a, s in zip(starts, sample_block))
        fn.diameter = fn.estimate_diameter(np.asarray(volume[(Ellipsis,) + box]))
    fn.diameter, fn.anisotropy, fn.grid_quantum = snap_scale(resolved.diameter, fn.diameter, anisotropy)
    return fn


def snap_scale(
    model_diameter: float | None, diameter: float | None, anisotropy: float | None, *, max_step: float = 1 / 8
) -> tuple[float | None, float | None, int]:
    """Round the zoom that ``segment`` applies so every block is resampled onto one grid.

    ``segment`` zooms a volume by (anisotropy * s, s, s) with s = model diameter /
    diameter, rounding each block's zoomed size on its own; blocks then disagree by
    sub-voxel shifts and their masks no longer line up. With s = k / q and
    anisotropy * s = kz / q, a block starting and ending at multiples of q maps onto
    exactly the voxels the whole volume's zoom would give.

    Args:
        model_diameter: the model's training diameter (None: no size rescaling).
        diameter: object diameter in y/x pixels (None: the model's own scale).
        anisotropy: z spacing over y/x spacing (None: 1).
        max_step: largest relative step between allowed zoom factors (changes are at
            most half of it).

    Returns:
        (diameter, anisotropy, q) to use instead; q = 1 when nothing is resampled.
    """
    s = model_diameter / diameter if (model_diameter and diameter) else 1.0
    fz = (anisotropy or 1.0) * s
    if abs(s - 1.0) < 1e-9 and abs(fz - 1.0) < 1e-9:
        return diameter, anisotropy, 1
    q = max(8, int(np.ceil(1.0 / (max_step * min(s, fz)))))
    s_q = max(1, round(s * q)) / q
    fz_q = max(1, round(fz * q)) / q
    new_diameter = model_diameter / s_q if (model_diameter and diameter) else diameter
    return new_diameter, fz_q / s_q, q
