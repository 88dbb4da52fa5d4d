"""`mediar3d segment`: segment a volume (or a 2D image) into instance labels."""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mediar3d.cli.guard import (
    add_skip_flag,
    check_file_anisotropy,
    check_volume_size,
    existing_files,
    guard_outputs,
    segment_outputs,
)
from mediar3d.errors import InputError

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `segment` subcommand's parser (its function is set by `mediar3d.cli.segment_batch.register`)."""
    p = subparsers.add_parser(
        "segment", help="segment a volume into 3D instance labels",
        description="Segment cells or nuclei in a 3D volume (TIFF, OME-TIFF, Zarr, OME-Zarr) or a 2D image. "
                    "A 2D network predicts flows on slices along z, y and x; they are combined into a 3D flow "
                    "field and followed to instance masks. Writes labels, the resolved parameters (JSON) and, "
                    "on request, flows, probability and a preview PNG.",
        epilog="examples:\n  mediar3d segment --sample -o mediar3d-demo/\n"
               "  mediar3d segment --sample cells --model my_cells_model.pt -o cells-demo/\n"
               "  mediar3d segment nuclei.tif -o nuclei_labels.tif --anisotropy 2 --preview\n"
               "  mediar3d segment data/ -o results/      # every image in data/, then results/summary.csv\n"
               "  mediar3d segment big.ome.zarr -o out/ --diameter 25 --device cuda",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="images or volumes to segment: files (TIFF, Zarr, OME-Zarr, HDF5 as file.h5:/dataset), "
                        "folders (their .tif/.tiff/.h5/.zarr images) or glob patterns in quotes ('data/*.tif'); "
                        "the model is loaded once (omit with --sample)")
    p.add_argument("-o", "--output", required=True,
                   help="labels file (.tif, .tiff, .ome.tif, .zarr) for one input, or a folder to write "
                        "<name>_labels.tif into (several inputs: a folder, which also gets summary.csv); for an "
                        "OME-Zarr input, IMAGE.ome.zarr/labels/NAME writes the labels into the image (NGFF labels)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing labels; without it a single input whose labels exist is refused and, "
                        "with several inputs, those already done are skipped")
    p.add_argument("--sample", nargs="?", const="auto", default=None, choices=("auto", "nuclei", "cells"),
                   help="segment a bundled sample volume (no input needed): nuclei or cells (membrane-stained); "
                        "without a value, the one that fits --model (cells for --model cells, else nuclei)")
    p.add_argument("--model", action="append", default=None,
                   help="bundled model (default/nuclei: nuclear stain; cells: stained membranes or cell walls), "
                        "checkpoint path, bioimage.io package (.zip) or https URL#sha256=<hex> "
                        "(default: the nuclei model); repeat it for an ensemble "
                        "whose flows and probabilities are averaged before post-processing (members must share "
                        "normalisation and training diameter)")
    p.add_argument("--sha256", default=None, metavar="HEX",
                   help="sha256 of the --model file (64 hex digits), checked before it is used; for an https URL "
                        "the same as URL#sha256=HEX")
    p.add_argument("--channel", type=int, default=None, help="channel index to segment in a multi-channel file")
    p.add_argument("--channels", default=None, metavar="C1,C2",
                   help="channels to use, in the order the model was trained with, for a model with several input "
                        "channels (e.g. 0,1: nuclei, membrane; 0,1,2: RGB); default: all channels, repeated ones "
                        "collapsed, an RGB image averaged for a one-channel model")
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
    p.add_argument("--tile", type=int, default=512,  # mediar3d.inference.tiling.DEFAULT_TILE (not imported: torch)
                   help="largest 2D window fed to the network (default 512: whole slices up to that side)")
    p.add_argument("--batch-size", type=int, default=8, help="slices or tiles per network call (default 8)")
    p.add_argument("--tta", action="store_true",
                   help="average over flips, flow signs corrected (4x slower; 8x for a 3D network)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--save-flows", action="store_true",
                   help="also write <name>_flows.tif (dz, dy, dx) and <name>_prob.tif")
    p.add_argument("--preview", nargs="?", const="auto", default=None, metavar="PNG",
                   help="write a preview PNG (mid slices, max projection, outlines); "
                        "without a value: <name>_preview.png beside the labels (on by default with --sample)")
    p.add_argument("--timepoints", action="store_true",
                   help="segment every time point of a time-lapse (TZYX) file on its own: <name>_t0000_labels.tif, "
                        "<name>_t0001_labels.tif, ... (no tracking between time points)")
    p.add_argument("--measure", action="store_true",
                   help="also write <name>_objects.csv: one row per object with its size, centroid and bounding box "
                        "(voxels, and um / um^3 when the file has a voxel size), intensity statistics and whether "
                        "it touches the border")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_skip_flag(p)
    g = p.add_argument_group("large volumes: block-wise on Dask (the [dask] extra)")
    g.add_argument("--blocks", choices=("auto", "on", "off"), default="auto",
                   help="segment block by block with labels stitched across blocks: on, off, or auto = for a "
                        "Zarr or TIFF input whose whole-volume run is estimated to need more than 80%% of the memory "
                        "free (default auto; it says so); labels then go to <name>_labels.ome.zarr or the given "
                        ".zarr path")
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
    return p


