"""The segment preview PNG is drawn without matplotlib: panels, label colours, image brightness."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from PIL import Image


def _two_objects() -> tuple[np.ndarray, np.ndarray]:
    """A volume (z, y, x) with a dim object (label 1) on the left and a bright one (label 2) on the right."""
    labels = np.zeros((8, 40, 40), np.uint16)
    labels[2:6, 10:30, 4:14] = 1
    labels[2:6, 10:30, 26:36] = 2
    image = np.choose(labels, [0.0, 100.0, 200.0]).astype(np.float32)
    return image, labels


def _runs(row: np.ndarray) -> list[tuple[int, int, int]]:
    """The colours along a row of RGB pixels, each run of equal pixels once, in order."""
    keep = np.r_[True, np.any(row[1:] != row[:-1], axis=1)]
    return [tuple(int(v) for v in pixel) for pixel in row[keep]]


def test_preview_is_drawn_without_matplotlib(no_matplotlib, tmp_path):
    preview = importlib.import_module("mediar3d.inference.preview")  # imported afresh, matplotlib hidden
    with pytest.raises(ImportError):
        import matplotlib  # noqa: F401
    image, labels = _two_objects()
    path = preview.render_preview(tmp_path / "sub" / "p.png", image, labels, anisotropy=2.0, title="two objects")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        pixels = np.asarray(png)
    height, width = pixels.shape[:2]
    assert width > 3 * height  # four panels side by side
    assert (pixels[:8] == 255).all() and (pixels[:, :8] == 255).all()  # white margin

    # the xy panel (the leftmost quarter), across the middle of both objects
    runs = _runs(pixels[height // 2, : width // 4])
    coloured = [c for c in runs if len(set(c)) > 1]  # outlines; the image is grey
    assert len(set(coloured)) == 2, runs  # one colour per object
    first, last = coloured[0], coloured[-1]
    assert first != last and runs.count(first) == 2 and runs.count(last) == 2  # left and right edge of each
    inside_dim = runs[runs.index(first) + 1:len(runs) - runs[::-1].index(first) - 1]
    inside_bright = runs[runs.index(last) + 1:len(runs) - runs[::-1].index(last) - 1]
    between = runs[len(runs) - runs[::-1].index(first):runs.index(last)]
    assert inside_dim and all(110 <= c[0] <= 145 and len(set(c)) == 1 for c in inside_dim)  # 100 of 200: half
    assert inside_bright and all(c == (255, 255, 255) for c in inside_bright)
    assert between == [(0, 0, 0)]  # background between the objects is black


def test_preview_stretches_z_by_the_anisotropy(no_matplotlib, tmp_path):
    preview = importlib.import_module("mediar3d.inference.preview")
    image, labels = _two_objects()
    heights = []
    for anisotropy in (1.0, 3.0):
        with Image.open(preview.render_preview(tmp_path / f"a{anisotropy}.png", image, labels,
                                               anisotropy=anisotropy)) as png:
            pixels = np.asarray(png)
        xz = pixels[:, pixels.shape[1] // 4: pixels.shape[1] // 2]  # second panel: z down, x across
        outlined = np.flatnonzero((xz.max(axis=2) != xz.min(axis=2)).any(axis=1))  # rows with coloured pixels
        heights.append(outlined[-1] - outlined[0])
    assert heights[0] > 10 and 2.5 < heights[1] / heights[0] < 3.5
