"""Shared test helpers: synthetic objects, the oracle networks (no training), hiding matplotlib.

The oracle networks return what a perfect network would for images of well-separated
bright objects: 5 x the flows of the bright connected regions (threshold 0.5) and a +-4
cell-probability logit. `tests/conftest.py` puts this folder on the import path
(``from helpers import OracleNet2D``) and serves some of them as fixtures.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from scipy import ndimage

#: Modules that work without matplotlib (figures drawn with Pillow); `hide_matplotlib` imports them afresh.
WITHOUT_MATPLOTLIB = ("mediar3d.figure", "mediar3d.inference.preview", "mediar3d.models.bioimageio",
                      "mediar3d.napari._layers")


def hide_matplotlib(monkeypatch) -> None:
    """Make matplotlib unimportable, as in a base install (undone with `monkeypatch`).

    Its modules already imported are hidden too (``sys.modules[name] = None`` makes an
    import fail), and the modules of `WITHOUT_MATPLOTLIB` are removed from
    ``sys.modules``, so their next import runs again and a module-level import of
    matplotlib there fails as well (import them with ``importlib.import_module``).
    """
    for name in [n for n in sys.modules if n.split(".")[0] in ("matplotlib", "mpl_toolkits")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for name in WITHOUT_MATPLOTLIB:
        if name in sys.modules:
            parent, _, child = name.rpartition(".")
            # the fresh import rebinds the parent package's attribute: undone too, so that later
            # `import a.b; a.b.f` and `from a.b import f` see the same module again
            monkeypatch.setattr(sys.modules[parent], child, sys.modules[name])
            monkeypatch.delitem(sys.modules, name)


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


def signed_distance(labels: np.ndarray) -> np.ndarray:
    """float32 distance to the object border: > 0 inside objects, < 0 outside."""
    inside = ndimage.distance_transform_edt(labels > 0)
    outside = ndimage.distance_transform_edt(labels == 0)
    return (inside - outside).astype(np.float32)


class OracleNet2D(torch.nn.Module):
    """(B, 1, H, W) -> (B, 3, H, W): 5 x the flows of the bright connected regions and a +-4 logit.

    What a perfect 2D network would output for well-separated blobs, in any slice orientation.
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
