"""`mediar3d info`: versions, compute devices and available models."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata

from mediar3d import __version__
from mediar3d.errors import Mediar3DError

#: Distributions reported (read from their installed metadata, without importing them).
_LIBRARIES = ("numpy", "scipy", "scikit-image", "tifffile", "zarr", "numba", "torch", "timm",
              "segmentation-models-pytorch", "monai", "dask", "h5py")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `info` subcommand."""
    parser = subparsers.add_parser(
        "info", help="show versions, compute devices and available models",
        description="Show mediar3d's version, its libraries, the compute devices it can use, the models --model "
                    "accepts and the architectures that have no weights yet.")
    parser.set_defaults(func=run)


def _library_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _devices() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def _models() -> list[str]:
    """Lines on the models: what `--model` accepts, and architectures that have no weights here."""
    from mediar3d.inference.loader import BUNDLED_MODELS, bundled_checkpoint
    from mediar3d.inference.provenance import file_sha256
    from mediar3d.models import list_models
    from mediar3d.models.checkpoint import read_checkpoint

    lines = []
    bundled_archs = set()
    for model in BUNDLED_MODELS:
        names = f"{model.names[0]} (also {', '.join(model.names[1:])})"
        try:
            path = bundled_checkpoint(model.names[0])
            config, _ = read_checkpoint(path)
        except Mediar3DError as err:
            lines.append(f"  {names}: for {model.purpose}; unavailable: {err}")
            continue
        thresholds = ", ".join(f"{k} {v:g}" for k, v in sorted(config.thresholds.items()))
        lines.append(f"  {names}: for {model.purpose}; bundled {path.name} (card: weights/{model.card}), "
                     f"architecture {config.arch}, trained on objects of {config.train_diameter:g} px, "
                     f"thresholds {thresholds}, sha256 {file_sha256(path)[:16]}")
        bundled_archs.add(config.arch)
    lines.append("  any checkpoint file written by `mediar3d train` or `mediar3d tune` (--model PATH.pt)")
    untrained = [name for name in list_models() if name not in bundled_archs]
    if untrained:
        lines.append("architectures without bundled weights (train them, then pass the checkpoint): "
                     + ", ".join(untrained))
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the report; returns 0."""
    lines = [f"mediar3d {__version__} (Python {platform.python_version()}, {platform.system()} {platform.machine()})"]
    lines.append("libraries: " + ", ".join(f"{name} {_library_version(name)}" for name in _LIBRARIES))
    lines.append("devices: " + ", ".join(_devices()))
    lines.append("models (--model NAME or PATH):")
    lines += _models()
    print("\n".join(lines))
    return 0
