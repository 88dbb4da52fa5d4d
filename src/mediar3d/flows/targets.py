"""Training targets from instance masks: unit flows to each object's centre and cell probability."""

from __future__ import annotations

import fastremap
import numpy as np

from mediar3d.errors import InputError
from mediar3d.flows.diffusion import diffuse_flows

__all__ = ["masks_to_flows", "cellprob_target", "check_masks", "renumber_masks"]


def check_masks(masks: np.ndarray, name: str = "masks") -> np.ndarray:
    """Validate an instance mask and return it as an integer array.

    Args:
        masks: label array (z, y, x) or (y, x); 0 is background; bool is accepted.
        name: how to call the array in error messages.

    Returns:
        The array (bool converted to uint8).

    Raises:
        InputError: not 2D/3D, empty, not integer, or negative labels.
    """
    masks = np.asarray(masks)
    if masks.ndim not in (2, 3):
        raise InputError(f"{name}: expected a 2D (y, x) or 3D (z, y, x) label array, got shape {masks.shape}")
    if masks.size == 0:
        raise InputError(f"{name}: label array is empty (shape {masks.shape})")
    if masks.dtype == bool:
        return masks.astype(np.uint8)
    if masks.dtype.kind not in "iu":
        raise InputError(f"{name}: labels must be integers, got dtype {masks.dtype}")
    if masks.dtype.kind == "i" and masks.min() < 0:
        raise InputError(f"{name}: labels must be >= 0, found {int(masks.min())}")
    return masks


def renumber_masks(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel to consecutive 1..N as a new int32 array (0 stays 0).

    Args:
        masks: integer labels of any shape.

    Returns:
        (int32 labels of the same shape, N).
    """
    out, remap = fastremap.renumber(np.ascontiguousarray(masks), preserve_zero=True, in_place=False)
    n = int(max(remap.values())) if remap else 0
    if n >= np.iinfo(np.int32).max:
        raise InputError(f"masks: {n} objects do not fit in int32 labels")
    return out.astype(np.int32, copy=False), n


def masks_to_flows(masks: np.ndarray, *, niter: int | None = None) -> np.ndarray:
    """Cellpose flows of an instance mask: unit vectors pointing to each object's centre.

    Heat diffuses from each object's centre voxel inside the object (Cellpose's
    definition; see :mod:`mediar3d.flows.diffusion`), and the flow is the normalised
    gradient of the heat. Labels need not be consecutive.

    Args:
        masks: integer labels, (z, y, x) for 3D or (y, x) for 2D; 0 is background.
        niter: diffusion steps for every object; None for Cellpose's default, computed
            per object from its bounding box.

    Returns:
        float32 array (3, Z, Y, X) ordered (dz, dy, dx) for a 3D mask, or (2, Y, X)
        ordered (dy, dx) for a 2D mask; unit length inside objects (0 at a centre whose
        gradient vanishes), zero outside.

    Raises:
        InputError: masks are not a 2D/3D non-negative integer array.
    """
    masks = check_masks(masks)
    if niter is not None and int(niter) < 1:
        raise InputError(f"masks_to_flows: niter must be >= 1, got {niter}")
    ndim = masks.ndim
    lab, _ = renumber_masks(masks)
    stack = lab if ndim == 3 else lab[None]
    flows = diffuse_flows(stack, ndim, niter=niter)
    return flows if ndim == 3 else flows[:, 0]


def cellprob_target(masks: np.ndarray) -> np.ndarray:
    """Binary cell-probability target (1 inside any object, 0 outside).

    Args:
        masks: integer labels, (z, y, x) or (y, x).

    Returns:
        float32 array of the same shape.
    """
    masks = check_masks(masks)
    return (masks > 0).astype(np.float32)
