"""Placeholder parsers for subcommands that are not built yet (they say so and fail)."""

from __future__ import annotations

import argparse
import sys


def register_pending(subparsers: argparse._SubParsersAction, name: str, summary: str) -> None:
    """Add a subcommand that explains it is not available yet and exits with code 2."""
    parser = subparsers.add_parser(name, help=f"{summary} (not available yet)", description=f"{summary}. Not available yet in this version.")

    def run(args: argparse.Namespace) -> int:
        print(f"mediar3d {name}: not available yet in this version", file=sys.stderr)
        return 2

    parser.set_defaults(func=run)
