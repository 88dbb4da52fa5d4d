"""Evaluation of instance segmentations: matching, AP/F1/Dice/SEG, CTC readers, reports.

Typical use::

    from mediar3d.evaluation import evaluate_instances, aggregate
    result = evaluate_instances(gt, pred)          # (z, y, x) or (y, x) label images
    result.ap                                      # AP at IoU 0.50, 0.55, ..., 0.95
    summary = aggregate([result, ...])             # pooled and per-image-mean scores
"""

from mediar3d.evaluation.aggregate import Summary, aggregate
from mediar3d.evaluation.ctc import EvalPair, ctc_pairs
from mediar3d.evaluation.matching import Matching, match_instances, match_overlap
from mediar3d.evaluation.metrics import (
    DEFAULT_THRESHOLDS,
    ImageMetrics,
    annotated_slices,
    average_precision,
    dice_score,
    evaluate_instances,
    seg_score,
)
from mediar3d.evaluation.overlap import OverlapTable, overlap_table
from mediar3d.evaluation.pairs import find_pairs, folder_pairs, load_pair
from mediar3d.evaluation.report import format_table, write_report

__all__ = [
    "DEFAULT_THRESHOLDS",
    "EvalPair",
    "ImageMetrics",
    "Matching",
    "OverlapTable",
    "Summary",
    "aggregate",
    "annotated_slices",
    "average_precision",
    "ctc_pairs",
    "dice_score",
    "evaluate_instances",
    "find_pairs",
    "folder_pairs",
    "format_table",
    "load_pair",
    "match_instances",
    "match_overlap",
    "overlap_table",
    "seg_score",
    "write_report",
]
