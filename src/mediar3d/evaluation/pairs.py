"""Find and load (GT, prediction) label file pairs: single files, folders, CTC layout.

Plain folders pair files by name: the same name, or the same words once the extension
and role words (``labels``, ``masks``, ``seg``, ``pred``, ``gt``, ...) are dropped, the
rule of :mod:`mediar3d.io.naming` that dataset mappings pair by, so ``a.tif`` pairs with
``a_labels.tif`` or ``a.zarr``. TIFF files and Zarr / OME-Zarr folders are read with :func:`mediar3d.io.read_labels`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from mediar3d.errors import InputError
from mediar3d.evaluation.ctc import EvalPair, ctc_pairs, is_ctc_layout
from mediar3d.io import read_labels
from mediar3d.io.naming import image_suffix, name_key, word_key

logger = logging.getLogger(__name__)


def _is_label_file(path: Path) -> bool:
    ext = image_suffix(path)
    if ext is None or path.name.startswith("."):
        return False
    return path.is_dir() if ext.lower().endswith(".zarr") else path.is_file()


def pair_key(path: Path) -> str:
    """Name a file is paired and reported by: :func:`mediar3d.io.naming.name_key` (suffix and role words dropped)."""
    return name_key(path)


def folder_pairs(gt_dir: Path, pred_dir: Path) -> list[EvalPair]:
    """Pair every label file in ``gt_dir`` with the file of the same name in ``pred_dir``.

    Raises:
        InputError: no label files in ``gt_dir``, a prediction missing, or two
            predictions for one GT file.
    """
    if not pred_dir.is_dir():
        raise InputError(f"prediction folder {pred_dir} does not exist")
    gt_files = sorted(p for p in gt_dir.iterdir() if _is_label_file(p))
    if not gt_files:
        raise InputError(f"no label files (.tif, .tiff, .zarr) found in {gt_dir}")
    by_key: dict[str, list[Path]] = {}
    for p in sorted(q for q in pred_dir.iterdir() if _is_label_file(q)):
        by_key.setdefault(word_key(p), []).append(p)
    pairs = []
    used: set[Path] = set()
    for gt_path in gt_files:
        same_name = pred_dir / gt_path.name
        if _is_label_file(same_name):
            pred_path = same_name
        else:
            candidates = by_key.get(word_key(gt_path), [])
            if not candidates:
                raise InputError(f"no prediction for {gt_path.name} in {pred_dir} (looked for {pair_key(gt_path)}[_labels].tif/.zarr)")
            if len(candidates) > 1:
                names = ", ".join(c.name for c in candidates)
                raise InputError(f"several predictions for {gt_path.name} in {pred_dir}: {names}")
            pred_path = candidates[0]
        used.add(pred_path)
        pairs.append(EvalPair(pair_key(gt_path), gt_path, pred_path))
    extra = sum(len(v) for v in by_key.values()) - len(used)
    if extra > 0:
        logger.info("%d prediction file(s) in %s have no GT file and are not scored", extra, pred_dir)
    return pairs


def find_pairs(gt: str | Path, pred: str | Path) -> list[EvalPair]:
    """Find the (GT, prediction) pairs to score.

    Args:
        gt: a GT label file, a folder of them, or a CTC GT folder (``man_seg*.tif``,
            ``<seq>_GT`` or a dataset root of ``<seq>_GT`` folders).
        pred: a prediction file (when ``gt`` is a file) or folder.

    Returns:
        The pairs, in GT name order.

    Raises:
        InputError: missing paths, nothing to pair, missing predictions.
    """
    gt, pred = Path(gt), Path(pred)
    for label, path in (("ground truth", gt), ("prediction", pred)):
        if not path.exists():
            raise InputError(f"{label} path {path} does not exist")
    if _is_label_file(gt) and not (gt.is_dir() and is_ctc_layout(gt)):
        if not _is_label_file(pred):
            raise InputError(f"ground truth {gt} is a file, so the prediction must be a label file too, got {pred}")
        return [EvalPair(pair_key(gt), gt, pred)]
    if not gt.is_dir():
        raise InputError(f"ground truth {gt} is neither a label file (.tif, .tiff, .zarr) nor a folder")
    if not pred.is_dir():
        raise InputError(f"ground truth {gt} is a folder, so the prediction must be a folder too, got {pred}")
    if is_ctc_layout(gt):
        return ctc_pairs(gt, pred)
    return folder_pairs(gt, pred)


def _squeeze_leading(arr: np.ndarray, ndim: int) -> np.ndarray:
    while arr.ndim > ndim and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def load_pair(pair: EvalPair) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair; for a slice annotation, cut that z-slice out of the 3D prediction.

    Returns:
        ``(gt, pred)`` of one shape: (z, y, x), or (y, x) for 2D images and slices.

    Raises:
        InputError: unreadable files, shape mismatch, slice index out of range.
    """
    gt = read_labels(pair.gt_path)
    pred = read_labels(pair.pred_path)
    if pair.z_slice is not None:
        gt = _squeeze_leading(gt, 2)
        if gt.ndim != 2 or pred.ndim != 3:
            raise InputError(
                f"{pair.gt_path.name} annotates z-slice {pair.z_slice}: needs a 2D GT and a 3D prediction, "
                f"got {gt.shape} and {pred.shape} ({pair.pred_path})"
            )
        if not 0 <= pair.z_slice < pred.shape[0]:
            raise InputError(f"{pair.gt_path.name} annotates z-slice {pair.z_slice} but {pair.pred_path} has {pred.shape[0]} slices")
        pred = pred[pair.z_slice]
    elif gt.shape != pred.shape:
        ndim = min(gt.ndim, pred.ndim)
        gt, pred = _squeeze_leading(gt, ndim), _squeeze_leading(pred, ndim)
    if gt.shape != pred.shape:
        raise InputError(f"shape mismatch: {pair.gt_path} {gt.shape} vs {pair.pred_path} {pred.shape}")
    changing = neighbour_change_fraction(pred)
    if changing > INTENSITY_LIKE_FRACTION:
        logger.warning("%s looks like an intensity image, not instance labels: %.0f%% of neighbouring foreground "
                       "pixels along x have different ids (labels: a few %%); score the labels `mediar3d segment` "
                       "wrote", pair.pred_path, 100 * changing)
    return gt, pred


#: Above this fraction of x-neighbours with different non-zero ids, a "labels" file is an intensity image.
INTENSITY_LIKE_FRACTION = 0.5


def neighbour_change_fraction(labels: np.ndarray) -> float:
    """Fraction of pairs of x-neighbours, both non-zero, whose ids differ (labels (..., x)).

    Instance labels change id only at object borders (a few percent); a noisy intensity image
    read as labels changes at almost every pixel.
    """
    left, right = labels[..., :-1], labels[..., 1:]
    both = (left != 0) & (right != 0)
    n = int(np.count_nonzero(both))
    return float(np.count_nonzero(both & (left != right)) / n) if n else 0.0
