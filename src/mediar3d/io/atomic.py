"""Atomic writes: build the output under a temporary sibling name, then rename it into place."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output", "output_set", "temporary_sibling"]

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


def _backup(path: Path) -> Path:
    """A hidden sibling holding the current ``path`` (hard links, so no data is copied where links work)."""
    backup = temporary_sibling(path)
    try:
        if path.is_dir():
            shutil.copytree(path, backup, copy_function=os.link, symlinks=True)
        else:
            os.link(path, backup)
    except OSError:
        _remove(backup)
        if path.is_dir():
            shutil.copytree(path, backup, symlinks=True)
        else:
            shutil.copy2(path, backup)
    return backup


@contextmanager
def output_set(paths: Iterable[str | os.PathLike]) -> Iterator[None]:
    """Make the outputs written inside the block appear all together or not at all.

    Each output is still written with :func:`atomic_output`. If the block raises (including
    ``KeyboardInterrupt`` or the exception the CLI raises on SIGTERM), every path of the set is
    put back as it was before the block: a previous version is restored from a backup taken
    at the start (hard links, so it costs no copy), a new one is removed. So a run never
    leaves labels without their ``_params.json``, or new labels beside old flows.

    Args:
        paths: Every file or folder the block may write.
    """
    finals = list(dict.fromkeys(Path(p) for p in paths))
    backups: dict[Path, Path] = {}
    ok = False
    try:
        for path in finals:
            if path.exists():
                backups[path] = _backup(path)
        yield
        ok = True
    finally:
        for path in finals:
            backup = backups.get(path)
            if ok:
                if backup is not None:
                    _remove(backup)
                continue
            if backup is None:
                if path.exists():
                    logger.debug("removing %s: the rest of its output set was not written", path)
                    _remove(path)
            elif path.is_dir() and not path.is_symlink():
                aside = temporary_sibling(path)
                os.replace(path, aside)
                os.replace(backup, path)
                _remove(aside)
            elif path.exists() and os.path.samefile(backup, path):
                backup.unlink()  # never replaced; rename() between two links of one file does nothing
            else:
                os.replace(backup, path)