def _output_paths(output: str, stem: str) -> tuple[Path, Path]:
    """(labels path, prefix for side outputs) from -o OUT and the input's stem."""
    from mediar3d.io.naming import image_suffix, split_suffix
    from mediar3d.io.ngff_labels import ngff_labels_target

    out = Path(output)
    into = ngff_labels_target(out)
    if into is not None:  # image.ome.zarr/labels/NAME: side outputs beside the image store
        return out, into[0].parent / f"{_stem(into[0])}_{into[1]}"
    if image_suffix(out) is not None:
        return out, out.with_name(split_suffix(out)[0])
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out}: exists and is not a folder; give a .tif/.zarr labels path or a folder")
    if not out.is_dir() and re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]{0,4}", out.suffix):
        raise InputError(f"output {out}: labels are written as .tif, .tiff, .ome.tif or .zarr, not {out.suffix}; "
                         "give one of those or a folder")
    return out / f"{stem}_labels.tif", out / stem


def _stem(path: Path) -> str:
    from mediar3d.io.hdf5 import split_hdf5_path
    from mediar3d.io.naming import split_suffix

    hdf5 = split_hdf5_path(path)
    if hdf5 is not None:
        return hdf5[0].stem
    return split_suffix(path)[0]


def _model(args: argparse.Namespace) -> str | list[str] | None:
    """The --model value(s): None (bundled model), one name / path, or a list of them (an ensemble)."""
    models = args.model or []
    if len(models) > 1:
        return list(models)
    return models[0] if models else None


