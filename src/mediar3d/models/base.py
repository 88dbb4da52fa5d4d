"""Shared behaviour of every network: input check, padding to the stride, crop back."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mediar3d.errors import InputError, ModelError

#: Number of output channels of every network: flows (dy, dx) and the cell-probability logit.
OUT_CHANNELS = 3

#: Flows are predicted on this multiple of the unit flow field (Cellpose objective, eq. 3.6).
FLOW_SCALE = 5.0


class FlowSegmentationNet(nn.Module):
    """Base class: (B, C_in, H, W) -> (B, 3, H, W) for any H, W.

    Subclasses implement `forward_padded`, which sees H and W padded to a multiple of
    `stride` (zero padding split evenly on both sides, so the image stays centred; our
    inputs are percentile-normalised, so zero is the background level). The output is
    cropped back to the input size. Output channels: 0 = dy flow, 1 = dx flow (x5
    training scale), 2 = cell-probability logit.
    """

    def __init__(self, in_channels: int, stride: int) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ModelError(f"in_channels={in_channels!r} is invalid; use a positive integer (1 for grey images)")
        self.in_channels = in_channels
        self.stride = stride

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Network body on input whose H, W are multiples of `stride`; returns (B, 3, H, W)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict flows and cell probability.

        Args:
            x: Images, shape (B, C_in, H, W), normalised (e.g. percentiles to [0, 1]).

        Returns:
            Tensor (B, 3, H, W): dy, dx flows (x5 scale) and the cell-probability logit.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InputError(f"network input has shape {tuple(x.shape)}; "
                             f"expected (batch, {self.in_channels}, height, width)")
        height, width = x.shape[-2:]
        pad_h = (-height) % self.stride
        pad_w = (-width) % self.stride
        if pad_h or pad_w:
            top, left = pad_h // 2, pad_w // 2
            x = F.pad(x, (left, pad_w - left, top, pad_h - top))
        y = self.forward_padded(x)
        if pad_h or pad_w:
            y = y[..., top:top + height, left:left + width]
        return y


def replace_activations(module: nn.Module, old: type[nn.Module], new: type[nn.Module]) -> int:
    """Replace every submodule of type `old` by a fresh `new()` in place (MEDIAR's ReLU -> Mish).

    Returns:
        How many modules were replaced.
    """
    count = 0
    for name, child in module.named_children():
        if isinstance(child, old):
            setattr(module, name, new())
            count += 1
        else:
            count += replace_activations(child, old, new)
    return count


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of `model`."""
    return sum(p.numel() for p in model.parameters())
