"""Ensembles of checkpoints and flip test-time augmentation, as drop-in networks.

Both are `torch.nn.Module` wrappers with the interface of the wrapped networks, so
`mediar3d.inference.segment(volume, model=...)` takes them as they are:

- :class:`EnsembleModel` averages the outputs (flows on the x5 scale and cell-probability
  logits) of several networks before post-processing.
- :class:`FlipTTA` averages a network over all flips of its spatial axes, flipping each
  prediction back and negating the flow component of every flipped axis. It works for
  2D slice networks (B, C, H, W) -> (B, 3, H, W) = (dy, dx, logit), 4 flips, and for
  volumetric networks (B, C, Z, Y, X) -> (B, 4, Z, Y, X) = (dz, dy, dx, logit), 8 flips.

In the orthogonal-slice 3D pipeline (Algorithm 1) a flip of the volume along z, y or x is
a flip of the rows or columns of the slices of the other two orientations, so averaging
the eight 3D flips of a volume amounts to averaging the four 2D flips of every slice (up
to where tiles fall): use ``segment(..., tta=True)`` or ``FlipTTA`` on the 2D network; 3D
flips add information only for volumetric networks.

:func:`load_ensemble` builds an `InferenceModel` from several checkpoints (shared
normalisation and training diameter required; thresholds averaged); ``segment(volume,
model=[a, b])`` and ``mediar3d segment --model A --model B`` use it.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mediar3d.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)

__all__ = ["EnsembleModel", "FlipTTA", "flip_average", "load_ensemble", "unflip"]


def _spatial_dims(net: nn.Module) -> int:
    return int(getattr(net, "spatial_dims", 2))


def _in_channels(net: nn.Module) -> int:
    value = getattr(net, "in_channels", None)
    if value:
        return int(value)
    conv = (nn.Conv2d, nn.Conv3d)
    return next((int(m.in_channels) for m in net.modules() if isinstance(m, conv)), 1)


def unflip(pred: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Undo a flip of the input on a prediction (B, n_flows + 1, *spatial).

    Flips `pred` back along `dims` (tensor dims, >= 2) and negates the flow channel of
    each flipped spatial axis (dim d -> flow channel d - 2: dy, dx in 2D; dz, dy, dx in 3D).
    """
    dims = tuple(int(d) for d in dims)
    if not dims:
        return pred
    out = torch.flip(pred, dims=dims)
    sign = torch.ones(pred.shape[1], dtype=out.dtype, device=out.device)
    for dim in dims:
        sign[dim - 2] = -1.0
    return out * sign.view((1, -1) + (1,) * (pred.ndim - 2))


def flip_average(net: nn.Module | object, batch: torch.Tensor) -> torch.Tensor:
    """Mean of ``net`` over every flip of the spatial axes of ``batch`` (B, C, *spatial), flips undone."""
    spatial = tuple(range(2, batch.ndim))
    total = None
    count = 0
    for k in range(len(spatial) + 1):
        for dims in itertools.combinations(spatial, k):
            flipped = torch.flip(batch, dims=dims) if dims else batch
            pred = unflip(net(flipped).float(), dims)
            total = pred if total is None else total + pred
            count += 1
    return total / count


class FlipTTA(nn.Module):
    """A network averaged over all flips of its input's spatial axes (flow signs corrected).

    Args:
        net: 2D (B, C, H, W) -> (B, 3, H, W) or volumetric (B, C, Z, Y, X) -> (B, 4, Z, Y, X)
            network; a volumetric one carries ``spatial_dims = 3``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.spatial_dims = _spatial_dims(net)
        self.in_channels = _in_channels(net)
        self.stride = int(getattr(net, "stride", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Averaged prediction, same shape as the wrapped network's."""
        return flip_average(self.net, x)


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
        self._member_channels = [_in_channels(m) for m in models]
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


#: Largest relative spread of the members' training diameters an ensemble accepts.
DIAMETER_TOLERANCE = 0.05


def load_ensemble(paths: Sequence[str | os.PathLike], *, tta: bool = False, weights: Sequence[float] | None = None):
    """Load checkpoints into one `mediar3d.inference.loader.InferenceModel` for `segment`.

    The members must see the same input: the same normalisation percentiles and the same
    training object diameter (within 5 %; all unknown is allowed), since `segment` scales
    the volume once for all of them.

    Args:
        paths: Checkpoint files (or bundled model names) written by `save_checkpoint`.
        tta: Wrap every member in :class:`FlipTTA`.
        weights: Optional weight per checkpoint.

    Returns:
        An InferenceModel whose network is an :class:`EnsembleModel`; its training diameter
        is the members' mean, its thresholds (and ``min_size`` when every member has one)
        the members' mean.

    Raises:
        ModelError: unreadable checkpoint; members that normalise their input differently or
        were trained at different object diameters.
    """
    from mediar3d.inference.loader import InferenceModel, resolve_model

    members = [resolve_model(p) for p in paths]
    if not members:
        raise ModelError("an ensemble needs at least one model")
    percentiles = {tuple(m.percentiles) for m in members}
    if len(percentiles) != 1:
        listed = ", ".join(f"{m.name} {list(m.percentiles)}" for m in members)
        raise ModelError(f"ensemble members normalise with different percentiles ({listed}); "
                         "ensemble models trained with the same normalisation")
    diameters = [m.diameter for m in members]
    known = [d for d in diameters if d is not None]
    if known and (len(known) != len(diameters) or max(known) > (1.0 + DIAMETER_TOLERANCE) * min(known)):
        listed = ", ".join(f"{m.name} {m.diameter if m.diameter is None else round(m.diameter, 2)}" for m in members)
        raise ModelError(f"ensemble members were trained at different object diameters in px ({listed}); "
                         "segment scales the volume once for all members, so ensemble models trained on "
                         "objects of the same size")
    diameter = float(np.mean(known)) if known else None
    sizes = [m.min_size for m in members]
    min_size = None if any(s is None for s in sizes) else float(np.mean(sizes))
    nets = [FlipTTA(m.net) if tta else m.net for m in members]
    net = EnsembleModel(nets, weights)
    return InferenceModel(
        net=net.eval(), name="+".join(m.name for m in members), in_channels=net.in_channels, diameter=diameter,
        percentiles=members[0].percentiles,
        cellprob_threshold=float(np.mean([m.cellprob_threshold for m in members])),
        flow_threshold=float(np.mean([m.flow_threshold for m in members])),
        divisor=math.lcm(*(int(m.divisor) for m in members)), min_size=min_size,
    )
