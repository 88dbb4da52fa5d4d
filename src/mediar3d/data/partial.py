"""Simulated partial annotation: keep a seeded subset of the instances of a label image.

For few-shot and learning-curve experiments: from a fully annotated volume, keep a
fraction (or a number) of the objects and erase the rest, as if an annotator had drawn
only those. The draw depends only on the seed and the set of label ids, so the same call
always keeps the same objects. Kept objects keep their ids (no renumbering).
"""

from __future__ import annotations

import zlib

import fastremap
import numpy as np

from mediar3d.errors import ConfigError, InputError

__all__ = ["choose_instances", "pair_seed", "simulate_partial"]


def choose_instances(ids: np.ndarray, *, fraction: float | None = None, count: int | None = None,
                     seed: int = 0) -> np.ndarray:
    """Pick the ids to keep: ``round(fraction * n)`` (at least 1 if fraction > 0) or ``count`` of them.

    Args:
        ids: The instance ids present (non-zero), any order.
        fraction: Share of the instances to keep, in [0, 1].
        count: Number of instances to keep (all of them if there are fewer).
        seed: Seed of the draw.

    Returns:
        Sorted int64 array of the kept ids.

    Raises:
        ConfigError: neither or both of fraction / count, or a value out of range.
    """
    if (fraction is None) == (count is None):
        raise ConfigError("give exactly one of fraction (0..1) or count (>= 0) of instances to keep")
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    ids = ids[ids != 0]
    if fraction is not None:
        if not 0.0 <= float(fraction) <= 1.0:
            raise ConfigError(f"fraction {fraction!r}: must be between 0 and 1")
        n_keep = round(float(fraction) * ids.size)
        if fraction > 0 and ids.size:
            n_keep = max(n_keep, 1)
    else:
        if int(count) < 0:
            raise ConfigError(f"count {count!r}: must be >= 0")
        n_keep = min(int(count), ids.size)
    rng = np.random.default_rng(int(seed))
    return np.sort(rng.choice(ids, size=n_keep, replace=False)) if n_keep else ids[:0]


def simulate_partial(labels: np.ndarray, *, fraction: float | None = None, count: int | None = None,
                     seed: int = 0) -> np.ndarray:
    """Erase all but a seeded subset of the instances of a label image.

    Args:
        labels: Integer instance labels (z, y, x) or (y, x), 0 = background.
        fraction: Share of the instances to keep, in [0, 1] (at least one is kept if > 0).
        count: Number of instances to keep instead of a fraction.
        seed: Seed of the draw.

    Returns:
        New labels of the same shape and dtype; the kept objects keep their ids.

    Raises:
        InputError: non-integer labels.
        ConfigError: bad fraction / count.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise InputError(f"labels of dtype {labels.dtype}: expected integer instance labels")
    keep = choose_instances(fastremap.unique(labels), fraction=fraction, count=count, seed=seed)
    return fastremap.mask_except(np.array(labels, copy=True, order="C"), [int(k) for k in keep], in_place=True)


def pair_seed(seed: int, name: str) -> int:
    """A per-file seed from a run seed and a file name (stable across runs and machines)."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % 2**32
