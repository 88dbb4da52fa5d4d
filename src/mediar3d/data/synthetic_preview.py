"""PNG montage of a few slices of a volume with label outlines, for looking at synthetic data.

Drawn with matplotlib (the ``plots`` extra).
"""

from __future__ import annotations

import os

import numpy as np

from mediar3d.optional import require

__all__ = ["save_montage"]


def _display(image: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((image - low) / max(high - low, 1e-12), 0, 1)


def save_montage(path: str | os.PathLike, image: np.ndarray, labels: np.ndarray | None = None, *,
                 n_slices: int = 4, anisotropy: float = 1.0, title: str | None = None) -> None:
    """Write a PNG with ``n_slices`` z-slices and one x-z section, with label outlines below.

    Args:
        path: output PNG.
        image: (z, y, x) or (y, x) image.
        labels: optional labels of the same shape; drawn as outlines in a second row.
        n_slices: z-slices to show (evenly spaced).
        anisotropy: z step in x/y pixels (stretches the x-z section).
        title: figure title.

    Raises:
        ConfigError: matplotlib (the ``plots`` extra) is not installed.
    """
    from skimage.segmentation import find_boundaries

    figure = require("matplotlib.figure", "plots", "the montage of a synthetic volume")

    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = image[None]
        labels = None if labels is None else np.asarray(labels)[None]
        n_slices = 1
    low, high = np.percentile(image, (0.5, 99.8))
    zs = np.linspace(0, image.shape[0] - 1, n_slices + 2)[1:-1].round().astype(int) if image.shape[0] > 1 else [0]
    panels = [(f"z={z}", image[z], None if labels is None else labels[z], 1.0) for z in zs]
    if image.shape[0] > 1:
        y = image.shape[1] // 2
        panels.append((f"x-z at y={y}", image[:, y], None if labels is None else labels[:, y], anisotropy))
    rows = 1 if labels is None else 2
    fig = figure.Figure(figsize=(4 * len(panels), 4 * rows))
    axes = fig.subplots(rows, len(panels), squeeze=False)
    for col, (name, img, lab, aspect) in enumerate(panels):
        axes[0, col].imshow(_display(img, low, high), cmap="gray", aspect=aspect, interpolation="nearest")
        axes[0, col].set_title(name)
        if lab is not None:
            rgb = np.repeat(_display(img, low, high)[..., None], 3, axis=2)
            rgb[find_boundaries(lab, mode="inner")] = (1.0, 0.2, 0.2)
            axes[1, col].imshow(rgb, aspect=aspect, interpolation="nearest")
    for ax in axes.ravel():
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