def segment_file(args: argparse.Namespace, source: Path, labels_path: Path, prefix: Path, model: Any,
                 status: Callable[[str], None], timepoint: int | None = None) -> dict[str, Any]:
    """Read, segment and write one input with an already loaded `model`; returns a summary row.

    Args:
        args: Parsed `segment` arguments.
        source: Input file or Zarr store.
        labels_path: Labels output (.tif / .zarr).
        prefix: Path prefix of the side outputs (``<prefix>_params.json``...).
        model: A loaded `mediar3d.inference.loader.InferenceModel` (loaded once per run).
        status: Prints one status line.
        timepoint: Time point to segment in a file with a time axis (--timepoints), else None.

    Returns:
        Row fields: objects, diameter, time_read_s, time_segment_s, time_write_s, written (paths).
    """
    import numpy as np

    from mediar3d.inference import run_segmentation
    from mediar3d.inference.provenance import provenance
    from mediar3d.io import atomic_output, output_set, read_image, write_image

    outputs = segment_outputs(labels_path, prefix, save_flows=args.save_flows, preview=args.preview,
                              measure=args.measure)
    _guard(outputs, source, args)
    start = time.perf_counter()
    image = read_image(source, channel=args.channel) if timepoint is None else _read_timepoint(source, args.channel,
                                                                                               timepoint)
    name = _display_name(source) if timepoint is None else f"{_display_name(source)} t={timepoint}"
    image = _model_channels(image, args, model, source)
    spatial_ndim = len(image.spatial_shape)
    mode = args.mode
    if mode == "auto":
        mode = "3d" if spatial_ndim == 3 else "2d"
    if mode in ("3d", "z-only") and spatial_ndim != 3:
        raise InputError(f"{source}: is 2D (shape {image.data.shape}); --mode {mode} needs a (z, y, x) volume")
    check_volume_size(image, args.anisotropy, source, skip=args.skip_size_checks or mode == "2d")
    read_time = time.perf_counter() - start
    status(f"read {name}: {'x'.join(map(str, image.data.shape))} {image.data.dtype}, "
           f"voxel size {_voxel_text(image.voxel_size)} ({read_time:.1f} s)")
    status(f"segmenting {name} ({mode})")
    result = run_segmentation(
        image, model, diameter=args.diameter, anisotropy=args.anisotropy, do_3d=(mode != "2d"),
        z_only=(mode == "z-only"), tile=args.tile, batch_size=args.batch_size, tta=args.tta, device=args.device,
        keep_flows=args.save_flows, progress=not (args.no_progress or args.quiet),
        status=lambda phase: status(f"{name}: {phase}"),
        cellprob_threshold=args.cellprob_threshold, flow_threshold=args.flow_threshold, min_size=args.min_size,
        min_size_fraction=args.min_size_fraction, niter=args.niter)
    params = result.params
    if args.channels is not None:  # the file's channels, as chosen (the Image passed on holds only those)
        from mediar3d.data.channels import parse_channels

        params["channels"] = list(parse_channels(args.channels, "--channels"))
    diameter = params.get("diameter")
    status(f"segmented {name}: {params['n_objects']} objects; diameter "
           f"{'n/a' if diameter is None else f'{diameter:.1f} px'}"
           f"{' (estimated)' if params.get('diameter_estimated') else ''} {params.get('time_diameter_s', 0):.1f} s, "
           f"network {params.get('time_network_s', 0):.1f} s, post-processing {params.get('time_postprocess_s', 0):.1f} s")

    write_start = time.perf_counter()
    written = []
    with output_set(outputs):  # all or none, also on Ctrl-C / SIGTERM
        _write_labels(labels_path, result.labels, image.voxel_size, args.overwrite)
        written.append(labels_path)
        if args.save_flows:
            flows_path, prob_path = Path(f"{prefix}_flows.tif"), Path(f"{prefix}_prob.tif")
            write_image(flows_path, result.flows.astype(np.float32), voxel_size=image.voxel_size)
            write_image(prob_path, result.probability.astype(np.float32), voxel_size=image.voxel_size)
            written += [flows_path, prob_path]
        if args.measure:
            from mediar3d.measurement import measure, write_table_csv

            measure_start = time.perf_counter()
            objects_path = Path(f"{prefix}_objects.csv")
            write_table_csv(objects_path, measure(result.labels, _first_channel(image), voxel_size=image.voxel_size))
            written.append(objects_path)
            status(f"measured {params['n_objects']} objects of {name}"
                   f"{'' if image.voxel_size else ' (no voxel size in the file: voxel units only)'} "
                   f"({time.perf_counter() - measure_start:.1f} s)")
        if args.preview:
            from mediar3d.inference.preview import render_preview

            preview_path = Path(f"{prefix}_preview.png") if args.preview == "auto" else Path(args.preview)
            render_preview(preview_path, _first_channel(image), result.labels, anisotropy=params["anisotropy"],
                           title=f"{name}: {params['n_objects']} objects")
            written.append(preview_path)
        params_path = Path(f"{prefix}_params.json")
        record = dict(params, input=str(source), timepoint=timepoint, labels=str(labels_path),
                      command="mediar3d segment", **provenance(_model(args), getattr(args, "argv", None)))
        with atomic_output(params_path) as temp:
            temp.write_text(json.dumps(record, indent=2) + "\n")
        written.append(params_path)
    write_time = time.perf_counter() - write_start
    status(f"wrote {len(written)} files for {name} ({write_time:.1f} s)")
    return {"objects": params["n_objects"], "diameter": diameter, "time_read_s": read_time,
            "time_segment_s": params["time_total_s"], "time_write_s": write_time, "written": written,
            "shape": result.labels.shape}


def _guard(outputs: list[Path], source: Path, args: argparse.Namespace, *, replaced: list[Path] | None = None) -> None:
    """Refuse outputs that resolve to the input or a --model file, or cannot be written, before reading.

    Labels written into an OME-Zarr image's ``labels/`` group belong inside that input: only the
    side outputs are checked against it.
    """
    from mediar3d.io.ngff_labels import ngff_labels_target

    if ngff_labels_target(outputs[0]) is not None:
        outputs = outputs[1:]
    elif replaced is None:
        replaced = [outputs[0]] if outputs[0].name.lower().endswith(".zarr") else []
    guard_outputs(outputs, [source, *existing_files(args.model)], replaced=replaced or [])


