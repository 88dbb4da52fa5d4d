"""Atomic writes: build the output under a temporary sibling name, then rename it into place."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output", "temporary_sibling"]

logger = logging.getLogger(__name__)

TEMP_MARK = ".mediar3d-tmp-"


def temporary_sibling(path: Path) -> Path:
    """Return an unused hidden name in the same folder as ``path`` (so a rename is atomic)."""
    return path.parent / f".{path.name}{TEMP_MARK}{uuid.uuid4().hex[:12]}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


@contextmanager
def atomic_output(path: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; move it onto ``path`` only if the block succeeds.

    Files are moved with :func:`os.replace`. A directory (e.g. a Zarr store) replaces an
    existing one by renaming the old one aside first, then deleting it. On any exception
    the temporary output is removed and the exception propagates, so a failed write leaves
    neither a partial output nor a temporary file behind.

    Args:
        path: final output path; missing parent folders are created (and removed again if
            the write fails).
        directory: the output is a directory rather than a file.
    """
    final = Path(path)
    created = [p for p in reversed(final.parents) if not p.exists()]
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_sibling(final)
    ok = False
    try:
        yield temp
        if not temp.exists():
            raise FileNotFoundError(f"{final}: nothing was written")
        if directory and final.exists():
            old = temporary_sibling(final)
            os.replace(final, old)
            try:
                os.replace(temp, final)
            except OSError:
                os.replace(old, final)
                raise
            _remove(old)
        else:
            os.replace(temp, final)
        ok = True
    finally:
        if temp.exists():
            logger.debug("removing temporary output %s", temp)
            _remove(temp)
        if not ok:
            for folder in reversed(created):  # folders made for this output, deepest first
                try:
                    folder.rmdir()
                except OSError:
                    break
