"""Checks every command makes before its work starts: outputs never overwrite inputs and can be
written; plus the set of paths ``segment`` writes, so they can be checked and written all or none.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from mediar3d.errors import InputError
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


#: Anisotropy (z voxel size / xy voxel size) outside this range is taken for a metadata or typing
#: error (a voxel size in nm read as um, 1e6 for 1e-6) unless --skip-size-checks is given.
PLAUSIBLE_ANISOTROPY = (0.05, 50.0)
SKIP_FLAG = "--skip-size-checks"


def add_skip_flag(parser) -> None:
    """Add ``--skip-size-checks`` to a subcommand parser."""
    parser.add_argument(SKIP_FLAG, action="store_true",
                        help=f"go ahead despite an anisotropy outside {PLAUSIBLE_ANISOTROPY[0]:g}..."
                             f"{PLAUSIBLE_ANISOTROPY[1]:g} or a memory/disk estimate above this machine's")


def check_anisotropy_plausible(anisotropy: float | None, *, given: bool, voxel_size: Sequence[float] | None,
                               source: object, skip: bool) -> None:
    """Refuse an implausible anisotropy, saying where it came from and how to go ahead.

    Raises:
        InputError: unless ``skip`` or the value is in :data:`PLAUSIBLE_ANISOTROPY`.
    """
    low, high = PLAUSIBLE_ANISOTROPY
    if skip or anisotropy is None or low <= anisotropy <= high:
        return
    origin = ("--anisotropy" if given else
              f"{source}: voxel size {tuple(float(v) for v in voxel_size or ())} um gives anisotropy")
    raise InputError(f"{origin} {anisotropy:g} is implausible (expected {low:g}..{high:g}: z voxel size / xy voxel "
                     f"size); give the right --anisotropy, or {SKIP_FLAG} to go ahead")


def check_memory_estimate(nbytes: float, what: str, *, skip: bool, available: float | None = None,
                          resource: str = "memory") -> None:
    """Refuse a run whose estimated need exceeds ``available`` (default: this machine's RAM).

    Raises:
        InputError: naming the estimate, what it is for, and the flag that goes ahead anyway.
    """
    from mediar3d.io.memory import gib, physical_memory

    limit = physical_memory() if available is None else available
    if skip or not limit or nbytes <= limit:
        return
    raise InputError(f"{what} needs about {gib(nbytes)} of {resource}, more than the {gib(limit)} here; check the "
                     f"anisotropy / voxel size, use --blocks for large volumes, or {SKIP_FLAG} to go ahead")


def check_volume_size(image, anisotropy: float | None, source: object, *, skip: bool) -> None:
    """Before segmenting a (z, y, x) ``Image``: a plausible anisotropy, and the whole-volume pipeline's
    peak memory (:func:`mediar3d.inference.memory.estimate_peak_bytes`, z resampled by the anisotropy)
    within this machine's RAM.

    Raises:
        InputError: see :func:`check_anisotropy_plausible` and :func:`check_memory_estimate`.
    """
    import numpy as np

    from mediar3d.inference.memory import estimate_peak_bytes
    from mediar3d.io.naming import anisotropy_from_voxel_size

    shape = image.spatial_shape
    if len(shape) != 3:
        return
    value = anisotropy if anisotropy is not None else anisotropy_from_voxel_size(image.voxel_size)
    check_anisotropy_plausible(value, given=anisotropy is not None, voxel_size=image.voxel_size, source=source,
                               skip=skip)
    needed = estimate_peak_bytes(shape, anisotropy=float(value or 1.0),
                                 input_itemsize=np.dtype(image.data.dtype).itemsize)
    check_memory_estimate(needed,
                          f"{source}: segmenting {'x'.join(map(str, shape))} at anisotropy {value or 1:g}", skip=skip)


def check_file_anisotropy(source: Path, anisotropy: float | None, *, skip: bool) -> None:
    """For block-wise runs (the volume is never loaded whole): a plausible anisotropy from the flag or the
    file's voxel size (NGFF scale, ImageJ / OME-TIFF metadata), read without loading the data.

    Raises:
        InputError: see :func:`check_anisotropy_plausible`.
    """
    from mediar3d.io.naming import anisotropy_from_voxel_size
    from mediar3d.io import open_image_lazy

    voxel = None if anisotropy is not None else open_image_lazy(source).voxel_size
    value = anisotropy if anisotropy is not None else anisotropy_from_voxel_size(voxel)
    check_anisotropy_plausible(value, given=anisotropy is not None, voxel_size=voxel, source=source, skip=skip)
