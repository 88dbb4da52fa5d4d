"""Block geometry: a volume (z, y, x) cut into core blocks, each read with a halo.

Every voxel belongs to exactly one block's *core*; a block is segmented on its core
grown by the halo (its *extent*, clipped to the volume), so an object whose voxels
reach into a core is seen whole by that block as long as the halo exceeds its diameter.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

from mediar3d.errors import ConfigError

Triple = tuple[int, int, int]

#: Rough working memory of the full pipeline per voxel of a block extent (image, three
#: orthogonal passes of flows + cell probability in float32, flow following, labels).
PIPELINE_BYTES_PER_VOXEL = 64
#: A whole-volume run may plan to use this share of the memory available; above it, blocks.
MEMORY_MARGIN = 0.8


def _triple(value: int | Sequence[int], name: str) -> Triple:
    """Broadcast an int to (z, y, x) and check a 3-sequence."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        out = (int(value),) * 3
    else:
        try:
            out = tuple(int(v) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ConfigError(f"{name}={value!r}: expected an int or three ints (z, y, x)") from None
    if len(out) != 3:
        raise ConfigError(f"{name}={value!r}: expected three values (z, y, x), got {len(out)}")
    return out  # type: ignore[return-value]


def default_halo(diameter: float, *, anisotropy: float = 1.0, factor: float = 1.5) -> Triple:
    """Halo width (z, y, x) in voxels from the expected object diameter.

    Args:
        diameter: expected cell diameter in voxels along y and x.
        anisotropy: z spacing divided by the y/x spacing (the z halo shrinks by it).
        factor: halo in diameters; >= 1 keeps every object that reaches into a core
            whole inside the block extent, 1.5 leaves room for the network's context.

    Returns:
        (hz, hy, hx) halo widths in voxels.
    """
    if not diameter > 0:
        raise ConfigError(f"diameter={diameter!r}: must be a positive number of voxels")
    if not anisotropy > 0:
        raise ConfigError(f"anisotropy={anisotropy!r}: must be positive")
    hyx = int(math.ceil(factor * diameter))
    return (int(math.ceil(factor * diameter / anisotropy)), hyx, hyx)


def choose_block_size(
    shape: Sequence[int],
    halo: Sequence[int],
    *,
    memory_limit: int,
    bytes_per_voxel: int = PIPELINE_BYTES_PER_VOXEL,
    multiple: int = 16,
) -> Triple:
    """Largest cube-like core block whose extent fits a memory budget.

    Args:
        shape: volume shape (z, y, x).
        halo: halo widths (z, y, x).
        memory_limit: bytes one block may use (a worker's limit divided by its threads).
        bytes_per_voxel: working memory per extent voxel of the pipeline.
        multiple: core sides are rounded down to a multiple of this.

    Returns:
        (bz, by, bx) core block size, never larger than the volume.
    """
    budget = memory_limit / float(bytes_per_voxel)

    def extent_voxels(side: int) -> int:
        return math.prod(min(min(side, int(n)) + 2 * int(h), int(n)) for n, h in zip(shape, halo))

    side = multiple
    while side < max(shape) and extent_voxels(side + multiple) <= budget:
        side += multiple
    return tuple(max(1, min(side, int(n))) for n in shape)  # type: ignore[return-value]


def whole_volume_memory(
    shape: Sequence[int],
    *,
    anisotropy: float = 1.0,
    scale: float = 1.0,
    input_itemsize: int = 2,
    memory_limit: int | None = None,
    bytes_per_voxel: int | None = None,
) -> tuple[int, int]:
    """(Estimated peak bytes of segmenting a volume whole, bytes available to it).

    Args:
        shape: volume shape (z, y, x) (a leading channel axis is ignored).
        anisotropy, scale, input_itemsize: as for
            :func:`mediar3d.inference.memory.estimate_peak_bytes`, which makes the estimate.
        memory_limit: bytes available; default: what this machine has free now
            (:func:`mediar3d.io.memory.available_memory`; 0 where that is unknown).
        bytes_per_voxel: a flat estimate per input voxel instead of the pipeline's.
    """
    from mediar3d.inference.memory import estimate_peak_bytes
    from mediar3d.io.memory import available_memory

    if bytes_per_voxel is not None:
        needed = math.prod(int(n) for n in tuple(shape)[-3:]) * int(bytes_per_voxel)
    else:
        needed = estimate_peak_bytes(shape, anisotropy=anisotropy, scale=scale, input_itemsize=input_itemsize)
    return needed, int(available_memory() if memory_limit is None else memory_limit)


def should_use_blocks(
    shape: Sequence[int],
    *,
    memory_limit: int | None = None,
    bytes_per_voxel: int | None = None,
    max_fraction: float = MEMORY_MARGIN,
    anisotropy: float = 1.0,
    scale: float = 1.0,
    input_itemsize: int = 2,
) -> bool:
    """Whether a volume is too large to segment whole and should go block-wise.

    Args:
        shape: volume shape (z, y, x) (a leading channel axis is ignored).
        memory_limit, bytes_per_voxel, anisotropy, scale, input_itemsize: see
            :func:`whole_volume_memory`.
        max_fraction: use blocks when the estimate exceeds this fraction of the memory available.

    Returns:
        True when the estimated peak exceeds ``max_fraction`` of the memory available (False
        where that is unknown).
    """
    needed, available = whole_volume_memory(shape, anisotropy=anisotropy, scale=scale, input_itemsize=input_itemsize,
                                            memory_limit=memory_limit, bytes_per_voxel=bytes_per_voxel)
    return exceeds_memory(needed, available, max_fraction)


def exceeds_memory(needed: float, available: float, max_fraction: float = MEMORY_MARGIN) -> bool:
    """Whether ``needed`` bytes exceed ``max_fraction`` of ``available`` (False when that is unknown, 0)."""
    return available > 0 and needed > max_fraction * available


def total_memory() -> int | None:
    """This machine's physical memory in bytes (standard library only), None where unknown (Windows)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


@dataclass(frozen=True)
class BlockGrid:
    """Cores of ``block_size`` tiling ``shape`` (z, y, x), each read with ``halo``."""

    shape: Triple
    block_size: Triple
    halo: Triple

    @classmethod
    def create(cls, shape: Sequence[int], block_size: int | Sequence[int], halo: int | Sequence[int]) -> "BlockGrid":
        """Validate and build a grid (ints broadcast to all three axes)."""
        shape3 = _triple(tuple(shape)[-3:], "shape")
        bs = _triple(block_size, "block_size")
        hl = _triple(halo, "halo")
        if any(n < 1 for n in shape3):
            raise ConfigError(f"volume shape {shape3}: every axis needs at least one voxel")
        if any(b < 1 for b in bs):
            raise ConfigError(f"block_size={bs}: every side must be >= 1")
        if any(h < 0 for h in hl):
            raise ConfigError(f"halo={hl}: must be >= 0")
        bs = tuple(min(b, n) for b, n in zip(bs, shape3))
        return cls(shape3, bs, hl)  # type: ignore[arg-type]

    @property
    def nblocks(self) -> Triple:
        """Number of blocks along (z, y, x)."""
        return tuple(-(-n // b) for n, b in zip(self.shape, self.block_size))  # type: ignore[return-value]

    @property
    def extent_size(self) -> Triple:
        """Largest extent (core + 2 halo) of any block, clipped to the volume."""
        return tuple(min(b + 2 * h, n) for b, h, n in zip(self.block_size, self.halo, self.shape))  # type: ignore[return-value]

    def __len__(self) -> int:
        return math.prod(self.nblocks)

    def indices(self) -> Iterator[Triple]:
        """Block indices (i, j, k) in C order."""
        return itertools.product(*(range(n) for n in self.nblocks))  # type: ignore[return-value]

    def flat(self, index: Triple) -> int:
        """Flat C-order number of a block index."""
        nz, ny, nx = self.nblocks
        return (index[0] * ny + index[1]) * nx + index[2]

    def core(self, index: Triple) -> tuple[slice, slice, slice]:
        """Global slices (z, y, x) of the block's core."""
        return tuple(
            slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, self.block_size, self.shape)
        )  # type: ignore[return-value]

    def extent(self, index: Triple) -> tuple[slice, slice, slice]:
        """Global slices (z, y, x) of the core grown by the halo, clipped to the volume."""
        return tuple(
            slice(max(c.start - h, 0), min(c.stop + h, n))
            for c, h, n in zip(self.core(index), self.halo, self.shape)
        )  # type: ignore[return-value]

    def neighbours(self, index: Triple) -> Iterator[Triple]:
        """The up to 26 blocks sharing a face, edge or corner with ``index``."""
        for d in itertools.product((-1, 0, 1), repeat=3):
            if d == (0, 0, 0):
                continue
            nb = tuple(i + o for i, o in zip(index, d))
            if all(0 <= v < n for v, n in zip(nb, self.nblocks)):
                yield nb  # type: ignore[misc]


def intersect(a: Sequence[slice], b: Sequence[slice]) -> tuple[slice, ...] | None:
    """Intersection of two boxes given as slices, or None when empty."""
    out = []
    for sa, sb in zip(a, b):
        lo, hi = max(sa.start, sb.start), min(sa.stop, sb.stop)
        if hi <= lo:
            return None
        out.append(slice(lo, hi))
    return tuple(out)


def relative(box: Sequence[slice], origin: Sequence[slice]) -> tuple[slice, ...]:
    """Express global slices ``box`` relative to the start of ``origin``."""
    return tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(box, origin))