def _write_labels(path: Path, labels: Any, voxel_size: tuple[float, ...] | None, overwrite: bool) -> None:
    """Labels to a TIFF / Zarr file, or into ``image.ome.zarr/labels/NAME`` of an OME-Zarr image (NGFF)."""
    from mediar3d.io import write_labels
    from mediar3d.io.ngff_labels import ngff_labels_target, write_ngff_labels

    into = ngff_labels_target(path)
    if into is None:
        write_labels(path, labels, voxel_size=voxel_size)
    else:
        write_ngff_labels(into[0], into[1], labels, overwrite=overwrite)


def _display_name(source: Path) -> str:
    """File name for status lines (``a.h5:/raw`` for a dataset in an HDF5 file)."""
    from mediar3d.io.hdf5 import split_hdf5_path

    hdf5 = split_hdf5_path(source)
    return source.name if hdf5 is None or hdf5[1] is None else f"{hdf5[0].name}:{hdf5[1]}"


def _model_channels(image: Any, args: argparse.Namespace, model: Any, source: Path) -> Any:
    """The Image with the channels the model takes (--channels, `mediar3d.data.channels` rules); one-line errors."""
    import numpy as np

    from mediar3d.data.channels import parse_channels, prepare_channels
    from mediar3d.io import Image

    if args.channels is not None and args.channel is not None:
        raise InputError("give --channel (one) or --channels (several), not both")
    channels = parse_channels(args.channels, "--channels")
    if "C" not in image.axes and channels is None:
        return image
    data = prepare_channels(np.asarray(image.data), has_channels="C" in image.axes, channels=channels,
                            in_channels=int(getattr(model, "in_channels", 1)), source=str(source))
    spatial = "".join(a for a in image.axes if a != "C")
    if data.shape[0] == 1:
        return Image(data=data[0], axes=spatial, voxel_size=image.voxel_size, path=image.path)
    return Image(data=data, axes="C" + spatial, voxel_size=image.voxel_size, path=image.path)


def _first_channel(image: Any) -> Any:
    """The intensities measured and previewed: the first channel of a multi-channel Image."""
    return image.data[0] if "C" in image.axes else image.data


def _read_timepoint(source: Path, channel: int | None, timepoint: int) -> Any:
    """One time point of a file with a time axis, as a `mediar3d.io.Image` (z, y, x)."""
    import numpy as np

    from mediar3d.io import Image, open_image_lazy

    lazy = open_image_lazy(source)
    view = lazy.view(channel, timepoint)
    data = np.asarray(view[tuple(slice(None) for _ in view.shape)])
    return Image(data=data, axes=view.axes, voxel_size=lazy.voxel_size, path=source)


def _voxel_text(voxel_size: tuple[float, ...] | None) -> str:
    return "unknown" if voxel_size is None else " x ".join(f"{v:g}" for v in voxel_size) + " um"


def _use_blocks(args: argparse.Namespace, source: Path, status: Callable[[str], None] | None = None) -> bool:
    """Whether to segment block-wise: --blocks on/off, or auto for a Zarr / TIFF input whose whole-volume
    run would need more memory than this machine has free (said in one line through ``status``)."""
    from mediar3d.io import image_format

    if args.blocks == "off" or getattr(args, "timepoints", False):
        return False
    if image_format(source) not in ("zarr", "tiff"):
        if args.blocks == "on":
            raise InputError(f"{source}: --blocks needs a Zarr, OME-Zarr or TIFF input")
        return False
    if args.blocks == "on":
        return True
    import numpy as np

    from mediar3d.distributed.grid import exceeds_memory, whole_volume_memory
    from mediar3d.io.naming import anisotropy_from_voxel_size

    if image_format(source) == "tiff":  # the header is enough (no zarr import for a TIFF run)
        from mediar3d.io.tiff import tiff_header

        shape, dtype, voxel = tiff_header(source)
        voxel_size = tuple(voxel[a] for a in "ZYX") if all(a in voxel for a in "ZYX") else None
    else:
        from mediar3d.io import open_image_lazy

        lazy = open_image_lazy(source)
        shape, dtype, voxel_size = lazy.array.shape, lazy.array.dtype, lazy.voxel_size
    anisotropy = args.anisotropy if args.anisotropy is not None else anisotropy_from_voxel_size(voxel_size)
    # The zoom to the model's object size is not known before the diameter is: taken as 1.
    needed, available = whole_volume_memory(shape, anisotropy=float(anisotropy or 1.0),
                                            input_itemsize=np.dtype(dtype).itemsize)
    if not exceeds_memory(needed, available):
        return False
    if status is not None:
        status(f"{source.name}: a whole-volume run needs ~{needed / 1e9:.1f} GB, {available / 1e9:.1f} GB free: "
               "segmenting in blocks (--blocks off runs it whole)")
    return True


