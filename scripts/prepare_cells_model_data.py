#!/usr/bin/env python
"""Write the training data of the bundled ``cells`` model and its dataset mapping (a thin driver).

The model itself is trained by the library (``mediar3d train --config
src/mediar3d/configs/cells_model.json --data OUT/mapping.json --init-from nuclei``); this
script only lays out the data it reads: volumes of the membrane-stained tissue generator
:mod:`mediar3d.data.synthetic_membrane` (settings by ``sample_membrane_params``), written as
2D slices along z, y and x (``--per-axis`` annotated slices per orientation), each
percentile-normalised as a whole volume (as inference does), stretched along z to isotropic
pixels and tagged with its volume's 3D diameter, the same way as the nuclei model's data
(``write_slices`` of ``prepare_default_model_data.py``). Every 8th volume is in the
validation split. Held-out test volumes are drawn with other seeds by
``benchmarks/cells_model.py``.

Usage::

    python scripts/prepare_cells_model_data.py -o cells_data --volumes 40
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_default_model_data import write_slices  # noqa: E402  (the one home of slice writing)

logger = logging.getLogger("prepare_cells_model_data")


def volume_shape(params: dict, rng: np.random.Generator) -> tuple[int, int, int]:
    """(z, y, x) of a generator volume: wide enough for a few cells across, z thinner by the anisotropy."""
    side = int(np.clip(3 * params["diameter"] + 64, 96, 160))
    depth = max(12, int(round(side * rng.uniform(0.4, 0.7) / float(params["anisotropy"]))))
    return depth, side, side


def write_mapping(out: Path, pairs: list[dict], seed: int) -> None:
    """(Re)write ``out/mapping.json`` with one dataset, ``membrane``, holding ``pairs``."""
    from mediar3d.io.atomic import atomic_output

    mapping = {"format": "mediar3d-dataset-mapping", "version": 1, "seed": seed, "probability_mode": "dataset",
               "datasets": [{"name": "membrane", "probability": 1.0, "pairs": pairs}]}
    with atomic_output(out / "mapping.json") as temp:
        Path(temp).write_text(json.dumps(mapping, indent=1))


def membrane_volumes(out: Path, count: int, seed: int, per_axis: int) -> list[dict]:
    """Slice `count` generator volumes into ``out/membrane``; returns the mapping pairs (every 8th is 'val').

    Volume ``k`` is drawn from its own generator (seed ``[seed, k]``), so a run with fewer
    volumes makes the first volumes of a longer one; the mapping is rewritten after every
    volume, so a run stopped early leaves a usable mapping of the volumes done.
    """
    from mediar3d.data.synthetic_membrane import make_membrane_volume, sample_membrane_params

    pairs = []
    for k in range(count):
        rng = np.random.default_rng([seed, k])
        params = sample_membrane_params(rng)
        shape = volume_shape(params, rng)
        image, labels = make_membrane_volume(shape, seed=int(rng.integers(2**31 - 1)), **params)
        split = "val" if k % 8 == 7 else "train"
        written = write_slices(out / "membrane", f"membrane_{k:03d}", image, labels, params["anisotropy"], split,
                               per_axis, rng)
        pairs += written
        logger.info("volume %d/%d: shape %s, anisotropy %.1f, %d cells, %d slices (%s)", k + 1, count, shape,
                    params["anisotropy"], int(labels.max()), len(written), split)
        write_mapping(out, pairs, seed)
    return pairs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (data + mapping.json)")
    p.add_argument("--volumes", type=int, default=128, help="generator volumes")
    p.add_argument("--per-axis", type=int, default=14, help="annotated slices per orientation and volume")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    pairs = membrane_volumes(out, args.volumes, args.seed, args.per_axis)
    logger.info("wrote %s (%d pairs)", out / "mapping.json", len(pairs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
