"""Checks on output paths made before any work starts: never write over an input, never
outside the output folder, and fail early when an output cannot be written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath

from mediar3d.errors import InputError

__all__ = ["check_plain_name", "refuse_overwriting_inputs", "check_writable", "nearest_folder"]

PathLike = str | os.PathLike


def check_plain_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a plain folder name (no separators, not ``.``/``..``, not absolute).

    Names that become folder names (e.g. dataset names in ``slice-volumes``) must stay inside
    the output folder; ``../x`` or ``/abs/path`` would write elsewhere.

    Raises:
        InputError: naming ``what`` and the value.
    """
    text = str(name)
    if (not text.strip() or text in (".", "..") or "\0" in text
            or PurePosixPath(text).name != text or PureWindowsPath(text).name != text):
        raise InputError(f"{what} {text!r}: must be a plain folder name (letters, digits, '-', '_', '.'; "
                         "no '/', '\\', '..' or absolute path)")
    return text


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwriting_inputs(outputs: Iterable[PathLike | None], inputs: Iterable[PathLike | None], *,
                              flag: str = "-o/--output", replaced: Iterable[PathLike] = ()) -> None:
    """Raise if an output resolves to an input: the same file (also through links), a path inside an
    input folder (a Zarr store), or a folder output replaced as a whole that holds an input.

    Args:
        outputs: Paths the command will write (``None`` entries are ignored).
        inputs: Paths it reads.
        flag: Option named in the message.
        replaced: Those of ``outputs`` that are folders replaced as a whole (a Zarr store), so
            no input may lie inside them.

    Raises:
        InputError: naming the output, the input and the option to change.
    """
    ins = [(Path(p), Path(p).resolve()) for p in inputs if p is not None and str(p)]
    wholesale = {Path(p).resolve() for p in replaced}
    for out in outputs:
        if out is None:
            continue
        resolved = Path(out).resolve()
        for raw, source in ins:
            if (resolved == source or _same(resolved, source) or (source.is_dir() and _inside(resolved, source))
                    or (resolved in wholesale and _inside(source, resolved))):
                raise InputError(f"output {out} would overwrite the input {raw}; choose another {flag}")


def nearest_folder(path: PathLike) -> Path:
    """``path`` itself if it exists, else its nearest existing parent (which may be a file)."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_writable(path: PathLike, *, directory: bool = False) -> None:
    """Fail now, not after the work, if ``path`` cannot be written.

    Checks that no parent of ``path`` is a file, that the nearest existing folder accepts a
    new file (a probe file is created and removed), and, for a ``directory`` output, that
    ``path`` is not an existing file (and for a file output, not an existing folder).

    Raises:
        InputError: naming the path and the problem.
    """
    target = Path(path)
    if target.exists():
        if directory and not target.is_dir():
            raise InputError(f"output {target}: exists and is a file, not a folder; choose another path")
        if not directory and target.is_dir():
            raise InputError(f"output {target}: is a folder; give a file name")
    folder = nearest_folder(target.parent)
    if not folder.is_dir():
        raise InputError(f"output {target}: {folder} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(prefix=".mediar3d-probe-", dir=folder):
            pass
    except OSError as err:
        raise InputError(f"output {target}: cannot write into {folder} ({err.strerror or err})") from None
