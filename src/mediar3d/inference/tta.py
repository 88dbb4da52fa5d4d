"""Flip test-time augmentation for flow networks, 2D and volumetric: the one implementation.

A network maps (B, C, *spatial) -> (B, n + 1, *spatial) with the n flow components of the
spatial axes in order ((dy, dx) in 2D, (dz, dy, dx) for a volumetric network) and the
cell-probability logit last. Flipping the input along a spatial axis mirrors the image, so
the prediction is flipped back and that axis' flow component negated (a flow pointing
down in the mirrored image points up in the original). Every combination of flips is
averaged: 4 for 2D networks, 8 for volumetric ones.

In the orthogonal-slice 3D pipeline (Algorithm 1) a flip of the volume along z, y or x is
a flip of the rows or columns of the slices of the other two orientations, so averaging
the eight 3D flips of a volume amounts to averaging the four 2D flips of every slice (up
to where tiles fall); 3D flips add information only for volumetric networks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

NetFn = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["FlipTTA", "flip_average", "in_channels_of", "unflip", "with_flip_tta"]


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


def flip_average(net: NetFn | nn.Module, batch: torch.Tensor) -> torch.Tensor:
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


def with_flip_tta(net_fn: NetFn) -> NetFn:
    """Wrap a network function so that each call averages over all flips of its input."""

    def wrapped(batch: torch.Tensor) -> torch.Tensor:
        return flip_average(net_fn, batch)

    return wrapped


def in_channels_of(net: nn.Module) -> int:
    """Input channels of a network: its ``in_channels`` attribute, else its first convolution's, else 1."""
    value = getattr(net, "in_channels", None)
    if value:
        return int(value)
    conv = (nn.Conv2d, nn.Conv3d)
    return next((int(m.in_channels) for m in net.modules() if isinstance(m, conv)), 1)


class FlipTTA(nn.Module):
    """A network averaged over all flips of its input's spatial axes (flow signs corrected).

    Args:
        net: 2D (B, C, H, W) -> (B, 3, H, W) or volumetric (B, C, Z, Y, X) -> (B, 4, Z, Y, X)
            network; a volumetric one carries ``spatial_dims = 3``.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.spatial_dims = int(getattr(net, "spatial_dims", 2))
        self.in_channels = in_channels_of(net)
        self.stride = int(getattr(net, "stride", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Averaged prediction, same shape as the wrapped network's."""
        return flip_average(self.net, x)
