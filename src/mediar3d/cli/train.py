"""`mediar3d train`: train or fine-tune a network."""

from __future__ import annotations

from mediar3d.cli._pending import register_pending


def register(subparsers) -> None:
    """Add the `train` subcommand."""
    register_pending(subparsers, "train", "Train or fine-tune a network")
