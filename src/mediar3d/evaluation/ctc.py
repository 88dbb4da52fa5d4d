"""Cell Tracking Challenge (CTC) layout: GT ``SEG`` folders and matching predictions.

GT files of one sequence live in ``<seq>_GT/SEG/``:

- ``man_segTTT.tif``: full annotation of time point TTT (2D image or 3D volume);
- ``man_seg_TTT_SSS.tif``: 2D annotation of z-slice SSS of the 3D volume of time
  point TTT (sparse 3D ground truth: only a few slices, often only a few cells).

Predictions of time point TTT are ``maskTTT.tif`` (the CTC ``<seq>_RES`` folder) or,
if the folder has no ``mask*`` files, any TIFF whose name ends in the time number
(``t000.tif``, ``t000_labels.tif``). Time numbers match by value, so ``mask0007``
pairs with ``man_seg007``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mediar3d.errors import InputError

GT_FULL = re.compile(r"^man_seg(\d+)\.tiff?$", re.IGNORECASE)
GT_SLICE = re.compile(r"^man_seg_(\d+)_(\d+)\.tiff?$", re.IGNORECASE)
PRED_CTC = re.compile(r"^mask(\d+)\.tiff?$", re.IGNORECASE)
PRED_ANY = re.compile(r"^(?:.*?\D)?(\d+)(?:_[A-Za-z]+)*\.tiff?$", re.IGNORECASE)
SEQ_GT = re.compile(r"^(.+)_GT$")


@dataclass(frozen=True)
class EvalPair:
    """One GT file and the prediction it is scored against.

    Attributes:
        name: short name for reports.
        gt_path: GT label file.
        pred_path: predicted label file.
        z_slice: for a 2D annotation of one slice of a 3D prediction, the slice index.
    """

    name: str
    gt_path: Path
    pred_path: Path
    z_slice: int | None = None


def _gt_files(seg_dir: Path) -> list[Path]:
    return sorted(p for p in seg_dir.iterdir() if p.is_file() and (GT_FULL.match(p.name) or GT_SLICE.match(p.name)))


def seg_folder(path: Path) -> Path | None:
    """Return the folder holding ``man_seg*`` files: ``path`` itself or ``path/SEG``; else None."""
    for candidate in (path, path / "SEG"):
        if candidate.is_dir() and _gt_files(candidate):
            return candidate
    return None


def sequence_folders(path: Path) -> dict[str, Path]:
    """Return ``{seq: SEG folder}`` for every ``<seq>_GT/SEG`` folder directly under ``path``."""
    found = {}
    for child in sorted(path.iterdir()) if path.is_dir() else []:
        m = SEQ_GT.match(child.name)
        if m and child.is_dir():
            seg = seg_folder(child)
            if seg is not None:
                found[m.group(1)] = seg
    return found


def is_ctc_layout(gt: Path) -> bool:
    """True when ``gt`` is a CTC SEG folder, a ``<seq>_GT`` folder or a dataset root of them."""
    return gt.is_dir() and (seg_folder(gt) is not None or bool(sequence_folders(gt)))


def prediction_index(pred_dir: Path) -> dict[int, Path]:
    """Map time number -> prediction file in a results folder.

    Raises:
        InputError: two files with the same time number.
    """
    files = sorted(p for p in pred_dir.iterdir() if p.is_file())
    ctc = [(PRED_CTC.match(p.name), p) for p in files]
    matches = [(m, p) for m, p in ctc if m]
    if not matches:
        matches = [(m, p) for m, p in ((PRED_ANY.match(p.name), p) for p in files) if m]
    index: dict[int, Path] = {}
    for m, p in matches:
        t = int(m.group(1))
        if t in index:
            raise InputError(f"{pred_dir}: two predictions for time point {t}: {index[t].name} and {p.name}")
        index[t] = p
    return index


def ctc_sequence_pairs(seg_dir: Path, pred_dir: Path, prefix: str = "") -> list[EvalPair]:
    """Pair every ``man_seg*`` file of one sequence with its prediction.

    Args:
        seg_dir: folder with ``man_segTTT.tif`` / ``man_seg_TTT_SSS.tif`` files.
        pred_dir: folder with ``maskTTT.tif`` (or ``...TTT.tif``) predictions.
        prefix: prepended to each pair name (the sequence, for dataset roots).

    Raises:
        InputError: the prediction folder is missing or lacks a time point.
    """
    if not pred_dir.is_dir():
        raise InputError(f"prediction folder {pred_dir} does not exist (needed for GT in {seg_dir})")
    index = prediction_index(pred_dir)
    pairs = []
    for gt_path in _gt_files(seg_dir):
        full, one_slice = GT_FULL.match(gt_path.name), GT_SLICE.match(gt_path.name)
        t = int((full or one_slice).group(1))
        z = int(one_slice.group(2)) if one_slice else None
        if t not in index:
            raise InputError(f"no prediction for {gt_path.name} (time point {t}) in {pred_dir}; expected e.g. mask{t:03d}.tif")
        pairs.append(EvalPair(prefix + gt_path.stem, gt_path, index[t], z))
    return pairs


def ctc_pairs(gt: Path, pred: Path) -> list[EvalPair]:
    """Pairs for a CTC GT path: a SEG folder, a ``<seq>_GT`` folder, or a dataset root.

    For a dataset root holding ``01_GT``, ``02_GT``, ... ``pred`` must hold
    ``01_RES``, ``02_RES``, ... (or be the single results folder when there is one
    sequence).

    Raises:
        InputError: no CTC GT found, or missing predictions.
    """
    seg = seg_folder(gt)
    if seg is not None:
        return ctc_sequence_pairs(seg, pred)
    sequences = sequence_folders(gt)
    if not sequences:
        raise InputError(f"{gt}: no CTC ground truth (man_seg*.tif, SEG/ or <seq>_GT/SEG/) found")
    if len(sequences) == 1 and not (pred / f"{next(iter(sequences))}_RES").is_dir():
        seq, seg = next(iter(sequences.items()))
        return ctc_sequence_pairs(seg, pred, prefix=f"{seq}/")
    pairs = []
    for seq, seg in sequences.items():
        pairs.extend(ctc_sequence_pairs(seg, pred / f"{seq}_RES", prefix=f"{seq}/"))
    return pairs
