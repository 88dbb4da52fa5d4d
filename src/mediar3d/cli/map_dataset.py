"""`mediar3d map-dataset`: write the dataset mapping JSON that training reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from mediar3d.cli.guard import guard_outputs
from mediar3d.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `map-dataset` subcommand."""
    parser = subparsers.add_parser(
        "map-dataset", help="pair images with labels and write a dataset mapping JSON",
        description="Pair image and label files of one or more datasets (any file naming), split them into "
                    "train/val with a seed and write a mapping JSON for `mediar3d train`. Either give datasets "
                    "with --dataset, or --spec with a mapping that uses globs; the output lists every pair.",
        epilog="example: mediar3d map-dataset --dataset dsb 'dsb/images/*.tif' 'dsb/masks/*.tif' "
               "--dataset embryo 'emb/*_img.tif' 'emb/*_gt.tif' --probability embryo=0.7 "
               "--supervision embryo=dilate -o map.json")
    parser.add_argument("--dataset", nargs=3, action="append", default=[], metavar=("NAME", "IMAGES", "LABELS"),
                        help="a dataset: name, image glob, label glob (quote the globs); repeatable")
    parser.add_argument("--spec", metavar="JSON", help="a mapping with globs to resolve (alternative to --dataset)")
    parser.add_argument("-o", "--output", required=True, metavar="MAP.json", help="mapping file to write")
    parser.add_argument("--val-fraction", type=float, default=None, help="fraction of files held out (default: 0.1)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the train/val split (default: 0)")
    parser.add_argument("--probability", action="append", default=[], metavar="NAME=P",
                        help="sampling probability of a dataset (give one for every dataset or none)")
    parser.add_argument("--supervision", action="append", default=[], metavar="NAME=MODE",
                        help="full (default), roi or dilate for a partly annotated dataset")
    parser.add_argument("--orientations", default=None, metavar="z,y,x",
                        help="slice orientations of 3D volumes (default: z,y,x)")
    parser.add_argument("--pair-by", default="auto", choices=("auto", "stem", "words", "digits", "order"),
                        help="how file names are matched (default: auto)")
    parser.add_argument("--channel", type=int, default=None, help="channel to read from multi-channel images")
    parser.set_defaults(func=run)


def _named(items: list[str], flag: str, names: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{flag} {item!r}: expected NAME=VALUE")
        if name not in names:
            raise ConfigError(f"{flag} {item!r}: no dataset named {name!r} (datasets: {', '.join(names)})")
        out[name] = value
    return out


def run(args: argparse.Namespace) -> int:
    """Write the mapping; returns 0."""
    import json

    from mediar3d.data.mapping import mapping_from_dict, save_mapping

    if bool(args.dataset) == bool(args.spec):
        raise ConfigError("give either --dataset NAME IMAGES LABELS (repeatable) or --spec MAP.json")
    if args.spec:
        spec_path = Path(args.spec)
        if not spec_path.is_file():
            raise ConfigError(f"--spec {spec_path} does not exist")
        try:
            obj = json.loads(spec_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"--spec {spec_path}: not valid JSON ({err})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("datasets", []), list):
            raise ConfigError(f"--spec {spec_path}: must be a JSON object with a 'datasets' list")
        base = spec_path.parent
    else:
        obj = {"datasets": [{"name": n, "images": i, "labels": lab, "pair_by": args.pair_by}
                            for n, i, lab in args.dataset]}
        base = Path.cwd()
    datasets = obj.get("datasets") or []
    names = [d.get("name") for d in datasets if isinstance(d, dict)]
    for name, p in _named(args.probability, "--probability", names).items():
        try:
            value = float(p)
        except ValueError:
            raise ConfigError(f"--probability {name}={p}: not a number") from None
        next(d for d in datasets if isinstance(d, dict) and d.get("name") == name)["probability"] = value
    for name, mode in _named(args.supervision, "--supervision", names).items():
        next(d for d in datasets if isinstance(d, dict) and d.get("name") == name)["supervision"] = {"mode": mode}
    for d in (d for d in datasets if isinstance(d, dict)):
        if args.orientations:
            d["orientations"] = [o.strip() for o in args.orientations.split(",") if o.strip()]
        if args.channel is not None:
            d["channel"] = args.channel
    if args.val_fraction is not None:
        obj["val_fraction"] = args.val_fraction
    if args.seed is not None:
        obj["seed"] = args.seed
    mapping = mapping_from_dict(obj, base, source=args.spec or "--dataset")
    guard_outputs([args.output], [args.spec, *(p for _, pair in mapping.pairs(None) for p in (pair.image, pair.label))])
    path = save_mapping(mapping, args.output)
    for d in mapping.datasets:
        n_val = sum(p.split == "val" for p in d.pairs)
        print(f"{d.name}: {len(d.pairs)} pairs ({len(d.pairs) - n_val} train, {n_val} val)")
    print(f"wrote {path}")
    return 0
