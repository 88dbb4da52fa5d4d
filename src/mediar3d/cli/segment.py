"""`mediar3d segment`: segment a volume into 3D instance labels."""

from __future__ import annotations

from mediar3d.cli._pending import register_pending


def register(subparsers) -> None:
    """Add the `segment` subcommand."""
    register_pending(subparsers, "segment", "Segment a volume into 3D instance labels")
