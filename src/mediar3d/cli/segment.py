"""`mediar3d segment`: segment a volume (or a 2D image) into instance labels."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from mediar3d.errors import InputError

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `segment` subcommand."""
    p = subparsers.add_parser(
        "segment", help="segment a volume into 3D instance labels",
        description="Segment cells or nuclei in a 3D volume (TIFF, OME-TIFF, Zarr, OME-Zarr) or a 2D image. "
                    "A 2D network predicts flows on slices along z, y and x; they are combined into a 3D flow "
                    "field and followed to instance masks. Writes labels, the resolved parameters (JSON) and, "
                    "on request, flows, probability and a preview PNG.",
        epilog="examples:\n  mediar3d segment --sample -o mediar3d-demo/\n"
               "  mediar3d segment nuclei.tif -o nuclei_labels.tif --anisotropy 2 --preview\n"
               "  mediar3d segment big.ome.zarr -o out/ --diameter 25 --device cuda",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", help="image or volume to segment (omit with --sample)")
    p.add_argument("-o", "--output", required=True,
                   help="labels file (.tif, .tiff, .ome.tif, .zarr) or a folder to write <name>_labels.tif into")
    p.add_argument("--sample", action="store_true", help="segment the bundled sample volume (no input needed)")
    p.add_argument("--model", action="append", default=None,
                   help="bundled model name or checkpoint path (default: bundled model); repeat it for an ensemble "
                        "whose flows and probabilities are averaged before post-processing (members must share "
                        "normalisation and training diameter)")
    p.add_argument("--channel", type=int, default=None, help="channel index to segment in a multi-channel file")
    p.add_argument("--mode", choices=("auto", "3d", "z-only", "2d"), default="auto",
                   help="3d: slices along z, y, x (Algorithm 1); z-only: z-slices stitched; 2d: one image; "
                        "auto: 3d for volumes, 2d for images (default)")
    p.add_argument("--anisotropy", type=float, default=None,
                   help="z voxel size / xy voxel size (default: from the file's voxel size, else 1)")
    p.add_argument("--diameter", type=float, default=None,
                   help="typical object diameter in xy pixels: for a volume, the diameter of the ball of a "
                        "typical nucleus' volume, what one measures across it (default: estimated)")
    p.add_argument("--cellprob-threshold", type=float, default=None,
                   help="cell-probability logit threshold (default: the model's, e.g. tuned by `mediar3d tune`, "
                        "else 0)")
    p.add_argument("--flow-threshold", type=float, default=None,
                   help="maximum flow-consistency error of a mask (default: the model's, else 0.4)")
    p.add_argument("--min-size", type=float, default=None,
                   help="smallest object kept, in voxels (default: the model's, else 15)")
    p.add_argument("--min-size-fraction", type=float, default=None,
                   help="drop objects smaller than this fraction of the typical object's volume "
                        "(removes fragments; default: the model's, else 0)")
    p.add_argument("--niter", type=int, default=200, help="flow-following steps (default 200)")
    p.add_argument("--tile", type=int, default=256, help="largest 2D window fed to the network (default 256)")
    p.add_argument("--batch-size", type=int, default=8, help="slices or tiles per network call (default 8)")
    p.add_argument("--tta", action="store_true",
                   help="average over flips, flow signs corrected (4x slower; 8x for a 3D network)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--save-flows", action="store_true",
                   help="also write <name>_flows.tif (dz, dy, dx) and <name>_prob.tif")
    p.add_argument("--preview", nargs="?", const="auto", default=None, metavar="PNG",
                   help="write a preview PNG (mid slices, max projection, outlines); "
                        "without a value: <name>_preview.png beside the labels (on by default with --sample)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    g = p.add_argument_group("large volumes: block-wise on Dask (the [dask] extra)")
    g.add_argument("--blocks", choices=("auto", "on", "off"), default="auto",
                   help="segment block by block with labels stitched across blocks: on, off, or auto = for a "
                        "Zarr input whose estimated working memory exceeds half of this machine's RAM "
                        "(default auto); labels then go to <name>_labels.ome.zarr or the given .zarr path")
    g.add_argument("--block-size", type=int, nargs="+", default=None, metavar="N",
                   help="core block size in voxels, one value or z y x (default: the largest that fits --memory-limit)")
    g.add_argument("--halo", type=int, nargs="+", default=None, metavar="N",
                   help="context read around each block in voxels, one value or z y x "
                        "(default 1.5 x diameter; must exceed the largest object)")
    g.add_argument("--workers", type=int, default=2, help="local Dask worker processes (default 2)")
    g.add_argument("--threads-per-worker", type=int, default=1, help="blocks each local worker runs at once (default 1)")
    g.add_argument("--memory-limit", default=None, help="memory per local worker, e.g. 8GB (default: RAM / workers)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running Dask scheduler (tcp://host:8786) to use instead of a local cluster")
    g.add_argument("--restart", action="store_true",
                   help="start over instead of resuming the finished blocks of an interrupted run (<output>.work)")
    p.set_defaults(func=run)


def _output_paths(output: str, stem: str) -> tuple[Path, Path]:
    """(labels path, prefix for side outputs) from -o OUT and the input's stem."""
    from mediar3d.io.naming import image_suffix, split_suffix

    out = Path(output)
    if image_suffix(out) is not None:
        return out, out.with_name(split_suffix(out)[0])
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out}: exists and is not a folder; give a .tif/.zarr labels path or a folder")
    return out / f"{stem}_labels.tif", out / stem


def _stem(path: Path) -> str:
    from mediar3d.io.naming import split_suffix

    return split_suffix(path)[0]


def _model(args: argparse.Namespace) -> str | list[str] | None:
    """The --model value(s): None (bundled model), one name / path, or a list of them (an ensemble)."""
    models = args.model or []
    if len(models) > 1:
        return list(models)
    return models[0] if models else None


def run(args: argparse.Namespace) -> int:
    """Segment, write outputs, print a summary; returns 0."""
    import numpy as np

    from mediar3d.inference import run_segmentation
    from mediar3d.io import read_image, write_image, write_labels

    if args.sample == bool(args.input):
        raise InputError("give exactly one input: a file to segment, or --sample")
    if args.sample:
        from mediar3d.sample import sample_path

        source = sample_path()
        if args.preview is None:
            args.preview = "auto"
    else:
        source = Path(args.input)
    labels_path, prefix = _output_paths(args.output, _stem(source))
    if not args.sample and _use_blocks(args, source):
        return _run_blocks(args, source, labels_path)
    image = read_image(source, channel=args.channel)
    if "C" in image.axes:
        raise InputError(f"{source}: has {image.n_channels} channels (axes {image.axes}); choose one with --channel N")
    mode = args.mode
    if mode == "auto":
        mode = "3d" if image.data.ndim == 3 else "2d"
    if mode in ("3d", "z-only") and image.data.ndim != 3:
        raise InputError(f"{source}: is 2D (shape {image.data.shape}); --mode {mode} needs a (z, y, x) volume")
    result = run_segmentation(
        image, _model(args), diameter=args.diameter, anisotropy=args.anisotropy, do_3d=(mode != "2d"),
        z_only=(mode == "z-only"), tile=args.tile, batch_size=args.batch_size, tta=args.tta, device=args.device,
        keep_flows=args.save_flows, progress=not args.no_progress, cellprob_threshold=args.cellprob_threshold,
        flow_threshold=args.flow_threshold, min_size=args.min_size, min_size_fraction=args.min_size_fraction,
        niter=args.niter)

    written = []
    write_labels(labels_path, result.labels, voxel_size=image.voxel_size)
    written.append(labels_path)
    if args.save_flows:
        flows_path, prob_path = Path(f"{prefix}_flows.tif"), Path(f"{prefix}_prob.tif")
        write_image(flows_path, result.flows.astype(np.float32), voxel_size=image.voxel_size)
        write_image(prob_path, result.probability.astype(np.float32), voxel_size=image.voxel_size)
        written += [flows_path, prob_path]
    if args.preview:
        from mediar3d.inference.preview import render_preview

        preview_path = Path(f"{prefix}_preview.png") if args.preview == "auto" else Path(args.preview)
        render_preview(preview_path, image.data, result.labels, anisotropy=result.params["anisotropy"],
                       title=f"{source.name}: {result.params['n_objects']} objects")
        written.append(preview_path)
    params_path = Path(f"{prefix}_params.json")
    params = dict(result.params, input=str(source), labels=str(labels_path), command="mediar3d segment")
    from mediar3d.io import atomic_output

    with atomic_output(params_path) as temp:
        temp.write_text(json.dumps(params, indent=2) + "\n")
    written.append(params_path)

    n = result.params["n_objects"]
    print(f"found {n} {'cell' if n == 1 else 'cells'} in {source.name} "
          f"({'x'.join(map(str, result.labels.shape))}, {result.params['time_total_s']:.1f} s)")
    for path in written:
        print(f"  wrote {path}")
    return 0


def _use_blocks(args: argparse.Namespace, source: Path) -> bool:
    """Whether to segment block-wise: --blocks on/off, or auto for large Zarr inputs."""
    from mediar3d.io.zarr_io import is_zarr

    if args.blocks == "off":
        return False
    if not is_zarr(source):
        if args.blocks == "on":
            raise InputError(f"{source}: --blocks needs a Zarr / OME-Zarr input (write the volume as .zarr first)")
        return False
    if args.blocks == "on":
        return True
    from mediar3d.distributed import should_use_blocks
    from mediar3d.io import open_zarr_lazy

    return should_use_blocks(open_zarr_lazy(source).shape)


def _run_blocks(args: argparse.Namespace, source: Path, labels_path: Path) -> int:
    """Block-wise segmentation on Dask; labels written to Zarr."""
    from mediar3d.distributed import segment_blocks

    if args.mode not in ("auto", "3d"):
        raise InputError(f"--mode {args.mode}: block-wise segmentation runs the 3D pipeline only")
    if not labels_path.name.lower().endswith(".zarr"):
        if Path(args.output).name.lower().endswith((".tif", ".tiff")):
            raise InputError(f"{args.output}: block-wise labels are written to Zarr; give a .zarr path or a folder")
        labels_path = labels_path.with_name(f"{_stem(source)}_labels.ome.zarr")

    def zyx(values):
        return None if values is None else (values[0] if len(values) == 1 else tuple(values))

    result = segment_blocks(
        str(source), labels_path, model=_model(args), diameter=args.diameter, anisotropy=args.anisotropy,
        channel=args.channel, block_size=zyx(args.block_size), halo=zyx(args.halo), scheduler=args.scheduler,
        workers=args.workers, threads_per_worker=args.threads_per_worker, memory_limit=args.memory_limit,
        resume=not args.restart, overwrite=True, progress=not args.no_progress,
        segment_options=dict(cellprob_threshold=args.cellprob_threshold, flow_threshold=args.flow_threshold,
                             min_size=args.min_size, min_size_fraction=args.min_size_fraction, niter=args.niter,
                             tile=args.tile, batch_size=args.batch_size,
                             tta=args.tta, device=args.device))
    print(f"found {result.n_labels} cells in {source.name} ({result.n_blocks} blocks, "
          f"{result.merges} pieces joined across block faces, {sum(result.seconds.values()):.1f} s)")
    print(f"  wrote {result.output}")
    return 0
