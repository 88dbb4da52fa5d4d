"""`mediar3d simulate-partial`: make partly annotated copies of label volumes for few-shot experiments."""

from __future__ import annotations

import argparse
from pathlib import Path

from mediar3d.errors import ConfigError, InputError

DESCRIPTION = """\
Simulate partial annotation: keep a seeded fraction (or number) of the objects of each
label volume and erase the rest. With --labels FILE -o FILE one file is written. With
--data MAP.json -o OUTDIR every train pair gets partial labels in OUTDIR/<dataset>/labels
(val pairs keep their full labels, for honest evaluation) and OUTDIR/mapping.json points
at them, with the supervision mode set to --supervision where the source was fully
annotated. Each file's draw depends only on --seed and the file name.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `simulate-partial` subcommand."""
    p = subparsers.add_parser("simulate-partial", help="keep a seeded fraction of the annotated objects",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="examples:\n  mediar3d simulate-partial --labels gt.tif --fraction 0.1 -o gt10.tif\n"
                                     "  mediar3d simulate-partial --data map.json --count 20 -o partial20/")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", type=Path, help="one label file")
    source.add_argument("--data", type=Path, metavar="MAP.json", help="a dataset mapping (train pairs are thinned)")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--fraction", type=float, help="share of the objects to keep per file, 0..1")
    amount.add_argument("--count", type=int, help="number of objects to keep per file")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    p.add_argument("--supervision", choices=("dilate", "roi", "full"), default="dilate",
                   help="supervision mode written for fully annotated source datasets (default dilate)")
    p.add_argument("-o", "--output", required=True, type=Path, help="label file (--labels) or folder (--data)")
    p.set_defaults(func=run)


def _one_file(args: argparse.Namespace) -> int:
    import numpy as np

    from mediar3d.data.partial import pair_seed, simulate_partial
    from mediar3d.io import read_image, read_labels, write_labels

    if args.output.resolve() == args.labels.resolve():
        raise InputError(f"output {args.output} is the input; write the partial labels to a new file")
    labels = np.asarray(read_labels(args.labels))
    kept = simulate_partial(labels, fraction=args.fraction, count=args.count,
                            seed=pair_seed(args.seed, args.labels.name))
    write_labels(args.output, kept, voxel_size=read_image(args.labels).voxel_size)
    print(f"kept {np.unique(kept).size - 1} of {np.unique(labels).size - 1} objects; wrote {args.output}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Write partial labels (and a mapping); returns 0."""
    import numpy as np

    from mediar3d.data.mapping import Pair, Supervision, load_mapping, save_mapping
    from mediar3d.data.partial import pair_seed, simulate_partial
    from mediar3d.io import read_image, read_labels, write_labels

    if args.fraction is not None and not 0 <= args.fraction <= 1:
        raise ConfigError(f"--fraction {args.fraction}: must be between 0 and 1")
    if args.count is not None and args.count < 0:
        raise ConfigError(f"--count {args.count}: must be >= 0")
    if args.labels is not None:
        return _one_file(args)
    mapping = load_mapping(args.data)
    kept_total = all_total = 0
    written: set[Path] = set()
    for dataset in mapping.datasets:
        pairs = []
        for pair in dataset.pairs:
            if pair.split != "train":
                pairs.append(pair)
                continue
            labels = np.asarray(read_labels(pair.label))
            kept = simulate_partial(labels, fraction=args.fraction, count=args.count,
                                    seed=pair_seed(args.seed, f"{dataset.name}/{pair.label.name}"))
            target = args.output / dataset.name / "labels" / pair.label.name
            if target.suffix.lower() not in (".tif", ".tiff", ".zarr"):
                target = target.with_suffix(".tif")
            if target in written:  # two label files of one name in different folders
                target = target.with_name(f"{len(written):04d}_{target.name}")
            written.add(target)
            write_labels(target, kept, voxel_size=read_image(pair.label).voxel_size)
            kept_total += np.unique(kept).size - 1
            all_total += np.unique(labels).size - 1
            pairs.append(Pair(pair.image, target, pair.split, pair.weight))
        dataset.pairs = pairs
        if dataset.supervision.mode == "full":
            dataset.supervision = Supervision(mode=args.supervision)
    path = save_mapping(mapping, args.output / "mapping.json")
    print(f"kept {kept_total} of {all_total} objects in the train pairs; wrote {path}")
    return 0
