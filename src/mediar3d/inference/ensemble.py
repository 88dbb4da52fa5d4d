"""Ensembles of networks as one drop-in network.

:class:`EnsembleModel` is a `torch.nn.Module` with the interface of the wrapped networks:
it averages their outputs (flows on the x5 scale and cell-probability logits) before
post-processing, so `mediar3d.inference.segment(volume, model=...)` takes it as it is.
:func:`mediar3d.inference.loader.load_ensemble` builds one from several checkpoints;
``segment(volume, model=[a, b])`` and ``mediar3d segment --model A --model B`` use it.
Flip test-time augmentation (:class:`FlipTTA`) lives in :mod:`mediar3d.inference.tta`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mediar3d.errors import ConfigError, ModelError
from mediar3d.inference.tta import FlipTTA, flip_average, in_channels_of, unflip

__all__ = ["EnsembleModel", "FlipTTA", "flip_average", "unflip"]


def _spatial_dims(net: nn.Module) -> int:
    return int(getattr(net, "spatial_dims", 2))


class EnsembleModel(nn.Module):
    """Mean of the outputs of several networks (flows and logits averaged before post-processing).

    Args:
        models: Networks with the same output layout and the same ``spatial_dims``.
        weights: Optional non-negative weight per network (normalised to sum 1).

    A one-channel input is repeated to the channels each member expects.
    """

    def __init__(self, models: Sequence[nn.Module], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        models = list(models)
        if not models:
            raise ModelError("an ensemble needs at least one network")
        dims = {_spatial_dims(m) for m in models}
        if len(dims) != 1:
            raise ModelError(f"cannot ensemble 2D and volumetric networks (spatial_dims {sorted(dims)})")
        if weights is None:
            weights = [1.0] * len(models)
        w = np.asarray(list(weights), dtype=np.float64)
        if w.shape != (len(models),) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(f"ensemble weights {list(weights)}: give one non-negative number per model, not all 0")
        self.models = nn.ModuleList(models)
        self.weights = [float(v) for v in w / w.sum()]
        self.spatial_dims = dims.pop()
        self._member_channels = [in_channels_of(m) for m in models]
        self.in_channels = max(self._member_channels)
        self.stride = math.lcm(*(int(getattr(m, "stride", 1)) for m in models))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weighted mean of the members' outputs (float32)."""
        total = None
        for net, weight, channels in zip(self.models, self.weights, self._member_channels):
            inp = x
            if x.shape[1] != channels:
                if x.shape[1] not in (1, self.in_channels):
                    raise ModelError(f"input has {x.shape[1]} channels; ensemble members expect {channels}")
                inp = x[:, :1].expand(-1, channels, *x.shape[2:])
            out = net(inp).float() * weight
            total = out if total is None else total + out
        return total
