"""Flip test-time augmentation for 2D flow networks.

A network maps (B, C, H, W) -> (B, 3, H, W) with channels (dy, dx, cellprob logit). Flipping
the input along H mirrors the image, so the prediction is flipped back and its dy channel
negated (a flow pointing down in the mirrored image points up in the original); likewise
dx for a flip along W. The four flips (none, H, W, both) are averaged.
"""

from __future__ import annotations

from typing import Callable

import torch

NetFn = Callable[[torch.Tensor], torch.Tensor]

#: Flip combinations as tensor dims of a (B, C, H, W) batch.
_FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (2, 3))


def unflip_prediction(pred: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Undo a flip of the input on a prediction (B, 3, H, W) = (dy, dx, logit).

    Flips `pred` back along `dims` and negates the flow channel of each flipped axis
    (dim 2 -> dy, channel 0; dim 3 -> dx, channel 1).
    """
    if not dims:
        return pred
    out = torch.flip(pred, dims=dims)
    sign = torch.ones(pred.shape[1], dtype=out.dtype, device=out.device)
    for dim in dims:
        sign[dim - 2] = -1.0
    return out * sign.view(1, -1, 1, 1)


def predict_flip_tta(net_fn: NetFn, batch: torch.Tensor) -> torch.Tensor:
    """Average `net_fn` over the four flips of `batch` (B, C, H, W); returns (B, 3, H, W)."""
    total = None
    for dims in _FLIPS:
        flipped = torch.flip(batch, dims=dims) if dims else batch
        pred = unflip_prediction(net_fn(flipped).float(), dims)
        total = pred if total is None else total + pred
    return total / len(_FLIPS)


def with_flip_tta(net_fn: NetFn) -> NetFn:
    """Wrap a network function so that each call averages over the four flips."""

    def wrapped(batch: torch.Tensor) -> torch.Tensor:
        return predict_flip_tta(net_fn, batch)

    return wrapped
