#!/usr/bin/env python
"""Write the training data of the bundled nuclei model and its dataset mapping (a thin driver).

The model itself is trained by the library (``mediar3d train --config
src/mediar3d/configs/default_model.json --data OUT/mapping.json``); this script only lays
out the data it reads:

- ``gen1/``: volumes of :mod:`mediar3d.data.synthetic` (settings by ``sample_nuclei_params``);
- ``gen2/``: volumes of the independent tissue generator :mod:`mediar3d.data.synthetic_tissue`;
- the real 2D nuclei corpus (``<nuclei2d>/<source>/{images,masks}/*.tif``), every 10th image
  of each source (sorted by name) in the validation split;
- real annotated 3D volumes (``<nuclei3d>/<name>/{image,labels}.tif``), each cut along z into a
  training part (first half) and a validation part (second half).

Volumes are written as 2D slices along z, y and x (``--per-axis`` annotated slices per
orientation; all annotated slices of real volumes), each percentile-normalised as a whole
volume (as inference does; each pair's ``intensity_range`` [0, 1] keeps training from
normalising the slice again on its own) and stretched along z to isotropic pixels
(:func:`mediar3d.data.slicing.resample_plane`). Every slice's pair records its volume's 3D
diameter (:func:`mediar3d.inference.diameter.median_diameter`), so that training zooms it to
the model's diameter by the volume's definition, not the slice's. Every 8th volume of each
generator is in the validation split. Nothing is copied into the repository.

Usage::

    python scripts/prepare_default_model_data.py --nuclei2d DATA/nuclei2d --nuclei3d DATA/nuclei3d \
        -o train_data --volumes 48
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger("prepare_default_model_data")


def write_slices(folder: Path, name: str, image: np.ndarray, labels: np.ndarray, anisotropy: float, split: str,
                 per_axis: int | None, rng: np.random.Generator) -> list[dict]:
    """Write annotated slices of a volume along z, y, x as 2D pairs; returns their mapping entries."""
    from mediar3d.data.normalize import normalize_percentile
    from mediar3d.data.slicing import annotated_slices, resample_plane, take_slice
    from mediar3d.inference.diameter import median_diameter
    from mediar3d.io import write_image, write_labels

    diameter = median_diameter(labels, anisotropy)
    if diameter is None:
        return []
    image = normalize_percentile(np.asarray(image, np.float32), (0.0, 99.5))
    pairs = []
    for orientation in ("z", "y", "x"):
        index = annotated_slices(labels, orientation)
        if per_axis is not None and index.size > per_axis:
            index = np.sort(rng.choice(index, size=per_axis, replace=False))
        for i in index:
            plane = resample_plane(take_slice(image, orientation, int(i)), orientation, anisotropy, labels=False)
            mask = resample_plane(take_slice(labels, orientation, int(i)), orientation, anisotropy, labels=True)
            stem = f"{name}_{orientation}{int(i):04d}"
            write_image(folder / "images" / f"{stem}.tif", plane.astype(np.float32))
            write_labels(folder / "labels" / f"{stem}.tif", mask)
            pairs.append({"image": f"{folder.name}/images/{stem}.tif", "label": f"{folder.name}/labels/{stem}.tif",
                          "split": split, "diameter": round(float(diameter), 3), "intensity_range": [0.0, 1.0]})
    return pairs


def synthetic_volumes(out: Path, kind: str, count: int, seed: int, per_axis: int) -> list[dict]:
    """Slice `count` volumes of one generator; returns the mapping pairs (every 8th volume is 'val')."""
    from mediar3d.data.synthetic import make_nuclei_volume, sample_nuclei_params
    from mediar3d.data.synthetic_tissue import make_tissue_volume, sample_tissue_params

    rng = np.random.default_rng(seed)
    pairs = []
    for k in range(count):
        if kind == "gen1":
            params = sample_nuclei_params(rng)
            radius = float(np.mean(params["radius_range"]))
            side = int(np.clip(6 * radius + 64, 96, 224))
            aniso = float(params["anisotropy"])
            depth = max(8, int(round(side * rng.uniform(0.5, 1.0) / aniso)))
            image, labels = make_nuclei_volume((depth, side, side), seed=int(rng.integers(2**31 - 1)), **params)
        else:
            params = sample_tissue_params(rng)
            side = int(np.clip(5 * params["diameter"] + 64, 96, 200))
            aniso = float(params["anisotropy"])
            depth = max(8, int(round(side * rng.uniform(0.5, 1.0) / aniso)))
            image, labels = make_tissue_volume((depth, side, side), seed=int(rng.integers(2**31 - 1)), **params)
        split = "val" if k % 8 == 7 else "train"
        written = write_slices(out / kind, f"{kind}_{k:03d}", np.asarray(image), np.asarray(labels), aniso, split,
                               per_axis, rng)
        pairs += written
        logger.info("%s %d/%d: shape %s, anisotropy %.1f, %d nuclei, %d slices", kind, k + 1, count, image.shape,
                    aniso, int(labels.max()), len(written))
    return pairs


def real2d_datasets(root: Path) -> list[dict]:
    datasets = []
    for source in sorted(p for p in root.iterdir() if (p / "images").is_dir()):
        images = sorted((source / "images").glob("*.tif"))
        pairs = [{"image": str(image), "label": str(source / "masks" / image.name),
                  "split": "val" if k % 10 == 0 else "train"}
                 for k, image in enumerate(images) if (source / "masks" / image.name).is_file()]
        datasets.append({"name": f"real2d_{source.name}", "pairs": pairs})
    return datasets


def real3d_datasets(root: Path, out: Path) -> list[dict]:
    from mediar3d.io import read_image, read_labels

    pairs = []
    rng = np.random.default_rng(0)
    for folder in sorted(p for p in root.iterdir() if (p / "image.tif").is_file()):
        image = read_image(folder / "image.tif")
        labels = np.asarray(read_labels(folder / "labels.tif"))
        vz, vy, vx = image.voxel_size
        aniso = float(vz) / (0.5 * (float(vy) + float(vx)))
        half = labels.shape[0] // 2
        for split, region in (("train", slice(0, half)), ("val", slice(half, None))):
            pairs += write_slices(out / "real3d", f"{folder.name}_{split}", np.asarray(image.data)[region],
                                  labels[region], aniso, split, None, rng)
    return [{"name": "real3d", "pairs": pairs}] if pairs else []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nuclei2d", type=Path, default=None, help="root of the real 2D nuclei corpus")
    p.add_argument("--nuclei3d", type=Path, default=None, help="root of real annotated 3D nuclei volumes")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (data + mapping.json)")
    p.add_argument("--volumes", type=int, default=48, help="volumes per synthetic generator")
    p.add_argument("--per-axis", type=int, default=16, help="annotated slices per orientation and synthetic volume")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", type=str, default="gen1=0.3,gen2=0.3,real2d=0.2,real3d=0.2",
                   help="share of the training draws per data kind")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    shares = {k: float(v) for k, v in (item.split("=") for item in args.weights.split(","))}
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    datasets = []
    for kind, offset in (("gen1", 0), ("gen2", 1)):
        pairs = synthetic_volumes(out, kind, args.volumes, args.seed * 10 + offset, args.per_axis)
        datasets.append({"name": kind, "probability": shares.get(kind, 0.0),
                         "pairs": pairs})
    if args.nuclei2d is not None:
        real2d = real2d_datasets(args.nuclei2d.resolve())
        total = sum(len(d["pairs"]) for d in real2d)
        for d in real2d:
            d["probability"] = shares.get("real2d", 0.0) * len(d["pairs"]) / total
        datasets += real2d
    if args.nuclei3d is not None:
        real3d = real3d_datasets(args.nuclei3d.resolve(), out)
        for d in real3d:
            d["probability"] = shares.get("real3d", 0.0)
        datasets += real3d
    mapping = {"format": "mediar3d-dataset-mapping", "version": 1, "seed": args.seed, "probability_mode": "dataset",
               "datasets": datasets}
    (out / "mapping.json").write_text(json.dumps(mapping, indent=1))
    logger.info("wrote %s (%d datasets)", out / "mapping.json", len(datasets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
