"""Scores over many images: pooled counts and the mean of per-image scores.

Pooled scores sum TP, FP, FN (and Dice and SEG numerators and denominators) over
all images before dividing, so an image with many objects weighs more; this is the
usual dataset-level AP and also how the Cell Tracking Challenge computes SEG (mean
over all GT objects of the dataset). Per-image means weigh every image equally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mediar3d.errors import ConfigError
from mediar3d.evaluation.metrics import ImageMetrics

#: Scores with one value per IoU threshold; ``size_ratio`` (last) is averaged over the images that have a match.
PER_THRESHOLD = ("precision", "recall", "f1", "ap", "mean_matched_iou", "size_ratio")
PER_IMAGE = ("dice", "seg")


@dataclass
class Summary:
    """Scores of a set of images.

    Attributes:
        pooled: counts summed over images, scored as one image.
        mean: per-image mean of each score: (T,) arrays for ``PER_THRESHOLD`` names,
            floats for ``dice`` and ``seg`` (images without GT objects skipped for SEG, images
            without a matched pair for ``size_ratio``).
        images: the per-image results.
    """

    pooled: ImageMetrics
    mean: dict[str, np.ndarray | float]
    images: list[ImageMetrics]

    @property
    def thresholds(self) -> np.ndarray:
        """(T,) IoU thresholds."""
        return self.pooled.thresholds


def aggregate(results: Sequence[ImageMetrics]) -> Summary:
    """Pool and average per-image results computed with the same thresholds.

    Args:
        results: one :class:`ImageMetrics` per image.

    Returns:
        The :class:`Summary`.

    Raises:
        ConfigError: no results, or results with different thresholds.
    """
    results = list(results)
    if not results:
        raise ConfigError("nothing to aggregate: no per-image results")
    thresholds = results[0].thresholds
    for r in results[1:]:
        if r.thresholds.shape != thresholds.shape or not np.allclose(r.thresholds, thresholds):
            raise ConfigError(f"image {r.name!r} was scored at other IoU thresholds than {results[0].name!r}")
    pooled = ImageMetrics(
        thresholds=thresholds.copy(),
        n_gt=sum(r.n_gt for r in results),
        n_pred=sum(r.n_pred for r in results),
        tp=np.sum([r.tp for r in results], axis=0),
        matched_iou_sum=np.sum([r.matched_iou_sum for r in results], axis=0),
        matched_log_size_sum=np.sum([r.matched_log_size_sum for r in results], axis=0),
        fg_intersection=sum(r.fg_intersection for r in results),
        fg_total=sum(r.fg_total for r in results),
        seg_sum=float(sum(r.seg_sum for r in results)),
        n_pred_ignored=sum(r.n_pred_ignored for r in results),
        name="pooled",
    )
    mean: dict[str, np.ndarray | float] = {}
    for key in PER_THRESHOLD[:-1]:
        mean[key] = np.mean([getattr(r, key) for r in results], axis=0)
    sizes = np.array([r.size_ratio for r in results])  # NaN where an image has no match: left out
    counted = np.isfinite(sizes).sum(axis=0)
    mean["size_ratio"] = np.where(counted > 0, np.nansum(sizes, axis=0) / np.maximum(counted, 1), np.nan)
    mean["dice"] = float(np.mean([r.dice for r in results]))
    seg = np.array([r.seg for r in results])
    mean["seg"] = float(np.nanmean(seg)) if np.isfinite(seg).any() else float("nan")
    return Summary(pooled=pooled, mean=mean, images=results)
