"""`mediar3d info`: versions, compute devices and available models."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata

from mediar3d import __version__

#: Distributions reported (read from their installed metadata, without importing them).
_LIBRARIES = ("numpy", "scipy", "scikit-image", "tifffile", "zarr", "numba", "torch", "timm",
              "segmentation-models-pytorch", "monai", "dask")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `info` subcommand."""
    parser = subparsers.add_parser(
        "info", help="show versions, compute devices and available models",
        description="Show mediar3d's version, its libraries, the compute devices it can use and the registered models.")
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
    try:
        from mediar3d.models import list_models
    except ImportError:
        return []
    return list(list_models())


def run(args: argparse.Namespace) -> int:
    """Print the report; returns 0."""
    lines = [f"mediar3d {__version__} (Python {platform.python_version()}, {platform.system()} {platform.machine()})"]
    lines.append("libraries: " + ", ".join(f"{name} {_library_version(name)}" for name in _LIBRARIES))
    lines.append("devices: " + ", ".join(_devices()))
    models = _models()
    lines.append("models: " + (", ".join(models) if models else "none registered"))
    print("\n".join(lines))
    return 0
