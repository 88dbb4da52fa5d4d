"""Checks every command makes before its work starts: outputs never overwrite inputs and can be
written; plus the set of paths ``segment`` writes, so they can be checked and written all or none.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from mediar3d.io.paths import check_writable, refuse_overwriting_inputs

PathLike = str | os.PathLike


def existing_files(values: Iterable[PathLike | None] | PathLike | None) -> list[Path]:
    """The values that name existing files or folders (e.g. --model checkpoints, not bundled model names)."""
    if values is None or isinstance(values, (str, os.PathLike)):
        values = [values]
    return [Path(v) for v in values if v is not None and Path(v).exists()]


def guard_outputs(outputs: Sequence[PathLike], inputs: Iterable[PathLike | None], *, flag: str = "-o/--output",
                  folders: Sequence[PathLike] = (), replaced: Sequence[PathLike] = ()) -> None:
    """Refuse outputs that resolve to an input and outputs that cannot be written, before any work.

    Args:
        outputs: Files (and folders named in ``folders``) the command will write.
        inputs: Files and folders it reads.
        flag: Option named in the messages.
        folders: Those of ``outputs`` that are folders.
        replaced: Folders among them replaced as a whole (Zarr stores): no input may lie inside them.

    Raises:
        InputError: one line naming the path and the problem.
    """
    refuse_overwriting_inputs(outputs, inputs, flag=flag, replaced=replaced)
    kinds = {Path(d) for d in (*folders, *replaced)}
    for path in outputs:
        check_writable(path, directory=Path(path) in kinds)


def segment_outputs(labels_path: Path, prefix: Path, *, save_flows: bool, preview: str | None,
                    measure: bool = False) -> list[Path]:
    """Every path ``mediar3d segment`` writes (labels, flows, probability, objects table, preview, parameters),
    labels first."""
    paths = [labels_path]
    if save_flows:
        paths += [Path(f"{prefix}_flows.tif"), Path(f"{prefix}_prob.tif")]
    if measure:
        paths.append(Path(f"{prefix}_objects.csv"))
    if preview:
        paths.append(Path(f"{prefix}_preview.png") if preview == "auto" else Path(preview))
    paths.append(Path(f"{prefix}_params.json"))
    return paths
