"""The trainable 3D half of the feature network: a convolutional decoder with skips and heads.

The decoder takes a pyramid of 3D feature volumes (B, C_l, Z, Y / s_l, X / s_l), made by
stacking 2D slice features, whose strides s_l grow in y and x only: z keeps its full
resolution at every level. Starting from the deepest level it repeatedly upsamples in
y and x to the next level's grid, concatenates that level's features (a skip) and applies
a block of two (conv3d 3x3x3, norm, activation). Two separate heads (MEDIAR style) map the
full-resolution features to the flows (dz, dy, dx) and to the cell-probability logit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mediar3d.errors import ModelError

#: Normalisation layers the decoder can use. "batch" (the default) is position independent
#: at inference, so sliding-window tiles agree with a whole-volume pass; "instance" and
#: "group" normalise each sample (each tile) on its own statistics.
NORMS = ("batch", "instance", "group")
ACTIVATIONS = {"mish": nn.Mish, "relu": nn.ReLU, "leakyrelu": nn.LeakyReLU, "gelu": nn.GELU}


def norm3d(kind: str, channels: int) -> nn.Module:
    """A 3D normalisation layer of type `kind` (see NORMS) for `channels` channels."""
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    raise ModelError(f"norm={kind!r} is unknown; choose one of {', '.join(NORMS)}")


def activation(kind: str) -> nn.Module:
    """A fresh activation module of type `kind` (mish, relu, leakyrelu, gelu)."""
    try:
        return ACTIVATIONS[kind]()
    except KeyError:
        raise ModelError(f"activation={kind!r} is unknown; choose one of {', '.join(ACTIVATIONS)}") from None


class ConvBlock3d(nn.Sequential):
    """Two times (Conv3d 3x3x3 without bias, norm, activation): (B, C_in, Z, Y, X) -> (B, C_out, Z, Y, X)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch", act: str = "mish") -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers += [nn.Conv3d(c_in, out_channels, 3, padding=1, bias=False), norm3d(norm, out_channels),
                       activation(act)]
        super().__init__(*layers)


class Head3d(nn.Sequential):
    """MEDIAR-style head in 3D: conv3d 3x3x3 (C -> C/2), activation, norm, conv3d 1x1x1 (C/2 -> out)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch", act: str = "mish") -> None:
        hidden = max(1, in_channels // 2)
        super().__init__(
            nn.Conv3d(in_channels, hidden, 3, padding=1),
            activation(act),
            norm3d(norm, hidden),
            nn.Conv3d(hidden, out_channels, 1),
        )


class Decoder3d(nn.Module):
    """3D U-Net style decoder over a pyramid of slice-feature volumes.

    A level of 0 channels has no features (a stride the encoder does not give, e.g. below
    the single stride-16 embedding of the thesis' variant): the decoder upsamples by 2 in y
    and x there and applies its block without a skip.

    Args:
        level_channels: Channels of each input level, finest (stride 1) first; 0 = no features.
        decoder_channels: Output channels of the decoder block of each level, deepest
            first; one entry per level.
        norm: Normalisation layer (see NORMS).
        act: Activation (see ACTIVATIONS).
    """

    def __init__(self, level_channels: Sequence[int], decoder_channels: Sequence[int], norm: str = "batch",
                 act: str = "mish") -> None:
        super().__init__()
        level_channels = [int(c) for c in level_channels]
        decoder_channels = [int(c) for c in decoder_channels]
        if len(decoder_channels) != len(level_channels):
            raise ModelError(f"decoder_channels={decoder_channels} needs one entry per encoder level "
                             f"({len(level_channels)} levels with channels {level_channels}, deepest first)")
        if any(c < 1 for c in decoder_channels):
            raise ModelError(f"decoder_channels={decoder_channels} must all be positive")
        if level_channels[-1] < 1:
            raise ModelError(f"the deepest level needs features, got level channels {level_channels}")
        deep_first = level_channels[::-1]
        blocks = [ConvBlock3d(deep_first[0], decoder_channels[0], norm, act)]
        for i in range(1, len(deep_first)):
            blocks.append(ConvBlock3d(decoder_channels[i - 1] + deep_first[i], decoder_channels[i], norm, act))
        self.blocks = nn.ModuleList(blocks)
        self.flow_head = Head3d(decoder_channels[-1], 3, norm, act)
        self.cellprob_head = Head3d(decoder_channels[-1], 1, norm, act)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_uniform_(module.weight, a=0.0, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """Decode a feature pyramid.

        Args:
            levels: Tensors (B, C_l, Z, Y_l, X_l), finest first; level 0 is at full
                resolution (Y_0, X_0), deeper levels are coarser in y and x only. None
                for a level of 0 channels (twice the resolution of the next deeper one).

        Returns:
            Tensor (B, 4, Z, Y_0, X_0): dz, dy, dx flows and the cell-probability logit.
        """
        deep_first = list(levels)[::-1]
        x = self.blocks[0](deep_first[0])
        for block, skip in zip(self.blocks[1:], deep_first[1:]):
            if skip is None:
                x = block(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="trilinear", align_corners=False))
                continue
            if x.shape[-2:] != skip.shape[-2:]:
                x = F.interpolate(x, size=tuple(skip.shape[-3:]), mode="trilinear", align_corners=False)
            x = block(torch.cat([x, skip.to(x.dtype)], dim=1))
        return torch.cat([self.flow_head(x), self.cellprob_head(x)], dim=1)
