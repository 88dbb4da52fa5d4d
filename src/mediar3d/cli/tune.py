"""`mediar3d tune`: tune post-processing thresholds on validation data, or draw a learning curve."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any

from mediar3d.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Tune the post-processing thresholds of a model (cellprob_threshold, flow_threshold,
min_size) on annotated validation volumes. The network runs once per volume (as
`mediar3d segment` runs it); every setting then costs only post-processing. The best
setting is written into a copy of the checkpoint (its thresholds, which `segment --model`
uses by default), with tuning.csv, tuning.json and tuning.png (metric vs each threshold).

With --learning-curve DIR, every checkpoint in DIR (e.g. the objects_<N>.pt files that
training saves at counts of annotated objects) is scored instead, and
learning_curve.csv / learning_curve.png plot the metric against annotated objects.
"""

EPILOG = """\
examples:
  mediar3d tune --model run/model_best.pt --data map.json
  mediar3d tune --model model.pt --image val1.tif --labels val1_gt.tif --metric seg -o model_tuned.pt
  mediar3d tune --model a/model_best.pt --model b/model_best.pt --data map.json   # an ensemble
  mediar3d tune --learning-curve run/learning_curve --data map.json --tune-each -o curve/
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `tune` subcommand."""
    p = subparsers.add_parser("tune", help="tune post-processing thresholds on validation data; learning curves",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("model and data")
    what.add_argument("--model", action="append", default=None,
                      help="checkpoint path, bundled model name, bioimage.io package or https URL#sha256=<hex> to "
                           "tune (a URL's tuned copy goes to the working folder); repeat it to tune an ensemble (each "
                           "member gets a tuned copy holding the ensemble's best thresholds)")
    what.add_argument("--sha256", default=None, metavar="HEX",
                      help="sha256 of the --model file (64 hex digits), checked before it is used; for an https "
                           "URL the same as URL#sha256=HEX")
    what.add_argument("--learning-curve", metavar="DIR", type=Path,
                      help="score every .pt checkpoint in DIR against annotated objects seen (no --model)")
    add_data_arguments(what)
    out = p.add_argument_group("outputs")
    out.add_argument("-o", "--output", type=Path, default=None,
                     help="tuned checkpoint to write (default <model>_tuned.pt); with --learning-curve the "
                          "report folder (default DIR)")
    out.add_argument("--in-place", action="store_true", help="write the tuned thresholds into --model itself")
    out.add_argument("--report", type=Path, default=None,
                     help="folder for tuning.csv/json/png (default: <output stem>_tuning beside the checkpoint)")
    out.add_argument("--no-write", action="store_true", help="only report; leave the checkpoint alone")
    out.add_argument("--cache", type=Path, default=None, metavar="DIR",
                     help="keep network outputs as .npz in DIR and reuse them on the next run")
    search = p.add_argument_group("search")
    search.add_argument("--metric", choices=("ap", "f1", "seg", "dice"), default="ap",
                        help="score to maximise (default ap, at --iou)")
    search.add_argument("--iou", type=float, default=0.5, help="IoU threshold of AP and F1 (default 0.5)")
    search.add_argument("--search", choices=("coordinate", "grid"), default="coordinate",
                        help="coordinate: one threshold at a time until nothing changes (default); grid: all")
    search.add_argument("--cellprob-thresholds", nargs="+", type=float, default=None, metavar="T",
                        help="candidate cell-probability logit thresholds (default -2 -1 -0.5 0 0.5 1 2)")
    search.add_argument("--flow-thresholds", nargs="+", type=float, default=None, metavar="T",
                        help="candidate flow-consistency thresholds, 0 = off (default 0 0.2 0.4 0.6 0.8)")
    search.add_argument("--min-sizes", nargs="+", type=float, default=None, metavar="N",
                        help="candidate smallest object sizes in voxels (default 0 15 50 150)")
    search.add_argument("--min-size-fractions", nargs="+", type=float, default=None, metavar="F",
                        help="candidate min_size_fraction values (fraction of the typical object; default 0 0.1 0.2 0.3)")
    search.add_argument("--model-diameters", nargs="+", type=float, default=None, metavar="D",
                        help="also choose the model's working diameter: the object size in pixels that images are "
                             "zoomed to before the network (default: the checkpoint's own, not searched); the "
                             "network runs once per value and image, and the best value is written into the tuned "
                             "checkpoint (its train_diameter) with its thresholds")
    search.add_argument("--tune-each", action="store_true",
                        help="with --learning-curve: tune every checkpoint's thresholds before scoring it")
    add_inference_arguments(p.add_argument_group("inference (as in segment)"))
    p.set_defaults(func=run)


def add_data_arguments(group: argparse._ArgumentGroup, *, sparse: bool = True) -> None:
    """The annotated-data flags (--data/--split or --image/--labels, --channel, and --sparse unless
    ``sparse=False``, for a parser that has it already); also used by evaluate."""
    group.add_argument("--data", type=Path, metavar="MAP.json", help="dataset mapping; its --split pairs are used")
    group.add_argument("--split", choices=("val", "train", "all"), default="val",
                       help="which pairs of the mapping to use (default val)")
    group.add_argument("--image", action="append", default=[], type=Path, help="validation image (repeatable)")
    group.add_argument("--labels", action="append", default=[], type=Path,
                       help="its ground-truth labels (repeatable, in the order of --image)")
    group.add_argument("--channel", type=int, default=None, help="channel of multi-channel --image files")
    if sparse:
        group.add_argument("--sparse", action="store_true",
                           help="ground truth is partly annotated: predictions over no GT object are ignored")


def add_inference_arguments(group: argparse._ArgumentGroup) -> None:
    """The flags that say how the network runs (as in segment); also used by evaluate."""
    group.add_argument("--diameter", type=float, default=None, help="object diameter in pixels (default: estimated)")
    group.add_argument("--anisotropy", type=float, default=None,
                       help="z voxel size / xy voxel size (default: the mapping's or the file's)")
    group.add_argument("--tta", action="store_true", help="average the network over flips")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    group.add_argument("--batch-size", type=int, default=8, help="slices or tiles per network call (default 8)")
    group.add_argument("--tile", type=int, default=512,  # mediar3d.inference.tiling.DEFAULT_TILE (not imported: torch)
                   help="largest 2D window fed to the network (default 512: whole slices up to that side)")
    group.add_argument("--niter", type=int, default=200, help="flow-following steps (default 200)")


def validation_data(args: argparse.Namespace) -> list[tuple[str, Any, Any, dict[str, Any], tuple[Path, Path]]]:
    """(name, image, labels, per-image options, (image path, labels path)) of the validation images."""
    import numpy as np

    from mediar3d.io import read_image, read_labels

    if args.data is not None and (args.image or args.labels):
        raise InputError("give validation data either with --data or with --image/--labels, not both")
    items: list[tuple[str, Any, Any, dict[str, Any]]] = []
    if args.data is not None:
        from mediar3d.data.mapping import load_mapping
        from mediar3d.data.pairs import read_pair

        mapping = load_mapping(args.data)
        for dataset, pair in mapping.pairs(None if args.split == "all" else args.split):
            image, labels, anisotropy = read_pair(dataset, pair)
            items.append((f"{dataset.name}/{pair.image.name}", image, labels, {"anisotropy": anisotropy},
                          (pair.image, pair.label)))
        if not items:
            raise InputError(f"{args.data}: the {args.split} split holds no image/label pairs; use --split")
        return items
    if not args.image:
        raise InputError("no validation data: give --data MAP.json or --image IMG --labels GT pairs")
    if len(args.image) != len(args.labels):
        raise InputError(f"{len(args.image)} --image but {len(args.labels)} --labels; give one labels file per image")
    for image_path, label_path in zip(args.image, args.labels):
        image = read_image(image_path, channel=args.channel)
        if "C" in image.axes:
            raise InputError(f"{image_path}: has channels (axes {image.axes}); choose one with --channel N")
        labels = np.asarray(read_labels(label_path))
        items.append((image_path.name, image, labels, {}, (image_path, label_path)))
    return items


def segment_options(args: argparse.Namespace) -> dict[str, Any]:
    """`run_segmentation` options from the flags (anisotropy only when given)."""
    options = {"diameter": args.diameter, "tta": args.tta, "device": args.device, "batch_size": args.batch_size,
               "tile": args.tile, "niter": args.niter}
    if args.anisotropy is not None:
        options["anisotropy"] = args.anisotropy
    return options


def _grid(args: argparse.Namespace) -> dict[str, list[float]]:
    from mediar3d.inference.checks import check_number

    grid = {}
    for name, values in (("cellprob_threshold", args.cellprob_thresholds), ("flow_threshold", args.flow_thresholds),
                         ("min_size", args.min_sizes), ("min_size_fraction", getattr(args, "min_size_fractions", None))):
        if values is not None:
            for value in values:
                check_number(value, f"--{name.replace('_', '-')}s", minimum=None if name == "cellprob_threshold" else 0)
            grid[name] = values
    return grid


def _outputs(args: argparse.Namespace, data: list, options: dict[str, Any]) -> list:
    from tqdm.auto import tqdm

    from mediar3d.tuning.outputs import (
        load_outputs,
        model_fingerprint,
        outputs_key,
        predict_outputs,
        save_outputs,
    )

    outputs = []
    fingerprint = None
    if args.cache is not None:
        prints = [model_fingerprint(m) for m in args.model]
        fingerprint = prints[0] if len(prints) == 1 else prints
    for index, (name, image, labels, own, files) in enumerate(tqdm(data, desc="network", unit="image", disable=None)):
        merged = {**own, **options}
        cached = None
        if args.cache is not None:
            key = outputs_key(model=fingerprint, image=str(files[0]), labels=str(files[1]), name=name, **merged)
            size = f"_d{merged['model_diameter']:g}" if merged.get("model_diameter") is not None else ""
            file = args.cache / f"{index:03d}_{Path(name).name}{size}.npz"  # one file per model diameter
            cached = load_outputs(file, key)
        if cached is None:
            cached = predict_outputs(image, labels, _network(args.model), name=name, **merged)
            if args.cache is not None:
                save_outputs(file, cached, key)
        outputs.append(cached)
    return outputs


def _model_diameters(args: argparse.Namespace) -> list[float | None]:
    """The model diameters to try: ``--model-diameters`` (checked, in the order given), else [None] (the model's own)."""
    values = getattr(args, "model_diameters", None)
    if not values:
        return [None]
    if len(args.model) > 1:
        raise ConfigError("--model-diameters tunes one model; give a single --model")
    from mediar3d.inference.checks import check_number

    for value in values:
        check_number(value, "--model-diameters", minimum=1)
    return list(dict.fromkeys(float(v) for v in values))


def _with_model_diameter(options: dict[str, Any], model_diameter: float | None) -> dict[str, Any]:
    return options if model_diameter is None else {**options, "model_diameter": model_diameter}


def _search(args: argparse.Namespace, outputs: list) -> Any:
    """The threshold search on one set of network outputs, with a progress bar."""
    from tqdm.auto import tqdm

    from mediar3d.tuning.search import tune_thresholds

    with tqdm(desc="settings", unit="setting", disable=None) as bar:
        def advance(row: dict[str, Any]) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{args.metric} {row[args.metric]:.3f}")

        return tune_thresholds(outputs, metric=args.metric, iou=args.iou, grid=_grid(args) or None,
                               method=args.search, start=_start(args.model), sparse_gt=args.sparse,
                               progress=advance, niter=args.niter)


def _network(models: list[str]) -> str | list[str]:
    """What `predict_outputs` runs: the one model, or the ensemble of several."""
    return models[0] if len(models) == 1 else list(models)


def _start(models: list[str]) -> dict[str, float]:
    """Where the search starts: the model's own thresholds (min_size too, when the checkpoint has
    one); for an ensemble the members' mean, as `segment` uses them (keys every member has)."""
    from mediar3d.models import read_checkpoint
    from mediar3d.models.sources import resolve_source
    from mediar3d.tuning.search import PARAMETERS

    own = []
    for model in models:
        config, _ = read_checkpoint(resolve_source(model))
        own.append({k: float(v) for k, v in config.thresholds.items()
                    if k in PARAMETERS})
    shared = set.intersection(*(set(o) for o in own))
    return {k: sum(o[k] for o in own) / len(own) for k in sorted(shared)}


def _outputs_to_write(args: argparse.Namespace) -> list[Path]:
    """The tuned checkpoint of each --model (the model itself with --in-place)."""
    if args.in_place and args.output is not None:
        raise ConfigError("give either --in-place or -o/--output, not both")
    if len(args.model) > 1 and args.output is not None:
        raise ConfigError("with several --model, each tuned copy is written beside its model (<name>_tuned.pt); "
                          "leave out -o, or use --in-place")
    if not args.in_place:
        return [args.output] if args.output is not None else [_default_output(m) for m in args.model]
    from mediar3d.models.sources import package_description

    for model in args.model:
        if not Path(model).is_file() or package_description(Path(model)) is not None:
            raise InputError(f"--in-place: {model} is not a checkpoint file (bundled models and bioimage.io "
                             "packages cannot be changed); use -o")
    return [Path(m) for m in args.model]


def _default_output(model: str) -> Path:
    """Tuned copy without -o: ``<stem>_tuned.pt`` beside a checkpoint; in the working folder for a name or URL."""
    from urllib.parse import unquote, urlparse

    from mediar3d.inference.loader import bundled_model
    from mediar3d.models.sources import is_url

    if bundled_model(model) is not None:
        return Path(f"{model}_tuned.pt")
    if is_url(model):  # the file name in the URL's path, without query, digest or characters a file name avoids
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", PurePosixPath(unquote(urlparse(model).path)).stem).strip("._")
        return Path(f"{stem or 'model'}_tuned.pt")
    path = Path(model)
    return path.with_name(f"{path.stem}_tuned.pt")


def run_learning_curve(args: argparse.Namespace) -> int:
    """Score every checkpoint of --learning-curve DIR; write the table and the plot."""
    from mediar3d.tuning.learning_curve import (
        evaluate_checkpoints,
        plot_learning_curve,
        plotting_module,
        write_curve_table,
    )

    plotting_module()  # the plot is what this run is for: without matplotlib, stop before scoring
    data = validation_data(args)
    out_dir = args.output if args.output is not None else args.learning_curve
    from mediar3d.cli.guard import guard_outputs

    read = [args.data, *(p for item in data for p in item[4])]
    guard_outputs([Path(out_dir) / "learning_curve.csv", Path(out_dir) / "learning_curve.png"], read)
    options = dict(segment_options(args), progress=False)
    rows = evaluate_checkpoints(args.learning_curve, data, metric=args.metric, iou=args.iou, tune_each=args.tune_each,
                                grid=_grid(args), sparse_gt=args.sparse, segment_options=options,
                                progress=lambda r: print(f"  {Path(r['checkpoint']).name}: objects "
                                                         f"{r['objects_seen']:g}, {args.metric} {r['score']:.4f}"))
    label = f"{args.metric.upper()}@{args.iou:g}" if args.metric in ("ap", "f1") else args.metric.upper()
    table = write_curve_table(Path(out_dir) / "learning_curve.csv", rows)
    plot = plot_learning_curve(Path(out_dir) / "learning_curve.png", rows, metric_label=label)
    print(f"scored {len(rows)} checkpoints on {len(data)} images; wrote {table}, {plot}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Tune, write the report and the tuned checkpoint; returns 0."""
    from mediar3d.tuning.report import write_tuned_checkpoint, write_tuning_report

    if args.learning_curve is not None:
        if args.model is not None:
            raise ConfigError("--learning-curve scores the checkpoints of a folder; leave out --model")
        return run_learning_curve(args)
    if args.model is None:
        raise ConfigError("give --model to tune (or --learning-curve DIR)")
    from mediar3d.models.sources import pin_sha256

    args.model = pin_sha256(args.model, args.sha256)
    if not 0 < args.iou <= 1:
        raise ConfigError(f"--iou {args.iou}: must be in (0, 1]")
    _grid(args)  # candidates checked before the network runs
    _model_diameters(args)
    outputs_to_write = _outputs_to_write(args)
    report = args.report or outputs_to_write[0].with_name(f"{outputs_to_write[0].stem}_tuning")
    data = validation_data(args)
    from mediar3d.cli.guard import guard_outputs

    read = [args.data, *(p for item in data for p in item[4])]
    guard_outputs([] if args.no_write else outputs_to_write, read)
    guard_outputs([report], read, flag="--report", folders=[report])
    candidates = _model_diameters(args)
    by_diameter: dict[float | None, Any] = {}
    for model_diameter in candidates:
        if model_diameter is not None:
            print(f"model diameter {model_diameter:g} px:")
        outputs = _outputs(args, data, _with_model_diameter(segment_options(args), model_diameter))
        # the search result and the images' diameters; the network outputs are let go before the next value
        by_diameter[model_diameter] = (_search(args, outputs), {o.name: o.diameter for o in outputs})
        del outputs
    chosen = max(candidates, key=lambda d: by_diameter[d][0].score)  # first of equals: the order given
    result, diameters = by_diameter[chosen]
    settings = {"diameters": diameters,
                "model": str(args.model[0]) if len(args.model) == 1 else [str(m) for m in args.model],
                "data": str(args.data) if args.data else [str(p) for p in args.image],
                "split": args.split if args.data else None, "sparse": args.sparse, "search": args.search,
                "images": [item[0] for item in data], **{k: v for k, v in segment_options(args).items()}}
    if chosen is not None:
        settings["model_diameter"] = chosen
        settings["model_diameters"] = {f"{d:g}": by_diameter[d][0].score for d in candidates}
        for d in candidates:
            print(f"  model diameter {d:g} px: {args.metric} {by_diameter[d][0].score:.4f}"
                  f"{'  <- chosen' if d == chosen else ''}")
    written = write_tuning_report(report, result, settings)
    if not args.no_write:
        written[:0] = [write_tuned_checkpoint(m, out, result, settings, train_diameter=chosen)
                       for m, out in zip(args.model, outputs_to_write)]
    best = ", ".join(f"{k}={v:g}" for k, v in result.best.items())
    print(f"{args.metric} on {len(data)} images: {result.start_score:.4f} -> {result.score:.4f} with {best} "
          f"({len(result.rows)} settings)")
    for path in written:
        print(f"  wrote {path}")
    if len(args.model) > 1 and not args.no_write:
        members = " ".join(f"--model {p}" for p in outputs_to_write)
        print(f"  segment with the tuned ensemble: mediar3d segment IN -o OUT {members}")
    return 0
