"""'Perfect 2D' flows: what Algorithm 1 makes of ideal 2D predictions on z, y and x slices."""

from __future__ import annotations

import fastremap
import numpy as np

from mediar3d.errors import InputError
from mediar3d.flows.diffusion import diffuse_flows
from mediar3d.flows.targets import check_masks, renumber_masks

__all__ = ["ortho2d_flows", "slice_flows"]

# For slices taken along axis a: the stack (slices first) and the two volume components
# that the 2D flows (d_first, d_second) of those slices contribute to.
_VIEWS = (((0, 1, 2), (1, 2)),   # z slices (Y, X planes): dy, dx
          ((1, 0, 2), (0, 2)),   # y slices (Z, X planes): dz, dx
          ((2, 0, 1), (0, 1)))   # x slices (Z, Y planes): dz, dy


def slice_flows(stack: np.ndarray) -> np.ndarray:
    """2D Cellpose flows of every slice of a stack, each slice with its own masks.

    A label that appears in several slices is a separate 2D object in each of them.

    Args:
        stack: integer labels (S, A, B); slice s is the 2D mask ``stack[s]``.

    Returns:
        float32 array (2, S, A, B): (d_a, d_b) unit flows of each slice.
    """
    stack = np.ascontiguousarray(stack)
    n_slices = stack.shape[0]
    key = stack.astype(np.int64)
    top = int(key.max()) + 1 if key.size else 1
    # one object per (slice, label): key = s * top + label, 0 stays background
    key += (np.arange(n_slices, dtype=np.int64) * top)[:, None, None] * (key > 0)
    key, _ = fastremap.renumber(key, preserve_zero=True, in_place=True)
    return diffuse_flows(key.astype(np.int32, copy=False), 2)


def ortho2d_flows(masks: np.ndarray) -> np.ndarray:
    """3D flow field made of 2D flows on every z, y and x slice (Algorithm 1 with a perfect net).

    Each slice gets the 2D flows of its own masks; the results are summed per axis over
    the two views that see it: ``dz = dz(y slices) + dz(x slices)``,
    ``dy = dy(z slices) + dy(x slices)``, ``dx = dx(z slices) + dx(y slices)``. Components
    therefore range over [-2, 2], as the inference sum does;
    :func:`mediar3d.postprocess.compute_masks` takes such fields as they are.

    Args:
        masks: integer labels (z, y, x).

    Returns:
        float32 array (3, Z, Y, X) ordered (dz, dy, dx).

    Raises:
        InputError: masks are not a 3D non-negative integer array.
    """
    masks = check_masks(masks)
    if masks.ndim != 3:
        raise InputError(f"ortho2d_flows: expected 3D (z, y, x) labels, got shape {masks.shape}")
    lab, _ = renumber_masks(masks)
    out = np.zeros((3,) + masks.shape, np.float32)
    for order, comps in _VIEWS:
        stack = np.ascontiguousarray(np.transpose(lab, order))
        flows = slice_flows(stack)
        back = np.argsort(order)  # stack axes -> (z, y, x)
        for i, c in enumerate(comps):
            out[c] += np.transpose(flows[i], back)
    return out
