"""`mediar3d slice-volumes`: cut annotated 3D volumes into 2D training slices along z, y and x."""

from __future__ import annotations

import argparse
import csv
import shutil
import logging
from pathlib import Path
from typing import Any

from mediar3d.cli.guard import add_skip_flag, check_anisotropy_plausible, check_memory_estimate
from mediar3d.errors import ConfigError, InputError
from mediar3d.io.paths import check_plain_name, check_writable, nearest_folder, refuse_overwriting_inputs

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Cut annotated 3D volumes into 2D image/label slice pairs along z, y and x (y and x
slices stretched to isotropic pixels by the anisotropy), leaving out slices without any
label unless --keep-empty. Writes OUTDIR/<dataset>/images and labels, a mapping JSON for
`mediar3d train` with one dataset per source dataset and orientation (named
<dataset>-z, <dataset>-y, <dataset>-x; the slices of a volume keep its train/val split,
so a volume never lands on both sides) and slices.csv listing every slice's source
volume, orientation and index.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `slice-volumes` subcommand."""
    p = subparsers.add_parser("slice-volumes", help="cut annotated 3D volumes into 2D training slices",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="examples:\n  mediar3d slice-volumes --data map3d.json -o slices/\n"
                                     "  mediar3d slice-volumes --image vol.tif --labels vol_gt.tif --anisotropy 2 "
                                     "-o slices/ --orientations z,x")
    p.add_argument("--data", type=Path, metavar="MAP.json", help="mapping whose 3D volumes to slice (all splits)")
    p.add_argument("--image", action="append", default=[], type=Path, help="volume to slice (repeatable)")
    p.add_argument("--labels", action="append", default=[], type=Path, help="its labels (repeatable, same order)")
    p.add_argument("--name", default="volumes", help="dataset name for --image/--labels volumes (default volumes)")
    p.add_argument("--split", choices=("train", "val"), default="train",
                   help="split of the --image/--labels volumes in the written mapping (default train)")
    p.add_argument("--channel", type=int, default=None, help="channel of multi-channel --image files")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="folder to write into")
    p.add_argument("--orientations", default=None, metavar="z,y,x",
                   help="slice orientations (default: each dataset's, else z,y,x)")
    p.add_argument("--anisotropy", type=float, default=None,
                   help="z voxel size / xy voxel size (default: the mapping's or the file's voxel size, else 1)")
    p.add_argument("--keep-empty", action="store_true", help="also write slices without any label")
    add_skip_flag(p)
    p.set_defaults(func=run)


def _sources(args: argparse.Namespace) -> list[tuple[Any, Any]]:
    """(DatasetEntry, Pair) of every volume to slice."""
    from mediar3d.data.mapping import DatasetEntry, Pair, load_mapping

    if args.data is not None and (args.image or args.labels):
        raise InputError("give volumes either with --data or with --image/--labels, not both")
    if args.data is not None:
        return load_mapping(args.data).pairs(None)
    if not args.image:
        raise InputError("nothing to slice: give --data MAP.json or --image VOL --labels GT pairs")
    if len(args.image) != len(args.labels):
        raise InputError(f"{len(args.image)} --image but {len(args.labels)} --labels; give one labels file per volume")
    dataset = DatasetEntry(name=args.name, pairs=[Pair(i, lab, args.split) for i, lab in zip(args.image, args.labels)],
                           channel=args.channel)
    return [(dataset, pair) for pair in dataset.pairs]


def _volume_range(image: Any, source: Path) -> tuple[float, float] | None:
    """The volume's normalisation range (training percentiles), recorded with each of its slices.

    None for a constant volume (its slices then fall back to their own normalisation).
    """
    import numpy as np

    from mediar3d.data.normalize import DEFAULT_PERCENTILES, percentile_range

    low, high = percentile_range(np.asarray(image), DEFAULT_PERCENTILES)
    if not high > low:
        logger.warning("%s: constant intensities; its slices are normalised one by one", source)
        return None
    return low, high


def _stem(path: Path) -> str:
    from mediar3d.io.naming import split_suffix

    return split_suffix(path)[0]


def run(args: argparse.Namespace) -> int:
    """Slice every volume, write the mapping and the slice table; returns 0."""
    from mediar3d.data.mapping import DatasetEntry, DatasetMapping, Pair, save_mapping
    from mediar3d.data.slicing import check_orientations, export_slices
    from mediar3d.data.pairs import read_pair
    import fastremap
    import numpy as np

    if args.anisotropy is not None and not args.anisotropy > 0:
        raise ConfigError(f"--anisotropy {args.anisotropy}: must be > 0")
    wanted = None if args.orientations is None else check_orientations(args.orientations.split(","), "--orientations")
    out = args.output
    per_dataset: dict[str, dict[str, list[Pair]]] = {}
    sources: dict[str, DatasetEntry] = {}
    table: list[dict[str, Any]] = []
    used_stems: dict[str, set[str]] = {}
    items = _sources(args)
    for dataset, _ in items:
        check_plain_name(dataset.name, "--name" if args.data is None else f"{args.data}: dataset name")
    refuse_overwriting_inputs([out], [args.data, *(p for _, pair in items for p in (pair.image, pair.label))])
    check_writable(out, directory=True)
    for dataset, pair in items:
        image, labels, anisotropy = read_pair(dataset, pair)
        if image.ndim != 3:
            raise InputError(f"{pair.image}: is 2D (shape {image.shape}); slice-volumes needs (z, y, x) volumes")
        if labels.size and int(labels.max()) > np.iinfo(np.uint32).max:
            logger.warning("%s: label ids above %d renumbered 1..N (the slices are written as uint32)",
                           pair.label, np.iinfo(np.uint32).max)
            labels = fastremap.renumber(np.ascontiguousarray(labels))[0]
        if args.anisotropy is not None:
            anisotropy = args.anisotropy
        check_anisotropy_plausible(anisotropy, given=args.anisotropy is not None, voxel_size=None, source=pair.image,
                                   skip=args.skip_size_checks)
        check_memory_estimate(slices_bytes(image.shape, anisotropy, image.itemsize + 4, wanted or dataset.orientations),
                              f"{pair.image}: its slices", skip=args.skip_size_checks,
                              available=shutil.disk_usage(nearest_folder(out)).free, resource="disk")
        sources[dataset.name] = dataset
        stems = used_stems.setdefault(dataset.name, set())
        stem = _stem(pair.image)
        while stem in stems:
            stem = f"{stem}_{len(stems)}"
        stems.add(stem)
        from mediar3d.inference.diameter import median_diameter

        diameter = median_diameter(labels, anisotropy)   # the volume's 3D diameter, kept with each slice
        intensity_range = _volume_range(image, pair.image)  # so each slice is normalised as its volume
        for orientation in wanted or dataset.orientations:
            written = export_slices(image, labels, out / dataset.name, stem=stem, orientations=[orientation],
                                    anisotropy=anisotropy, skip_empty=not args.keep_empty)
            prefix = f"{stem}_{orientation}"
            for image_path, label_path in written:
                index = int(image_path.name[len(prefix):].split(".")[0])
                per_dataset.setdefault(dataset.name, {}).setdefault(orientation, []).append(
                    Pair(image_path, label_path, pair.split, pair.weight, diameter, intensity_range))
                table.append({"image": image_path, "label": label_path, "dataset": dataset.name,
                              "orientation": orientation, "index": index, "split": pair.split,
                              "source_image": pair.image, "source_label": pair.label, "anisotropy": anisotropy})
            logger.info("%s %s: %d slices", pair.image.name, orientation, len(written))
    if not table:
        raise InputError("no slice holds a label; nothing written (use --keep-empty to write unlabelled slices)")
    entries = []
    for name, by_orientation in per_dataset.items():
        source = sources[name]
        total = sum(len(v) for v in by_orientation.values())
        for orientation, pairs in by_orientation.items():
            probability = None if source.probability is None else source.probability * len(pairs) / total
            entries.append(DatasetEntry(name=f"{name}-{orientation}", pairs=pairs, probability=probability,
                                        supervision=source.supervision, skip_empty_slices=source.skip_empty_slices))
    mapping = DatasetMapping(entries, seed=0, val_fraction=0.0)
    map_path = save_mapping(mapping, out / "mapping.json")
    csv_path = out / "slices.csv"
    from mediar3d.io import atomic_output

    with atomic_output(csv_path) as temp, open(temp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        for row in table:
            writer.writerow({k: (v.relative_to(out).as_posix() if isinstance(v, Path) and v.is_relative_to(out)
                                 else v) for k, v in row.items()})
    counts = {e.name: len(e.pairs) for e in entries}
    print(f"wrote {len(table)} slice pairs ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    print(f"  wrote {map_path}\n  wrote {csv_path}")
    return 0


def slices_bytes(shape: tuple[int, ...], anisotropy: float, bytes_per_voxel: int, orientations) -> float:
    """Uncompressed bytes of the image + label slices of a (z, y, x) volume (y and x slices stretched in z)."""
    z, y, x = shape[-3:]
    stretched = z * max(float(anisotropy), 1.0)
    per = {"z": z * y * x, "y": y * stretched * x, "x": x * stretched * y}
    return sum(per[o] for o in orientations) * bytes_per_voxel
