"""Output heads: MEDIAR's two separate heads for flows and cell probability."""

from __future__ import annotations

import torch
from torch import nn


class DeepSegmentationHead(nn.Sequential):
    """MEDIAR's head: conv3x3 (C -> C/2), Mish, BatchNorm, conv3x3 (C/2 -> out).

    Maps (B, C, H, W) to (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        hidden = max(1, in_channels // 2)
        super().__init__(
            nn.Conv2d(in_channels, hidden, kernel_size, padding=kernel_size // 2),
            nn.Mish(),
            nn.BatchNorm2d(hidden),
            nn.Conv2d(hidden, out_channels, kernel_size, padding=kernel_size // 2),
        )


class FlowCellprobHeads(nn.Module):
    """Two heads on shared decoder features: flows (2 ch) and cell probability (1 ch).

    MEDIAR keeps them apart because regressing flows (MSE) and classifying pixels (BCE)
    interfere in one shared output layer. Maps (B, C, H, W) to (B, 3, H, W) with
    channels (dy, dx, cellprob logit).
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.flow_head = DeepSegmentationHead(in_channels, 2)
        self.cellprob_head = DeepSegmentationHead(in_channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, C, H, W) -> (B, 3, H, W): dy, dx, cellprob logit."""
        return torch.cat([self.flow_head(features), self.cellprob_head(features)], dim=1)
