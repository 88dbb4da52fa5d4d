"""Stitch 2D masks of consecutive z-slices into 3D labels by overlap (z-only mode)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _iou_pairs(previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prev ids, current ids, IoU) for every pair of overlapping labels of two 2D label images."""
    both = (previous > 0) & (current > 0)
    if not both.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    pairs, inter = np.unique(np.stack([previous[both], current[both]]).astype(np.int64), axis=1, return_counts=True)
    prev_area = np.bincount(previous.ravel().astype(np.int64))
    cur_area = np.bincount(current.ravel().astype(np.int64))
    union = prev_area[pairs[0]] + cur_area[pairs[1]] - inter
    return pairs[0], pairs[1], inter / union


def stitch_slices(planes: Sequence[np.ndarray], threshold: float = 0.25) -> np.ndarray:
    """Join 2D label images (one per z, each (y, x), ids per plane) into a 3D label volume.

    A mask takes the id of the mask in the previous slice it overlaps best when their IoU
    is above `threshold` (each previous mask is used at most once, best pairs first);
    otherwise it starts a new object.

    Returns:
        int64 labels (z, y, x).
    """
    out = np.zeros((len(planes),) + np.asarray(planes[0]).shape, dtype=np.int64)
    next_id = 1
    for z, plane in enumerate(planes):
        plane = np.asarray(plane).astype(np.int64)
        ids = np.unique(plane[plane > 0])
        mapping = {}
        if z > 0:
            prev_ids, cur_ids, iou = _iou_pairs(out[z - 1], plane)
            used = set()
            for k in np.argsort(-iou, kind="stable"):
                if iou[k] <= threshold:
                    break
                if cur_ids[k] in mapping or prev_ids[k] in used:
                    continue
                mapping[int(cur_ids[k])] = int(prev_ids[k])
                used.add(int(prev_ids[k]))
        lut = np.zeros(int(plane.max(initial=0)) + 1, dtype=np.int64)
        for label in ids:
            if int(label) not in mapping:
                mapping[int(label)] = next_id
                next_id += 1
            lut[label] = mapping[int(label)]
        out[z] = lut[plane]
    return out
