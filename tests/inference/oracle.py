"""Test helpers: a non-learned 'network' that derives flows from a bright-blob image, and blob volumes."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


class OracleNet(torch.nn.Module):
    """(B, 1, H, W) -> (B, 3, H, W): flows of the connected bright regions of each image.

    Thresholds each image at 0.5, labels 2D connected components and returns
    5 * mediar3d.flows.masks_to_flows (dy, dx) and a +-4 logit: what a perfect 2D network
    would output for well-separated blobs, in any slice orientation.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mediar3d.flows import masks_to_flows

        out = []
        for image in x[:, 0].cpu().numpy():
            labels, n = ndimage.label(image > 0.5)
            flows = masks_to_flows(labels) if n else np.zeros((2,) + image.shape, np.float32)
            logit = np.where(labels > 0, 4.0, -4.0).astype(np.float32)
            out.append(np.concatenate([5.0 * flows, logit[None]]))
        return torch.from_numpy(np.stack(out)).to(x.device)


def blob_volume(shape=(40, 64, 64), radius=5.5, spacing=16, seed=0):
    """Well-separated balls on a jittered grid: (image float32 in ~[0, 1], labels int32), isotropic."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    grid = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    label = 0
    for cz in range(spacing // 2, shape[0] - 2, spacing):
        for cy in range(spacing // 2, shape[1] - 2, spacing):
            for cx in range(spacing // 2, shape[2] - 2, spacing):
                centre = np.array([cz, cy, cx]) + rng.uniform(-1.0, 1.0, 3)
                r = radius * rng.uniform(0.85, 1.05)
                inside = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= r * r
                label += 1
                labels[inside & (labels == 0)] = label
    image = (labels > 0).astype(np.float32) * 0.8 + 0.1 + rng.normal(0, 0.02, shape).astype(np.float32)
    return image, labels
