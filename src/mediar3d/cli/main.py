"""The ``mediar3d`` command: a thin layer of subcommands over the library.

Each subcommand lives in ``mediar3d.cli.<name>`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to a callable ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading

from mediar3d import __version__
from mediar3d.errors import Mediar3DError

# Order shown in --help.
COMMANDS = (
    "segment_batch",  # the `segment` command: parser in cli.segment, many-input driver in cli.segment_batch
    "evaluate",
    "train",
    "tune",
    "map_dataset",
    "slice_volumes",
    "simulate_partial",
    "cluster",
    "filter_masks",
    "export_bioimageio",
    "info",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="mediar3d",
        description="3D instance segmentation of cells and nuclei in microscopy volumes.",
    )
    parser.add_argument("--version", action="version", version=f"mediar3d {__version__}")
    _add_verbosity(parser, "")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mediar3d.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"mediar3d.cli.{name}":
                raise
            continue
        module.register(subparsers)
    for subparser in subparsers.choices.values():  # -v / -q also after the subcommand
        _add_verbosity(subparser, "sub_")
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument("-v", "--verbose", dest=f"{prefix}verbose", action="count", default=0,
                        help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", dest=f"{prefix}quiet", action="store_true",
                        help="print only warnings and errors (no status lines, no progress bars)")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.verbose += getattr(args, "sub_verbose", 0)
    args.quiet = args.quiet or getattr(args, "sub_quiet", False)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous = _stop_on_sigterm()
    try:
        return int(args.func(args) or 0)
    except Mediar3DError as err:
        print(f"mediar3d {args.command}: error: {err}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"mediar3d {args.command}: terminated; partial outputs removed", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"mediar3d {args.command}: interrupted; partial outputs removed", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"mediar3d {args.command}: error: out of memory; use a smaller input, --tile, --batch-size, "
              "or --blocks for large volumes", file=sys.stderr)
        return 1
    except OSError as err:
        if args.verbose >= 2:
            raise
        print(f"mediar3d {args.command}: error: {err}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so that ``finally`` blocks remove temporary outputs."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _stop_on_sigterm() -> object | None:
    """Turn SIGTERM into :class:`Terminated` (main thread only); returns the previous handler, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
