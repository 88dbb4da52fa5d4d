"""Preview figure of a segmentation: orthogonal mid slices and a max projection with outlines.

Drawn with Pillow (`mediar3d.figure`), so `segment --preview` needs no matplotlib.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from skimage.segmentation import find_boundaries

from mediar3d.data.normalize import normalize_percentile


def _panels(image: np.ndarray, labels: np.ndarray,
            anisotropy: float) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(title, image plane, label plane, aspect: row height / column width) for each panel of the preview."""
    if image.ndim == 2:
        return [("image (y, x)", image, labels, 1.0)]
    z, y, x = (n // 2 for n in image.shape)
    return [
        (f"xy: z = {z}", image[z], labels[z], 1.0),
        (f"xz: y = {y}", image[:, y], labels[:, y], anisotropy),
        (f"yz: x = {x}", image[:, :, x], labels[:, :, x], anisotropy),
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
    from mediar3d.figure import panel_figure
    from mediar3d.io import atomic_output

    shown = normalize_percentile(np.asarray(image), (0.5, 99.8))
    labels = np.asarray(labels)
    rng = np.random.default_rng(0)
    colours = rng.uniform(0.3, 1.0, size=(int(labels.max(initial=0)) + 1, 3))
    panels = []
    for name, plane, lab, aspect in _panels(shown, labels, anisotropy):
        rgb = np.repeat(plane[..., None], 3, axis=-1)
        edges = find_boundaries(lab, mode="inner") & (lab > 0)
        rgb[edges] = colours[lab[edges]]
        panels.append((name, rgb, aspect))
    figure = panel_figure(panels, (420 * len(panels), 460), title=title or f"{int(labels.max(initial=0))} objects")
    final = Path(path)
    with atomic_output(final) as temp:
        figure.save(temp, format="PNG")
    return final
