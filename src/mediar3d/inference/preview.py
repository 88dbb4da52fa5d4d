"""Preview figure of a segmentation: orthogonal mid slices and a max projection with outlines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from skimage.segmentation import find_boundaries

from mediar3d.data.normalize import normalize_percentile


def _panels(image: np.ndarray, labels: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(title, image plane, label plane, aspect) for each panel of the preview."""
    if image.ndim == 2:
        return [("image (y, x)", image, labels, 1.0)]
    z, y, x = (n // 2 for n in image.shape)
    return [
        (f"xy: z = {z}", image[z], labels[z], 1.0),
        (f"xz: y = {y}", image[:, y], labels[:, y], 1.0),
        (f"yz: x = {x}", image[:, :, x], labels[:, :, x], 1.0),
        ("max projection over z", image.max(axis=0), labels.max(axis=0), 1.0),
    ]


def render_preview(path: str | os.PathLike, image: np.ndarray, labels: np.ndarray, *,
                   anisotropy: float = 1.0, title: str | None = None) -> Path:
    """Save a PNG with mid slices (xy, xz, yz) and the z max projection, label outlines in colour.

    Args:
        path: Output PNG path (written atomically).
        image: Volume (z, y, x) or image (y, x).
        labels: Labels of the same shape.
        anisotropy: z / xy voxel size, used as the aspect ratio of the xz and yz panels.
        title: Figure title.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mediar3d.io import atomic_output

    shown = normalize_percentile(np.asarray(image), (0.5, 99.8))
    panels = _panels(shown, np.asarray(labels))
    fig = Figure(figsize=(4.2 * len(panels), 4.6), dpi=100)
    FigureCanvasAgg(fig)
    rng = np.random.default_rng(0)
    colours = rng.uniform(0.3, 1.0, size=(int(labels.max(initial=0)) + 1, 3))
    for k, (name, plane, lab, _) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        rgb = np.repeat(plane[..., None], 3, axis=-1)
        edges = find_boundaries(lab, mode="inner") & (lab > 0)
        rgb[edges] = colours[lab[edges]]
        aspect = anisotropy if (image.ndim == 3 and k in (1, 2)) else 1.0
        ax.imshow(rgb, interpolation="nearest", aspect=aspect)
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    fig.suptitle(title or f"{int(labels.max(initial=0))} objects", fontsize=11)
    fig.tight_layout()
    final = Path(path)
    with atomic_output(final) as temp:
        with open(temp, "wb") as handle:
            fig.savefig(handle, format="png")
    return final
