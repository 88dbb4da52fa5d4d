"""Instance segmentation scores of one image: TP/FP/FN, precision, recall, F1, AP, Dice, SEG.

Conventions (cell-segmentation, as in Cellpose and StarDist):

- AP at an IoU threshold is ``TP / (TP + FP + FN)``; the default thresholds are
  0.50, 0.55, ..., 0.95.
- A ratio whose denominator is zero is 1.0 when both GT and prediction are empty
  (nothing to find, nothing found) and 0.0 otherwise. The SEG score, a mean over
  GT objects, is NaN for an image without GT objects.
- Dice is the foreground Dice ``2 |G & P| / (|G| + |P|)`` of the binary masks.
- SEG is the Cell Tracking Challenge measure: each GT object is paired with the
  predicted object that covers more than half of its voxels, if any, and scores the
  IoU (Jaccard) of that pair, else 0; SEG is the mean over GT objects.
- Sparse mode (partly annotated GT: 0 means "not annotated"): only annotated objects
  count; predicted objects that overlap no GT object are ignored, not false positives.
  ``z_slices`` restricts a (z, y, x) pair to the annotated slices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mediar3d.errors import ConfigError, InputError
from mediar3d.evaluation.matching import check_threshold, match_overlap, touching_gt
from mediar3d.evaluation.overlap import OverlapTable, check_label_pair, overlap_table

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.5, 0.951, 0.05), 2))


def check_thresholds(thresholds: float | Sequence[float]) -> np.ndarray:
    """Return IoU thresholds as a (T,) float64 array; ConfigError if empty or outside (0, 1]."""
    values = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if values.ndim != 1 or values.size == 0:
        raise ConfigError(f"IoU thresholds {thresholds!r}: give at least one value in (0, 1]")
    return np.array([check_threshold(t) for t in values])


def _ratio(num: np.ndarray | float, den: np.ndarray | float, both_empty: bool) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)
    return np.where(den > 0, out, 1.0 if both_empty else 0.0)


@dataclass
class ImageMetrics:
    """Counts and scores of one image (or of many images pooled, see ``aggregate``).

    Attributes:
        thresholds: (T,) IoU thresholds.
        n_gt: GT objects that count.
        n_pred: predicted objects that count.
        tp: (T,) true positives at each threshold.
        matched_iou_sum: (T,) sum of the IoU of the matched pairs at each threshold.
        matched_log_size_sum: (T,) sum over the matched pairs of log(predicted voxels / GT voxels).
        fg_intersection: voxels in both foregrounds.
        fg_total: ``|G| + |P|`` foreground voxels.
        seg_sum: sum over GT objects of their SEG Jaccard.
        n_pred_ignored: predicted objects ignored in sparse mode.
        name: image name for reports.
        info: free-form details for reports (paths, z-slice).
    """

    thresholds: np.ndarray
    n_gt: int
    n_pred: int
    tp: np.ndarray
    matched_iou_sum: np.ndarray
    matched_log_size_sum: np.ndarray
    fg_intersection: int
    fg_total: int
    seg_sum: float
    n_pred_ignored: int = 0
    name: str = ""
    info: dict = field(default_factory=dict)

    @property
    def both_empty(self) -> bool:
        """True when neither GT nor prediction has an object."""
        return self.n_gt == 0 and self.n_pred == 0

    @property
    def fp(self) -> np.ndarray:
        """(T,) false positives."""
        return self.n_pred - self.tp

    @property
    def fn(self) -> np.ndarray:
        """(T,) false negatives."""
        return self.n_gt - self.tp

    @property
    def precision(self) -> np.ndarray:
        """(T,) TP / (TP + FP)."""
        return _ratio(self.tp, self.n_pred, self.both_empty)

    @property
    def recall(self) -> np.ndarray:
        """(T,) TP / (TP + FN)."""
        return _ratio(self.tp, self.n_gt, self.both_empty)

    @property
    def f1(self) -> np.ndarray:
        """(T,) 2 TP / (2 TP + FP + FN)."""
        return _ratio(2 * self.tp, self.n_gt + self.n_pred, self.both_empty)

    @property
    def ap(self) -> np.ndarray:
        """(T,) TP / (TP + FP + FN)."""
        return _ratio(self.tp, self.tp + self.fp + self.fn, self.both_empty)

    @property
    def mean_matched_iou(self) -> np.ndarray:
        """(T,) mean IoU of the matched pairs."""
        return _ratio(self.matched_iou_sum, self.tp, self.both_empty)

    @property
    def size_ratio(self) -> np.ndarray:
        """(T,) geometric mean over the matched pairs of predicted / GT voxels; NaN without a match.

        Above 1 the masks are systematically larger than the true objects, below 1 smaller:
        a bias AP does not show but object volumes measured from the masks carry.
        """
        tp = np.asarray(self.tp, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(tp > 0, np.exp(self.matched_log_size_sum / np.maximum(tp, 1)), np.nan)

    @property
    def dice(self) -> float:
        """Foreground Dice."""
        return float(_ratio(2 * self.fg_intersection, self.fg_total, self.fg_total == 0))

    @property
    def seg(self) -> float:
        """Cell Tracking Challenge SEG score; NaN without GT objects."""
        return self.seg_sum / self.n_gt if self.n_gt else math.nan

    def at(self, threshold: float) -> int:
        """Index of ``threshold`` in ``thresholds``; ConfigError if it was not evaluated."""
        hit = np.flatnonzero(np.isclose(self.thresholds, threshold))
        if hit.size == 0:
            raise ConfigError(f"IoU threshold {threshold} was not evaluated (have {self.thresholds.tolist()})")
        return int(hit[0])


def seg_sum(table: OverlapTable) -> float:
    """Sum over GT objects of the CTC SEG Jaccard (pair covering > 50 % of the GT object)."""
    covers = 2 * table.intersection > table.gt_sizes[table.pair_gt]
    return float(table.pair_iou()[covers].sum())


def metrics_from_table(
    table: OverlapTable, thresholds: float | Sequence[float] = DEFAULT_THRESHOLDS, *, sparse_gt: bool = False
) -> ImageMetrics:
    """Score one image from its overlap table.

    Args:
        table: from :func:`~mediar3d.evaluation.overlap.overlap_table`.
        thresholds: IoU thresholds, each in (0, 1].
        sparse_gt: ignore predicted objects that overlap no GT object.

    Returns:
        The :class:`ImageMetrics`.
    """
    values = check_thresholds(thresholds)
    n_ignored = 0
    if sparse_gt:
        keep = touching_gt(table)
        n_ignored = int(table.n_pred - keep.sum())
        table = table.keep_pred(keep)
    tp = np.zeros(values.size, dtype=np.int64)
    iou_sum = np.zeros(values.size)
    log_size_sum = np.zeros(values.size)
    for k, t in enumerate(values):
        m = match_overlap(table, t)
        tp[k] = m.tp
        iou_sum[k] = float(m.iou.sum())
        log_size_sum[k] = float(np.log(m.size_ratio).sum())
    return ImageMetrics(
        thresholds=values,
        n_gt=table.n_gt,
        n_pred=table.n_pred,
        tp=tp,
        matched_iou_sum=iou_sum,
        matched_log_size_sum=log_size_sum,
        fg_intersection=int(table.intersection.sum()),
        fg_total=int(table.gt_sizes.sum() + table.pred_sizes.sum()),
        seg_sum=seg_sum(table),
        n_pred_ignored=n_ignored,
    )


def annotated_slices(gt: np.ndarray) -> np.ndarray:
    """Return the indices of the z-slices of a (z, y, x) GT volume that hold any label."""
    gt = np.asarray(gt)
    if gt.ndim != 3:
        raise InputError(f"annotated slices need a (z, y, x) label volume, got shape {gt.shape}")
    return np.flatnonzero(gt.reshape(gt.shape[0], -1).any(axis=1))


def select_slices(gt: np.ndarray, pred: np.ndarray, z_slices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Keep only the annotated z-slices of a (z, y, x) pair; InputError if one is out of range."""
    gt, pred = check_label_pair(gt, pred)
    if gt.ndim != 3:
        raise InputError(f"z_slices needs (z, y, x) label volumes, got shape {gt.shape}")
    z = np.asarray(list(z_slices), dtype=np.int64)
    if z.size == 0 or z.min() < 0 or z.max() >= gt.shape[0]:
        raise InputError(f"z_slices {z.tolist()} must be non-empty and within 0..{gt.shape[0] - 1}")
    return gt[z], pred[z]


