"""On-disk state of a block-wise run: lazy inputs, the resumable work store, the output.

The work store is a folder next to the output::

    <output>.work/
        params.json      grid and stitching settings (a rerun must match them)
        core.zarr        (z, y, x) int32 block-local labels on each block's core
        extent.zarr      (bz, by, bx, ez, ey, ex) int32 block-local labels on each extent
                         (8 chunks per block, so halo reads decode only what they need)
        done/i_j_k.npz   completion marker per block (label count, ownership), written last

A block counts as done only when its marker exists, so a run killed at any point
resumes by redoing exactly the blocks without a marker.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mediar3d.distributed.grid import BlockGrid, Triple
from mediar3d.errors import ConfigError, InputError

def _zarr():
    import zarr

    return zarr


def open_lazy(source: Any, *, channel: int | None = None) -> Any:
    """Open an input without reading it: a Zarr / OME-Zarr path, or any array-like.

    Args:
        source: path to a ``.zarr`` / ``.ome.zarr`` store (an array, an OME-Zarr image
            whose full resolution is used, or a group holding a single array), a TIFF file
            (read through tifffile's zarr view, one plane at a time), or an
            object with ``shape`` and numpy-style slicing (zarr, numpy, h5py arrays).
        channel: for a (c, z, y, x) input, the channel to use.

    Returns:
        An array-like of shape (z, y, x) or (c, z, y, x) sliced lazily.
    """
    if isinstance(source, (str, os.PathLike)):
        from mediar3d.io import image_format, open_image_lazy, open_zarr_lazy

        source = open_image_lazy(source).view() if image_format(source) == "tiff" else open_zarr_lazy(source)
    if not hasattr(source, "shape") or not hasattr(source, "__getitem__"):
        raise InputError(f"{type(source).__name__}: not an array-like (needs .shape and slicing)")
    if channel is not None:
        if len(source.shape) != 4:
            raise InputError(f"channel={channel} given but the input has shape {tuple(source.shape)}, not (c, z, y, x)")
        if not 0 <= channel < source.shape[0]:
            raise InputError(f"channel={channel}: the input has {source.shape[0]} channels")
        source = _ChannelView(source, channel)
    if len(source.shape) not in (3, 4):
        raise InputError(f"input shape {tuple(source.shape)}: expected (z, y, x) or (c, z, y, x)")
    return source


class _ChannelView:
    """Lazy view of one channel of a (c, z, y, x) array-like."""

    def __init__(self, array: Any, channel: int) -> None:
        self.array, self.channel = array, channel
        self.shape = tuple(array.shape[1:])
        self.dtype = array.dtype

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        return np.asarray(self.array[(self.channel,) + key])


def input_voxel_size(source: Any) -> tuple[float, float, float] | None:
    """(z, y, x) voxel size in micrometres of an OME-Zarr or TIFF path, else None."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    from mediar3d.io import image_format, open_image_lazy, zarr_axes_and_voxel_size

    if image_format(source) == "tiff":
        voxel = open_image_lazy(source).voxel_size
        return tuple(voxel) if voxel is not None and len(voxel) == 3 else None
    _, voxel = zarr_axes_and_voxel_size(source)
    if all(a in voxel for a in "ZYX"):
        return (voxel["Z"], voxel["Y"], voxel["X"])
    return None


@dataclass(frozen=True)
class Marker:
    """Completion record of one block: label count and ownership of its core labels."""

    n: int
    owned: np.ndarray


class WorkStore:
    """The resumable per-block results of one run (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, grid: BlockGrid) -> None:
        self.path = Path(path)
        self.grid = grid

    # -- creation ---------------------------------------------------------------
    def params(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Settings a resumed run must share (grid plus caller-provided fingerprint)."""
        return {"grid": {k: list(v) for k, v in asdict(self.grid).items()}, "settings": settings}

    def open(self, settings: dict[str, Any], *, resume: bool) -> int:
        """Create the store, or reopen it to resume; returns how many blocks are done.

        Raises:
            ConfigError: resuming a store made with a different grid or settings.
        """
        params = self.params(settings)
        pfile = self.path / "params.json"
        if self.path.exists() and resume and pfile.exists():
            old = json.loads(pfile.read_text())
            if old != json.loads(json.dumps(params)):
                raise ConfigError(
                    f"{self.path}: work store was made with other settings ({old['grid']}, {old['settings']}); "
                    "delete it or run with resume=False"
                )
            return sum(self.is_done(i) for i in self.grid.indices())
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        (self.path / "done").mkdir()
        zarr = _zarr()
        zarr.open_array(str(self.path / "core.zarr"), mode="w", shape=self.grid.shape,
                        chunks=self.grid.block_size, dtype="int32", fill_value=0)
        zarr.open_array(str(self.path / "extent.zarr"), mode="w", shape=self.grid.nblocks + self.grid.extent_size,
                        chunks=(1, 1, 1) + self._extent_chunks(), dtype="int32", fill_value=0)
        pfile.write_text(json.dumps(params, indent=1))
        return 0

    def _extent_chunks(self) -> Triple:
        """Halves of the extent per axis: a neighbour reading a halo slab decodes 1-4 of 8 chunks."""
        return tuple(-(-e // 2) for e in self.grid.extent_size)  # type: ignore[return-value]

    # -- per block ----------------------------------------------------------------
    def _marker_path(self, index: Triple) -> Path:
        return self.path / "done" / ("%d_%d_%d.npz" % tuple(index))

    def is_done(self, index: Triple) -> bool:
        """Whether the block's completion marker exists."""
        return self._marker_path(index).exists()

    def write_block(self, index: Triple, labels: np.ndarray, n: int, owned: np.ndarray) -> None:
        """Store a block's extent labels and core labels, then its completion marker."""
        zarr = _zarr()
        ext = self.grid.extent(index)
        shape = tuple(s.stop - s.start for s in ext)
        padded = np.zeros(self.grid.extent_size, np.int32)
        padded[tuple(slice(0, n_) for n_ in shape)] = labels
        zarr.open_array(str(self.path / "extent.zarr"), mode="r+")[tuple(index)] = padded
        core = self.grid.core(index)
        rel = tuple(slice(c.start - e.start, c.stop - e.start) for c, e in zip(core, ext))
        zarr.open_array(str(self.path / "core.zarr"), mode="r+")[core] = labels[rel]
        marker = self._marker_path(index)
        fd, tmp = tempfile.mkstemp(dir=marker.parent, suffix=".tmp.npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, n=np.int64(n), owned=np.asarray(owned, np.uint8))
        os.replace(tmp, marker)

    def marker(self, index: Triple) -> Marker:
        """Read a finished block's completion record."""
        with np.load(self._marker_path(index)) as f:
            return Marker(int(f["n"]), f["owned"].astype(bool))

    def core_labels(self, index: Triple) -> np.ndarray:
        """Block-local labels (z, y, x) on the block's core."""
        return np.asarray(_zarr().open_array(str(self.path / "core.zarr"), mode="r")[self.grid.core(index)])

    def extent_labels(self, index: Triple, box: Sequence[slice]) -> np.ndarray:
        """Block-local labels of ``index`` on a global box inside its extent."""
        ext = self.grid.extent(index)
        rel = tuple(slice(b.start - e.start, b.stop - e.start) for b, e in zip(box, ext))
        return np.asarray(_zarr().open_array(str(self.path / "extent.zarr"), mode="r")[tuple(index) + rel])


def create_output(
    path: str | os.PathLike,
    shape: Triple,
    chunks: Triple,
    dtype: str,
    *,
    voxel_size: Sequence[float] | None = None,
) -> tuple[Path, str]:
    """Create an empty OME-Zarr label image (axes z, y, x) at a temporary name beside ``path``.

    Returns:
        (temporary path, array path inside it) to write to, then :func:`commit_output`.
    """
    from mediar3d.io import create_zarr

    path = Path(path)
    if not path.name.endswith(".zarr"):
        raise InputError(f"{path}: block-wise output must be a .zarr or .ome.zarr store")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    create_zarr(tmp, shape, dtype, axes="ZYX", voxel_size=voxel_size, chunks=chunks, labels=True, name=path.name)
    return tmp, "0"


def open_output_array(tmp: str | os.PathLike, array_path: str) -> Any:
    """Open the array being written in a temporary output store."""
    target = Path(tmp) / array_path if array_path else Path(tmp)
    return _zarr().open_array(str(target), mode="r+")


def commit_output(tmp: Path, path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Move a finished temporary output into place."""
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise InputError(f"{path}: output exists; pass overwrite=True to replace it")
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    os.replace(tmp, path)
    return path
