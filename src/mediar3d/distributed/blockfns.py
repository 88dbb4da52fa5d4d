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
    """Whether ``mediar3d.inference.run_segmentation`` accepts a fixed ``intensity_range``."""
    from mediar3d.inference import run_segmentation

    return "intensity_range" in inspect.signature(run_segmentation).parameters


def worker_device(device: str | None = None) -> str:
    """The device a worker should use: ``device`` if given (not "auto"), else CUDA when present."""
    if device and device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
    """

    model: Any = None
    diameter: float | None = None
    anisotropy: float | None = None
    device: str | None = None
    intensity_range: tuple[float, float] | None = None
    options: dict[str, Any] = field(default_factory=dict)

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
        result = run_segmentation(
            np.asarray(block), model, diameter=diameter, anisotropy=self.anisotropy,
            device=device, **options,
        )
        return np.asarray(result.labels)

    def fingerprint(self) -> str:
        """Stable description for the resume check."""
        return "SegmentBlockFn" + json.dumps(
            {"model": self.model, "diameter": self.diameter, "anisotropy": self.anisotropy,
             "range": self.intensity_range, "options": self.options}, sort_keys=True, default=str
        )
