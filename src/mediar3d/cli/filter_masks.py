"""`mediar3d filter-masks`: keep only the predicted masks that contain a detected cell centre."""

from __future__ import annotations

import argparse
from pathlib import Path

from mediar3d.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `filter-masks` subcommand."""
    p = subparsers.add_parser(
        "filter-masks", help="drop predicted masks that contain no detected centre (points or markers)",
        description="Detection-guided filtering: drop every mask of a label volume that contains none of the given "
                    "cell centres. Centres come from a CSV point list (columns z,y,x or napari's axis-0,axis-1,"
                    "axis-2, in pixels; without a header the last three columns) or from a marker image of the "
                    "same shape (any non-zero voxel is a centre).",
        epilog="example: mediar3d filter-masks nuclei_labels.tif --points centres.csv -o nuclei_filtered.tif")
    p.add_argument("labels", type=Path, help="instance label volume (.tif, .zarr)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--points", type=Path, metavar="CSV", help="centres as a CSV point list")
    source.add_argument("--markers", type=Path, metavar="IMAGE", help="marker label image of the same shape")
    p.add_argument("-o", "--output", required=True, type=Path, help="filtered labels file to write")
    p.add_argument("--renumber", action="store_true", help="relabel the kept masks 1..N (default: keep ids)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Filter and write the labels; returns 0."""
    import fastremap
    import numpy as np

    from mediar3d.io import read_image, read_labels, write_labels
    from mediar3d.postprocess.detection_filter import (
        filter_by_markers,
        filter_by_points,
        read_points_csv,
    )

    if args.output.resolve() == args.labels.resolve():
        raise InputError(f"output {args.output} is the input; write the filtered labels to a new file")
    labels = np.asarray(read_labels(args.labels))
    voxel_size = read_image(args.labels).voxel_size
    if args.points is not None:
        points = read_points_csv(args.points, ndim=labels.ndim)
        filtered = filter_by_points(labels, points, renumber=args.renumber)
        source = f"{len(points)} points"
    else:
        markers = np.asarray(read_image(args.markers).data)
        filtered = filter_by_markers(labels, markers, renumber=args.renumber)
        source = f"markers {args.markers.name}"
    before = int(np.count_nonzero(fastremap.unique(labels)))
    after = int(np.count_nonzero(fastremap.unique(filtered)))
    write_labels(args.output, filtered, voxel_size=voxel_size)
    print(f"kept {after} of {before} masks that contain a centre ({source}); wrote {args.output}")
    return 0
