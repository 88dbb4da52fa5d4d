"""What made a result: versions, model files and their SHA-256, device and command line.

`provenance` returns a JSON-serialisable dict that `mediar3d segment` stores in every
``<name>_params.json``, so a labels file can be traced to the code and weights behind it.
"""

from __future__ import annotations

import hashlib
import platform
import shlex
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["file_sha256", "model_files", "provenance"]


@lru_cache(maxsize=16)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (cached per path, size and modification time)."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def model_files(model: Any) -> list[tuple[str, Path | None]]:
    """(name, checkpoint file) for each member of a `segment` model argument.

    Bundled names (and None) map to the bundled checkpoint; an existing path to itself; a
    module or an `InferenceModel` built in memory to ``(its name, None)``.
    """
    from mediar3d.inference.loader import InferenceModel, bundled_checkpoint, bundled_model

    members = list(model) if isinstance(model, (list, tuple)) else [model]
    found: list[tuple[str, Path | None]] = []
    for member in members:
        if member is None or (isinstance(member, str) and bundled_model(member) is not None):
            found.append((str(member or "default"), bundled_checkpoint(member)))
        elif isinstance(member, (str, Path)) and Path(member).expanduser().is_file():
            found.append((str(member), Path(member).expanduser()))
        elif isinstance(member, InferenceModel):
            found.append((member.name, None))
        else:
            found.append((type(member).__name__ if not isinstance(member, (str, Path)) else str(member), None))
    return found


def provenance(model: Any = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Versions (mediar3d, torch, numpy, Python), model names with SHA-256, and the command line.

    Args:
        model: The `model` argument given to `segment` (None = bundled model).
        argv: Command-line arguments after the program name; None leaves the command out.
    """
    import numpy
    import torch

    from mediar3d import __version__

    record: dict[str, Any] = {
        "mediar3d_version": __version__, "torch_version": torch.__version__, "numpy_version": numpy.__version__,
        "python_version": platform.python_version(),
        "models": [{"name": name, "file": None if path is None else path.name,
                    "sha256": None if path is None else file_sha256(path)} for name, path in model_files(model)],
    }
    if argv is not None:
        record["command_line"] = shlex.join(["mediar3d", *argv])
    return record
