"""Test helpers of the tuning tests: oracle network outputs and oracle networks (no training)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def ball_labels(shape=(20, 40, 40), spacing=13, radius=4.5, seed=0) -> np.ndarray:
    """Separated balls on a jittered grid: int32 labels (z, y, x)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    grid = np.indices(shape, dtype=np.float32)
    label = 0
    for cz in range(spacing // 2 + 1, shape[0] - 3, spacing):
        for cy in range(spacing // 2, shape[1] - 3, spacing):
            for cx in range(spacing // 2, shape[2] - 3, spacing):
                centre = np.array([cz, cy, cx]) + rng.uniform(-1, 1, 3)
                inside = ((grid - centre[:, None, None, None]) ** 2).sum(0) <= (radius * rng.uniform(0.9, 1.1)) ** 2
                label += 1
                labels[inside & (labels == 0)] = label
    return labels


def signed_distance(labels: np.ndarray) -> np.ndarray:
    """float32 distance to the object border: > 0 inside objects, < 0 outside."""
    inside = ndimage.distance_transform_edt(labels > 0)
    outside = ndimage.distance_transform_edt(labels == 0)
    return (inside - outside).astype(np.float32)


class OracleNet2D(torch.nn.Module):
    """(B, 1, H, W) -> (B, 3, H, W): 5 x the flows of the bright connected regions and a +-4 logit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mediar3d.flows import masks_to_flows

        out = []
        for image in x[:, 0].cpu().numpy():
            labels, n = ndimage.label(image > 0.5)
            flows = masks_to_flows(labels) if n else np.zeros((2,) + image.shape, np.float32)
            logit = np.where(labels > 0, 4.0, -4.0).astype(np.float32)
            out.append(np.concatenate([5.0 * flows, logit[None]]))
        return torch.from_numpy(np.stack(out))


class OracleNet3D(torch.nn.Module):
    """Volumetric (B, 1, Z, Y, X) -> (B, 4, Z, Y, X): 5 x the 3D flows of the bright regions and a logit."""

    spatial_dims = 3
    in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mediar3d.flows import masks_to_flows

        out = []
        for volume in x[:, 0].cpu().numpy():
            labels, _ = ndimage.label(volume > 0.5)
            logit = np.where(labels > 0, 4.0, -4.0).astype(np.float32)
            out.append(np.concatenate([5.0 * masks_to_flows(labels), logit[None]]))
        return torch.from_numpy(np.stack(out))
