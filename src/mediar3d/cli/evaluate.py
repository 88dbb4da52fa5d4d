"""`mediar3d evaluate`: score predicted label images against ground truth."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mediar3d.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Score predicted instance labels against ground truth: objects are matched one-to-one
by IoU; reports TP/FP/FN, precision, recall, F1 and AP = TP/(TP+FP+FN) per IoU
threshold, mean matched IoU, foreground Dice and the Cell Tracking Challenge SEG
score, pooled over all images and as the mean over images. Writes metrics.csv,
metrics.json and ap_vs_iou.png.

--gt and --pred are two label files, or two folders paired by file name (a.tif with
a.tif, a_labels.tif or a.zarr), or a Cell Tracking Challenge GT folder
(<seq>_GT, its SEG folder, or a dataset root of <seq>_GT folders) with the matching
results folder (<seq>_RES with maskTTT.tif). man_seg_TTT_SSS.tif files annotate
z-slice SSS only; that slice of the 3D prediction is scored.

Learning curves: with --checkpoints DIR instead of --pred/--gt, every .pt checkpoint
in DIR (e.g. the learning_curve/objects_<N>.pt files of `mediar3d train
--checkpoint-at-objects`) segments the annotated images of --data (or --image/--labels)
and is scored; learning_curve.csv and learning_curve.png plot the metric against the
annotated objects each checkpoint had seen in training.
"""

EPILOG = """\
examples:
  mediar3d evaluate --pred out/ --gt gt/ -o report/
  mediar3d evaluate --checkpoints runs/curve/learning_curve --data map.json -o curve/
"""


def parse_thresholds(tokens: list[str]) -> list[float]:
    """Turn ``["0.5", "0.75"]`` or ``["0.5:0.95:0.05"]`` (inclusive range) into floats."""
    values: list[float] = []
    for token in tokens:
        for part in token.replace(",", " ").split():
            try:
                if ":" in part:
                    start, stop, step = (float(x) for x in part.split(":"))
                    if step <= 0:
                        raise ValueError
                    values.extend(float(v) for v in np.round(np.arange(start, stop + step / 2, step), 6))
                else:
                    values.append(float(part))
            except ValueError:
                raise ConfigError(
                    f"--thresholds: cannot read {part!r}; give numbers like 0.5 0.75 or a range start:stop:step"
                ) from None
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `evaluate` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted labels against ground truth (AP, F1, Dice, SEG)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--pred", type=Path, help="predicted label file or folder")
    parser.add_argument("--gt", type=Path, help="ground-truth label file or folder (plain or CTC layout)")
    parser.add_argument(
        "-o", "--output", type=Path, default=None, metavar="OUTDIR",
        help="folder for metrics.csv, metrics.json, ap_vs_iou.png (default: the prediction folder); with "
             "--checkpoints for learning_curve.csv/png (default: the checkpoint folder)",
    )
    parser.add_argument(
        "--thresholds", nargs="+", default=["0.5:0.95:0.05"], metavar="T",
        help="IoU thresholds, as numbers or an inclusive range start:stop:step (default: 0.5:0.95:0.05)",
    )
    parser.add_argument(
        "--sparse", action="store_true",
        help="GT is partly annotated (e.g. CTC): predicted objects that overlap no GT object are ignored, not false positives",
    )
    parser.add_argument(
        "--annotated-slices", action="store_true",
        help="for 3D GT annotated on a few z-slices only: score just the slices that hold labels",
    )
    parser.add_argument("--per-image", action="store_true", help="also print AP at the first threshold for every image")
    from mediar3d.cli.tune import add_data_arguments, add_inference_arguments

    curve = parser.add_argument_group("learning curve: score checkpoints instead of label files")
    curve.add_argument("--checkpoints", type=Path, metavar="DIR",
                       help="score every .pt checkpoint in DIR on the annotated images of --data or --image/--labels "
                            "and plot the metric against annotated objects seen (no --pred/--gt)")
    add_data_arguments(curve, sparse=False)
    curve.add_argument("--metric", choices=("ap", "f1", "seg", "dice"), default="ap",
                       help="score to plot (default ap; AP and F1 at the first --thresholds IoU)")
    curve.add_argument("--tune-each", action="store_true",
                       help="tune every checkpoint's thresholds on the same images before scoring it")
    add_inference_arguments(parser.add_argument_group("inference for --checkpoints (as in segment)"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Score, print the table and write the report; returns the exit code."""
    from mediar3d.evaluation import aggregate, evaluate_instances, find_pairs, format_table, load_pair, write_report
    from mediar3d.evaluation.metrics import annotated_slices, check_thresholds

    thresholds = check_thresholds(parse_thresholds(args.thresholds))
    if args.checkpoints is not None:
        return run_checkpoints(args, thresholds[0])
    if args.pred is None or args.gt is None:
        raise ConfigError("give --pred and --gt (label files or folders), or --checkpoints DIR with --data MAP.json "
                          "or --image/--labels")
    if args.data is not None or args.image or args.labels:
        raise ConfigError("--data, --image and --labels go with --checkpoints; label files to score go to --pred/--gt")
    pairs = find_pairs(args.gt, args.pred)
    out_dir = args.output if args.output is not None else (args.pred if args.pred.is_dir() else args.pred.parent)
    results = []
    for pair in tqdm(pairs, desc="evaluate", unit="image", disable=None):
        gt, pred = load_pair(pair)
        z_slices = None
        if args.annotated_slices and gt.ndim == 3:
            z_slices = annotated_slices(gt).tolist() or None
        result = evaluate_instances(gt, pred, thresholds, sparse_gt=args.sparse, z_slices=z_slices, name=pair.name)
        result.info = {"gt": str(pair.gt_path), "pred": str(pair.pred_path), "z_slice": pair.z_slice}
        if z_slices is not None:
            result.info["z_slices"] = z_slices
        results.append(result)
        logger.info("%s: %d GT, %d predicted objects, AP@%.2f %.4f", pair.name, result.n_gt, result.n_pred, thresholds[0], result.ap[0])
    summary = aggregate(results)
    settings = {
        "gt": str(args.gt), "pred": str(args.pred), "sparse": bool(args.sparse),
        "annotated_slices": bool(args.annotated_slices),
    }
    try:
        written = write_report(out_dir, summary, settings)
    except OSError as err:
        raise InputError(f"cannot write the report to {out_dir}: {err.strerror or err}") from err
    if args.per_image:
        for r in results:
            print(f"{r.name}: GT {r.n_gt}  pred {r.n_pred}  AP@{thresholds[0]:.2f} {r.ap[0]:.4f}")
    print(format_table(summary))
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def run_checkpoints(args: argparse.Namespace, iou: float) -> int:
    """Learning curve: score every checkpoint of --checkpoints DIR (as `tune --learning-curve`)."""
    from mediar3d.cli.tune import run_learning_curve

    if args.pred is not None or args.gt is not None:
        raise ConfigError("--checkpoints scores checkpoints on --data or --image/--labels; leave out --pred and --gt")
    curve_args = argparse.Namespace(**vars(args))
    curve_args.learning_curve = args.checkpoints
    curve_args.iou = iou
    curve_args.cellprob_thresholds = curve_args.flow_thresholds = curve_args.min_sizes = None
    return run_learning_curve(curve_args)
