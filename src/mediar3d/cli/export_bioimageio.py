"""`mediar3d export-bioimageio`: write a model as a BioImage Model Zoo (bioimage.io) package."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export-bioimageio` subcommand."""
    p = subparsers.add_parser(
        "export-bioimageio", help="write a model as a bioimage.io package (.zip) for the BioImage Model Zoo",
        description="Write a 2D model as a BioImage Model Zoo package: TorchScript and state-dict weights, test "
                    "input and output, the mediar3d checkpoint and a description of the post-processing, "
                    "validated with bioimageio.spec (the `bioimageio` extra). `mediar3d segment --model` reads "
                    "the package back.",
        epilog="example: mediar3d export-bioimageio --model runs/mine/model_best.pt -o nuclei-model.zip")
    p.add_argument("--model", default="default",
                   help="bundled model name, checkpoint, package or https URL#sha256=... (default: bundled model)")
    p.add_argument("--sha256", default=None, metavar="HEX",
                   help="sha256 of the --model file (64 hex digits), checked before it is used; for an https URL "
                        "the same as URL#sha256=HEX")
    p.add_argument("-o", "--output", required=True, type=Path, help="package file to write (.zip)")
    p.add_argument("--name", default=None, help="model name in the package (default: the checkpoint's file name)")
    p.add_argument("--author", action="append", default=None,
                   help="author name; repeat for several (default: mediar3d contributors)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export; returns 0."""
    from mediar3d.models.bioimageio import export_bioimageio
    from mediar3d.models.sources import pin_sha256

    (model,) = pin_sha256([args.model], args.sha256)
    path = export_bioimageio(model, args.output, name=args.name, authors=args.author)
    print(f"wrote {path}")
    return 0