def evaluate_instances(
    gt: np.ndarray,
    pred: np.ndarray,
    thresholds: float | Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    sparse_gt: bool = False,
    z_slices: Sequence[int] | None = None,
    name: str = "",
) -> ImageMetrics:
    """Score a predicted label image against its GT.

    Args:
        gt: GT labels, (z, y, x) or (y, x), integers; 0 is background (or "not annotated"
            with ``sparse_gt``).
        pred: predicted labels of the same shape.
        thresholds: IoU thresholds, each in (0, 1]; default 0.50:0.05:0.95.
        sparse_gt: only annotated GT objects count; predicted objects that overlap none
            are ignored, not false positives.
        z_slices: for (z, y, x) inputs, score only these annotated z-slices.
        name: image name stored in the result.

    Returns:
        The :class:`ImageMetrics` (use ``.ap``, ``.precision``, ``.recall``, ``.f1``,
        ``.dice``, ``.seg``).

    Raises:
        InputError: non-integer or negative labels, shape mismatch, bad z-slices.
        ConfigError: thresholds outside (0, 1].
    """
    if z_slices is not None:
        gt, pred = select_slices(gt, pred, z_slices)
    result = metrics_from_table(overlap_table(gt, pred), thresholds, sparse_gt=sparse_gt)
    result.name = name
    return result


def average_precision(
    gt: np.ndarray,
    pred: np.ndarray,
    thresholds: float | Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    sparse_gt: bool = False,
) -> np.ndarray:
    """Return the (T,) AP = TP / (TP + FP + FN) at each IoU threshold.

    Args:
        gt: GT labels, (z, y, x) or (y, x).
        pred: predicted labels of the same shape.
        thresholds: IoU thresholds; default 0.50:0.05:0.95.
        sparse_gt: ignore predicted objects that overlap no GT object.
    """
    return evaluate_instances(gt, pred, thresholds, sparse_gt=sparse_gt).ap


def dice_score(gt: np.ndarray, pred: np.ndarray) -> float:
    """Foreground Dice ``2 |G & P| / (|G| + |P|)`` of two label images of one shape; 1.0 if both empty."""
    gt, pred = check_label_pair(gt, pred)
    g, p = gt > 0, pred > 0
    total = int(g.sum() + p.sum())
    return float(_ratio(2 * int(np.count_nonzero(g & p)), total, total == 0))


def seg_score(gt: np.ndarray, pred: np.ndarray) -> float:
    """Cell Tracking Challenge SEG score of one label image pair; NaN without GT objects."""
    table = overlap_table(gt, pred)
    return seg_sum(table) / table.n_gt if table.n_gt else math.nan
