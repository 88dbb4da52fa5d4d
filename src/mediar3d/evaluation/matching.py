"""One-to-one matching of predicted to GT objects by IoU (optimal assignment).

A GT and a predicted object may be matched when their IoU is >= the threshold. Among
all one-to-one matchings the one with the most matches is taken, and among those the
one with the highest total IoU (the Cellpose convention). For thresholds above 0.5
every candidate pair is already unique (IoU > 0.5 leaves room for one partner only);
below that, :func:`match_overlap` solves each connected group of candidate pairs with
``scipy.optimize.linear_sum_assignment``. :func:`match_overlap_reference` solves the
whole dense matrix at once (slow; for tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

from mediar3d.errors import ConfigError
from mediar3d.evaluation.overlap import OverlapTable, overlap_table


@dataclass(frozen=True)
class Matching:
    """Result of matching at one IoU threshold.

    Attributes:
        threshold: the IoU threshold.
        gt_index: (TP,) indices of matched GT objects into ``table.gt_ids``.
        pred_index: (TP,) indices of the matched predicted objects into ``table.pred_ids``.
        iou: (TP,) IoU of each matched pair.
        n_gt: number of GT objects that count.
        n_pred: number of predicted objects that count.
        table: the overlap table the matching was made from.
    """

    threshold: float
    gt_index: np.ndarray
    pred_index: np.ndarray
    iou: np.ndarray
    n_gt: int
    n_pred: int
    table: OverlapTable

    @property
    def tp(self) -> int:
        """True positives: matched pairs."""
        return int(self.gt_index.size)

    @property
    def fp(self) -> int:
        """False positives: predicted objects without a match."""
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        """False negatives: GT objects without a match."""
        return self.n_gt - self.tp

    @property
    def matched_gt_ids(self) -> np.ndarray:
        """(TP,) label values of the matched GT objects."""
        return self.table.gt_ids[self.gt_index]

    @property
    def matched_pred_ids(self) -> np.ndarray:
        """(TP,) label values of the matched predicted objects, paired with ``matched_gt_ids``."""
        return self.table.pred_ids[self.pred_index]

    @property
    def size_ratio(self) -> np.ndarray:
        """(TP,) voxels of each matched predicted object over those of its GT object.

        Its median says whether masks are systematically too large (> 1) or too small (< 1),
        a bias that AP at IoU 0.5 does not see but object volumes measured from the masks do.
        """
        pred = self.table.pred_sizes[self.pred_index].astype(np.float64)
        return pred / np.maximum(self.table.gt_sizes[self.gt_index], 1)


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` as a float, or raise ConfigError if it is not in (0, 1]."""
    value = float(threshold)
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"IoU threshold {threshold!r} must be in (0, 1]")
    return value


def _candidates(table: OverlapTable, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    iou = table.pair_iou()
    ok = iou >= threshold
    return table.pair_gt[ok], table.pair_pred[ok], iou[ok]


def _assign(iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most matches, then highest total IoU, on a dense candidate block (0 = not a candidate)."""
    n_min = max(min(iou.shape), 1)
    cost = -(iou > 0).astype(np.float64) - iou / (2.0 * n_min)
    rows, cols = linear_sum_assignment(cost)
    ok = iou[rows, cols] > 0
    return rows[ok], cols[ok]


def match_overlap(table: OverlapTable, threshold: float = 0.5) -> Matching:
    """Match objects of an overlap table one-to-one at an IoU threshold.

    Args:
        table: from :func:`~mediar3d.evaluation.overlap.overlap_table`.
        threshold: minimum IoU of a match, in (0, 1].

    Returns:
        The :class:`Matching`.
    """
    threshold = check_threshold(threshold)
    g, p, iou = _candidates(table, threshold)
    if threshold <= 0.5 and g.size:
        g, p, iou = _match_components(table, g, p, iou)
    order = np.argsort(g, kind="stable")
    return Matching(threshold, g[order], p[order], iou[order], table.n_gt, table.n_pred, table)


def _match_components(
    table: OverlapTable, g: np.ndarray, p: np.ndarray, iou: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve the assignment separately on each connected group of candidate pairs."""
    n_gt = table.n_gt
    n_nodes = n_gt + table.n_pred
    graph = sparse.coo_matrix((np.ones(g.size), (g, n_gt + p)), shape=(n_nodes, n_nodes))
    _, component = connected_components(graph, directed=False)
    edge_comp = component[g]
    edges_per_comp = np.bincount(edge_comp, minlength=component.max() + 1)
    simple = edges_per_comp[edge_comp] == 1
    keep_g, keep_p, keep_iou = [g[simple]], [p[simple]], [iou[simple]]
    hard = ~simple
    if hard.any():
        hg, hp, hiou, hcomp = g[hard], p[hard], iou[hard], edge_comp[hard]
        order = np.argsort(hcomp, kind="stable")
        hg, hp, hiou, hcomp = hg[order], hp[order], hiou[order], hcomp[order]
        starts = np.flatnonzero(np.r_[True, hcomp[1:] != hcomp[:-1]])
        ends = np.r_[starts[1:], hcomp.size]
        for s, e in zip(starts, ends):
            rows, row_idx = np.unique(hg[s:e], return_inverse=True)
            cols, col_idx = np.unique(hp[s:e], return_inverse=True)
            block = np.zeros((rows.size, cols.size))
            block[row_idx, col_idx] = hiou[s:e]
            r, c = _assign(block)
            keep_g.append(rows[r])
            keep_p.append(cols[c])
            keep_iou.append(block[r, c])
    return np.concatenate(keep_g), np.concatenate(keep_p), np.concatenate(keep_iou)


def match_overlap_reference(table: OverlapTable, threshold: float = 0.5) -> Matching:
    """Plain version of :func:`match_overlap`: one assignment on the dense IoU matrix."""
    threshold = check_threshold(threshold)
    dense = table.iou_matrix().toarray()
    dense[dense < threshold] = 0.0
    rows, cols = _assign(dense)
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    return Matching(threshold, rows, cols, dense[rows, cols], table.n_gt, table.n_pred, table)


def match_instances(
    gt: np.ndarray, pred: np.ndarray, threshold: float = 0.5, *, sparse_gt: bool = False
) -> Matching:
    """Match predicted to GT objects one-to-one by IoU.

    Args:
        gt: GT labels, (z, y, x) or (y, x); 0 is background (or "not annotated" when
            ``sparse_gt``).
        pred: predicted labels of the same shape.
        threshold: minimum IoU of a match, in (0, 1].
        sparse_gt: only annotated objects count: predicted objects that overlap no GT
            object are ignored instead of counted as false positives.

    Returns:
        The :class:`Matching` (``tp``, ``fp``, ``fn``, matched label values and IoUs).

    Raises:
        InputError: non-integer or negative labels, or different shapes.
        ConfigError: threshold outside (0, 1].
    """
    table = overlap_table(gt, pred)
    if sparse_gt:
        table = table.keep_pred(touching_gt(table))
    return match_overlap(table, threshold)


def touching_gt(table: OverlapTable) -> np.ndarray:
    """Return a (n_pred,) boolean mask of the predicted objects that overlap any GT object."""
    keep = np.zeros(table.n_pred, dtype=bool)
    keep[table.pair_pred] = True
    return keep
