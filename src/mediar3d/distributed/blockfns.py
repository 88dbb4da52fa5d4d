"""Block functions: what runs on one block extent (the full pipeline, or flows -> masks).

A block function maps the input read on a block extent (spatial axes last) to integer
labels of the extent's (z, y, x) shape. They are small picklable objects: the network
is loaded once per worker process and kept, and a worker with a GPU uses it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def worker_device(device: str | None = None) -> str:
    """The device a worker should use: ``device`` if given, else CUDA when present."""
    if device:
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
    """The full pipeline on a block: ``mediar3d.inference.segment(block, model, **options)``.

    Args:
        model: a model name or checkpoint path (loaded once per worker), or None for
            the bundled default model.
        device: "cpu", "cuda", "cuda:1"...; default CUDA when the worker has it.
        intensity_range: (low, high) to scale intensities by before the network,
            the same for every block (percentiles of the whole volume; see
            :func:`mediar3d.distributed.global_percentiles`), so blocks agree with a
            whole-volume run. None leaves normalisation to ``segment`` per block.
        options: further keyword arguments of ``segment``.
    """

    model: str | None = None
    device: str | None = None
    intensity_range: tuple[float, float] | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def _model(self, device: str) -> Any:
        if self.model is None:
            return None
        key = (str(self.model), device)
        with _LOCK:
            if key not in _MODELS:
                from mediar3d.models import load_model

                net, _config = load_model(self.model)
                _MODELS[key] = net.to(device).eval()
            return _MODELS[key]

    def __call__(self, block: np.ndarray) -> np.ndarray:
        from mediar3d.inference import segment

        device = worker_device(self.device)
        data = np.asarray(block, np.float32)
        options = dict(self.options)
        if self.intensity_range is not None:
            lo, hi = self.intensity_range
            data = (data - lo) / max(hi - lo, 1e-12)
            options.setdefault("normalize", False)
        model = self._model(device)
        return np.asarray(segment(data, model=model if model is not None else self.model, device=device, **options))

    def fingerprint(self) -> str:
        """Stable description for the resume check."""
        return "SegmentBlockFn" + json.dumps(
            {"model": self.model, "range": self.intensity_range, "options": self.options}, sort_keys=True, default=str
        )
