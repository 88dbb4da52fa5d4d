"""`mediar3d cluster`: modality balancing weights for a dataset mapping (Mediar's k-means)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `cluster` subcommand."""
    parser = subparsers.add_parser(
        "cluster", help="weight training images so rare modalities are drawn more often",
        description="Embed every training image with a trained model's encoder (global average pooled "
                    "bottleneck features), group the embeddings with k-means and write per-image sampling "
                    "weights that over-sample small clusters into the mapping (pair 'weight' fields).")
    parser.add_argument("mapping", metavar="MAP.json", help="dataset mapping to weight")
    parser.add_argument("--model", required=True, metavar="CKPT", help="checkpoint whose encoder embeds the images")
    parser.add_argument("-o", "--output", metavar="OUT.json", help="where to write (default: overwrite MAP.json)")
    parser.add_argument("-k", "--clusters", type=int, default=40, help="number of k-means clusters (default: 40)")
    parser.add_argument("--power", type=float, default=0.5,
                        help="0 = no balancing, 1 = every cluster drawn equally often (default: 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="k-means seed (default: 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the weighted mapping; returns 0."""
    import numpy as np

    from mediar3d.data.mapping import load_mapping, save_mapping
    from mediar3d.models import load_model
    from mediar3d.training.balancing import balance_mapping
    from mediar3d.training.distributed import select_device

    mapping = load_mapping(args.mapping)
    device = select_device(args.device)
    model, config = load_model(args.model, device=device)
    clusters = balance_mapping(model, mapping, k=args.clusters, power=args.power, seed=args.seed, device=device,
                               percentiles=config.percentiles)
    path = save_mapping(mapping, args.output or args.mapping)
    sizes = np.bincount(clusters)
    print(f"{len(clusters)} training images in {int((sizes > 0).sum())} clusters; weights written to {path}")
    return 0
