"""Synthetic instance masks and a tiny IoU matcher for the post-processing tests."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def ellipsoids(shape, specs):
    """Label volume from (centre, radii) specs; overlaps go to the nearest (normalised) ellipsoid."""
    best = np.full(shape, np.inf, np.float32)
    lab = np.zeros(shape, np.int32)
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    for k, (c, r) in enumerate(specs):
        d = sum(((grid[a] - c[a]) / r[a]) ** 2 for a in range(len(shape)))
        take = (d <= 1) & (d < best)
        best[take] = d[take]
        lab[take] = k + 1
    return lab


def touching_nuclei(shape=(40, 64, 64), n=14, radius=(6.0, 9.0), z_scale=1.0, seed=0, spacing=1.4):
    """Randomly placed ellipsoids that touch their neighbours (centre spacing ~1.4 radii)."""
    rng = np.random.default_rng(seed)
    size = np.array(shape, float)
    centres, radii = [], []
    for _ in range(200 * n):
        if len(centres) == n:
            break
        r = rng.uniform(*radius, size=3) * np.array([z_scale, 1.0, 1.0])
        c = rng.uniform(0.1, 0.9, 3) * (size - 1)
        if all(np.linalg.norm((c - c2) / ((r + r2) / 2)) >= spacing for c2, r2 in zip(centres, radii)):
            centres.append(c)
            radii.append(r)
    return ellipsoids(shape, list(zip(centres, radii)))


def match(gt, pred, threshold=0.5):
    """(AP = TP / (TP + FP + FN), mean IoU of the matches) by optimal 1:1 IoU matching."""
    ng, npred = int(gt.max()), int(pred.max())
    if ng == 0 and npred == 0:
        return 1.0, 1.0
    ov = np.zeros((ng + 1, npred + 1))
    np.add.at(ov, (gt.ravel(), pred.ravel()), 1)
    iou = ov / (ov.sum(1)[:, None] + ov.sum(0)[None] - ov)
    iou = iou[1:, 1:]
    if iou.size == 0:
        return 0.0, 0.0
    r, c = linear_sum_assignment(-iou)
    good = iou[r, c] >= threshold
    tp = int(good.sum())
    return tp / (ng + npred - tp), float(iou[r, c][good].mean()) if tp else 0.0


def logits(masks, value=5.0):
    """Cell-probability logits of a perfect network: +value inside objects, -value outside."""
    return np.where(masks > 0, value, -value).astype(np.float32)
