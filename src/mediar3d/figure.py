"""Figures of image panels drawn with Pillow: the segment preview and the bioimage.io cover.

The base install draws these without matplotlib (the ``plots`` extra, only for plots
with axes and curves): panels side by side on white, each scaled to its box, a title
above each panel and an optional figure title on top, in Pillow's default font.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage.util import img_as_ubyte

__all__ = ["panel_figure"]

#: Space around and between panels, in pixels.
MARGIN = 10
FONT_SIZE = 14
TITLE_FONT_SIZE = 16


def _title(draw: ImageDraw.ImageDraw, text: str, centre: float, top: int,
           font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> None:
    draw.text((centre - draw.textlength(text, font=font) / 2, top), text, fill="black", font=font)


def panel_figure(panels: Sequence[tuple[str, np.ndarray, float]], size: tuple[int, int], *,
                 title: str | None = None) -> Image.Image:
    """Draw image panels side by side, each with its title above, on a white RGB canvas.

    Args:
        panels: ``(title, plane, aspect)`` per panel; ``plane`` is float in [0, 1], grey (rows,
            columns) or RGB (rows, columns, 3), values outside are clipped; ``aspect`` is the
            height of one row in units of a column's width (the anisotropy for a plane with z
            as its rows, 1 otherwise). Each plane is scaled, keeping that shape, to the
            largest size its box holds: nearest neighbour when enlarged (pixels stay sharp),
            box averaging when reduced.
        size: ``(width, height)`` of the whole figure in pixels.
        title: Figure title, on top.

    Returns:
        The figure, an RGB ``PIL.Image`` of ``size``.
    """
    width, height = size
    font = ImageFont.load_default(size=FONT_SIZE)
    title_font = ImageFont.load_default(size=TITLE_FONT_SIZE)
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    top = MARGIN
    if title:
        _title(draw, title, width / 2, top, title_font)
        top += TITLE_FONT_SIZE + MARGIN
    box_width = (width - MARGIN * (len(panels) + 1)) // max(len(panels), 1)
    box_top = top + FONT_SIZE + MARGIN // 2
    box_height = height - box_top - MARGIN
    if box_width < 1 or box_height < 1:
        raise ValueError(f"a figure of {width} x {height} pixels has no room for {len(panels)} panels")
    for k, (name, plane, aspect) in enumerate(panels):
        left = MARGIN + k * (box_width + MARGIN)
        _title(draw, name, left + box_width / 2, top, font)
        pixels = img_as_ubyte(np.clip(np.asarray(plane, dtype=np.float32), 0.0, 1.0))
        rows, columns = pixels.shape[:2]
        scale = min(box_width / columns, box_height / (rows * aspect))
        shape = (max(1, round(columns * scale)), max(1, round(rows * aspect * scale)))
        method = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX
        image = Image.fromarray(pixels).convert("RGB").resize(shape, method)
        figure.paste(image, (left + (box_width - shape[0]) // 2, box_top + (box_height - shape[1]) // 2))
    return figure
