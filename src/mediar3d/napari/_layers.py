"""Segmentation results as napari layer data: labels, flows as an RGB image, probability.

Plain numpy (no napari import): each function returns napari "layer data tuples"
``(data, kwargs, layer_type)`` that both the widget and the reader hand to napari.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from skimage.color import hsv2rgb

from mediar3d.errors import InputError

LayerData = tuple[np.ndarray, dict[str, Any], str]


def flows_to_rgb(flows: np.ndarray) -> np.ndarray:
    """Colour a flow field for display.

    3D flows (3, Z, Y, X) ordered (dz, dy, dx) map each component to a colour channel:
    RGB = (0.5 + 0.5 * direction) * length, so the colour gives the direction and
    background (no flow) is black. 2D flows (2, Y, X) ordered (dy, dx) use the Cellpose
    colour wheel: hue = angle, value = length.

    Args:
        flows: float array (3, Z, Y, X) or (2, Y, X), unit scale (length <= ~1).

    Returns:
        uint8 array (Z, Y, X, 3) or (Y, X, 3).
    """
    flows = np.asarray(flows, dtype=np.float32)
    if flows.ndim < 3 or flows.shape[0] not in (2, 3) or flows.ndim - 1 != flows.shape[0]:
        raise InputError(f"flows of shape {flows.shape}: expected (3, Z, Y, X) (dz, dy, dx) or (2, Y, X) (dy, dx)")
    length = np.sqrt((flows ** 2).sum(axis=0))
    if flows.shape[0] == 3:
        direction = flows / np.maximum(length, 1e-6)
        rgb = (0.5 + 0.5 * np.moveaxis(direction, 0, -1)) * np.clip(length, 0.0, 1.0)[..., None]
    else:
        hue = (np.arctan2(flows[0], flows[1]) + np.pi) / (2.0 * np.pi)
        hsv = np.stack([hue, np.ones_like(hue), np.clip(length, 0.0, 1.0)], axis=-1)
        rgb = hsv2rgb(hsv)
    return np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def labels_layer(labels: np.ndarray, name: str, *, scale: Sequence[float] | None = None,
                 translate: Sequence[float] | None = None, metadata: dict[str, Any] | None = None) -> LayerData:
    """Layer data tuple of a Labels layer for integer labels (z, y, x) or (y, x)."""
    kwargs: dict[str, Any] = {"name": name, "metadata": dict(metadata or {})}
    if scale is not None:
        kwargs["scale"] = tuple(float(s) for s in scale)
    if translate is not None:
        kwargs["translate"] = tuple(float(t) for t in translate)
    return np.asarray(labels), kwargs, "labels"


def flows_layer(flows: np.ndarray, name: str, *, scale: Sequence[float] | None = None,
                translate: Sequence[float] | None = None) -> LayerData:
    """Layer data tuple of an RGB Image layer showing flows (3, Z, Y, X) or (2, Y, X)."""
    kwargs: dict[str, Any] = {"name": name, "rgb": True, "opacity": 0.7, "visible": True}
    if scale is not None:
        kwargs["scale"] = tuple(float(s) for s in scale)
    if translate is not None:
        kwargs["translate"] = tuple(float(t) for t in translate)
    return flows_to_rgb(flows), kwargs, "image"


def probability_layer(probability: np.ndarray, name: str, *, scale: Sequence[float] | None = None,
                      translate: Sequence[float] | None = None) -> LayerData:
    """Layer data tuple of an Image layer of a cell probability in [0, 1], (z, y, x) or (y, x)."""
    kwargs: dict[str, Any] = {"name": name, "colormap": "magma", "contrast_limits": (0.0, 1.0),
                              "blending": "additive", "opacity": 0.6}
    if scale is not None:
        kwargs["scale"] = tuple(float(s) for s in scale)
    if translate is not None:
        kwargs["translate"] = tuple(float(t) for t in translate)
    return np.asarray(probability, dtype=np.float32), kwargs, "image"