def blocks_labels_path(args: argparse.Namespace, source: Path, labels_path: Path) -> Path:
    """Where block-wise labels go: the given .zarr path, else <name>_labels.ome.zarr beside the TIFF path."""
    from mediar3d.io.ngff_labels import ngff_labels_target

    if args.mode not in ("auto", "3d"):
        raise InputError(f"--mode {args.mode}: block-wise segmentation runs the 3D pipeline only")
    if ngff_labels_target(labels_path) is not None:
        raise InputError(f"{labels_path}: block-wise labels cannot go into an image's labels/ yet; give a .zarr path")
    if labels_path.name.lower().endswith(".zarr"):
        return labels_path
    if Path(args.output).name.lower().endswith((".tif", ".tiff")):
        raise InputError(f"{args.output}: block-wise labels are written to Zarr; give a .zarr path or a folder")
    return labels_path.with_name(f"{_stem(source)}_labels.ome.zarr")


def segment_blocks_file(args: argparse.Namespace, source: Path, labels_path: Path, prefix: Path,
                        status: Callable[[str], None]) -> dict[str, Any]:
    """Block-wise segmentation of one input on Dask, labels written to Zarr (and with --measure
    ``<prefix>_objects.csv``, measured slab by slab); returns a summary row."""
    from mediar3d.distributed import segment_blocks

    def zyx(values):
        return None if values is None else (values[0] if len(values) == 1 else tuple(values))

    if args.channels is not None:
        raise InputError(f"{source}: --channels is not available for block-wise runs yet; use --blocks off")
    work = Path(f"{labels_path}.work")
    objects_path = Path(f"{prefix}_objects.csv")
    _guard([labels_path, work, *([objects_path] if args.measure else [])], source, args, replaced=[labels_path, work])
    check_file_anisotropy(source, args.anisotropy, skip=args.skip_size_checks)
    status(f"segmenting {source.name} block by block")
    result = segment_blocks(
        str(source), labels_path, model=_model(args), diameter=args.diameter, anisotropy=args.anisotropy,
        channel=args.channel, block_size=zyx(args.block_size), halo=zyx(args.halo), scheduler=args.scheduler,
        workers=args.workers, threads_per_worker=args.threads_per_worker, memory_limit=args.memory_limit,
        resume=not args.restart, overwrite=True, progress=not (args.no_progress or args.quiet),
        segment_options=dict(cellprob_threshold=args.cellprob_threshold, flow_threshold=args.flow_threshold,
                             min_size=args.min_size, min_size_fraction=args.min_size_fraction, niter=args.niter,
                             tile=args.tile, batch_size=args.batch_size,
                             tta=args.tta, device=args.device))
    status(f"segmented {source.name}: {result.n_labels} objects in {result.n_blocks} blocks, {result.merges} "
           f"pieces joined across block faces; " + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()))
    written = [result.output]
    write_time = 0.0
    if args.measure:
        from mediar3d.io import open_image_lazy, open_zarr_lazy
        from mediar3d.measurement import write_table_csv
        from mediar3d.measurement.slabs import measure_slabs

        start = time.perf_counter()
        lazy = open_image_lazy(source)
        table = measure_slabs(open_zarr_lazy(result.output), lazy.view(args.channel), voxel_size=lazy.voxel_size)
        write_table_csv(objects_path, table)
        written.append(objects_path)
        write_time = time.perf_counter() - start
        status(f"measured {len(table['label'])} objects of {source.name} slab by slab ({write_time:.1f} s)")
    return {"objects": result.n_labels, "diameter": args.diameter, "time_read_s": 0.0,
            "time_segment_s": sum(result.seconds.values()), "time_write_s": write_time, "written": written,
            "detail": f"{result.n_blocks} blocks, {result.merges} pieces joined across block faces"}
