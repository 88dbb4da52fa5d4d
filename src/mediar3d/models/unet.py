"""`unet-small`: a compact U-Net that runs fast on a laptop CPU (the default model)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mediar3d.errors import ModelError
from mediar3d.models.base import OUT_CHANNELS, FlowSegmentationNet
from mediar3d.models.registry import register_model


class Conv2dReLU(nn.Sequential):
    """conv (no bias) -> BatchNorm -> ReLU; maps (B, C_in, H, W) to (B, C_out, H', W').

    The same layers, order and parameter names (``0.weight``, ``1.running_mean``, ...) as
    segmentation_models_pytorch's `Conv2dReLU`, so checkpoints written with either load.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 stride: int = 1) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class SmallUNet(FlowSegmentationNet):
    """Compact U-Net working at half resolution.

    A stride-2 stem, then one level per entry of `channels` (two conv-BN-ReLU each, every
    level after the first halving the resolution: strides 2 ... 32, receptive field
    > 200 px). The decoder reduces channels with a 1x1 conv before a bilinear x2
    upsampling, concatenates the skip and applies two conv-BN-ReLU. A 1x1 head predicts
    (dy, dx, cellprob) at stride 2, upsampled bilinearly to the input size (a 1x1 conv
    commutes with bilinear interpolation, so this equals a full-resolution head at a
    quarter of the cost). Runs in channels-last memory layout, which oneDNN convolutions
    on CPU prefer. Maps (B, in_channels, H, W) to (B, 3, H, W).
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 128, 256)) -> None:
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2 or min(channels) < 1:
            raise ModelError(f"channels={channels} must list at least two positive widths")
        super().__init__(in_channels, stride=2 ** len(channels))
        self.stem = Conv2dReLU(in_channels, channels[0], kernel_size=3, padding=1, stride=2)
        self.encoder = nn.ModuleList()
        previous = channels[0]
        for level, width in enumerate(channels):
            self.encoder.append(nn.Sequential(
                Conv2dReLU(previous, width, kernel_size=3, padding=1, stride=1 if level == 0 else 2),
                Conv2dReLU(width, width, kernel_size=3, padding=1)))
            previous = width
        self.reduce = nn.ModuleList(Conv2dReLU(channels[i + 1], channels[i], kernel_size=1)
                                    for i in range(len(channels) - 1))
        self.decoder = nn.ModuleList(nn.Sequential(
            Conv2dReLU(2 * channels[i], channels[i], kernel_size=3, padding=1),
            Conv2dReLU(channels[i], channels[i], kernel_size=3, padding=1)) for i in range(len(channels) - 1))
        self.head = nn.Conv2d(channels[0], OUT_CHANNELS, kernel_size=1)
        self.to(memory_format=torch.channels_last)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) with H, W multiples of the stride -> (B, 3, H, W)."""
        size = x.shape[-2:]
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        for i in reversed(range(len(self.decoder))):
            x = F.interpolate(self.reduce[i](x), scale_factor=2.0, mode="bilinear", align_corners=False)
            x = self.decoder[i](torch.cat([x, skips[i]], dim=1))
        y = F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)
        return y.contiguous()


@register_model("unet-small", description="compact U-Net (~1.8 M parameters), fast on CPU; the default model")
def unet_small(in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 128, 256)) -> SmallUNet:
    """Small fast U-Net, the CPU default (`DEFAULT_MODEL`).

    Args:
        in_channels: Input channels (1 for grey microscopy).
        channels: Feature widths per level (strides 2, 4, ..., 2**len(channels)).
    """
    return SmallUNet(in_channels, channels)
