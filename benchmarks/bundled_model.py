#!/usr/bin/env python
"""Accuracy of a model on a validation panel, reported per data source.

Sources (each row says which):

- ``gen1``: held-out volumes of the training generator (:mod:`mediar3d.data.synthetic`), each
  stressing one thing (small or large nuclei, strong anisotropy with a dim 8-bit signal,
  crowding), and the bundled sample volume;
- ``gen2``: held-out volumes of the independent tissue generator
  (:mod:`mediar3d.data.synthetic_tissue`): dense, lobed, anisotropic PSF;
- ``real3d`` (``--nuclei3d ROOT``): real annotated volumes ``ROOT/<name>/{image,labels}.tif``,
  scored whole and on their second z-half (the part ``prepare_default_model_data.py`` keeps
  out of training);
- ``real2d`` (``--nuclei2d ROOT``): every 10th image of each source of a real 2D corpus (the
  images training keeps out), segmented in 2D.

The diameter is always estimated, never given; the voxel size comes from the file or the
generator. Prints one JSON row per volume (AP@0.5, AP@0.75, the median over the matched
objects of predicted / true voxels, true and found counts, estimated diameter, seconds) and
per source the mean AP@0.5 and the median of those size ratios (above 1: masks too large).

Usage::

    python benchmarks/bundled_model.py                       # the bundled default model
    python benchmarks/bundled_model.py --model run/model_best.pt --threads 2 \
        --nuclei3d DATA/nuclei3d --nuclei2d DATA/nuclei2d --set min_size_fraction=0.2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from mediar3d.data.synthetic import make_nuclei_volume
from mediar3d.data.synthetic_tissue import make_tissue_volume
from mediar3d.evaluation import average_precision
from mediar3d.evaluation.matching import match_instances
from mediar3d.inference import run_segmentation
from mediar3d.io import read_image, read_labels
from mediar3d.sample import sample_labels_path, sample_path

#: name -> make_nuclei_volume arguments (seeds the training script never draws).
PANEL: dict[str, dict] = {
    "test-987": dict(shape=(24, 96, 96), radius_range=(6.0, 9.0), anisotropy=2.0, seed=987, bit_depth=16, snr=10.0),
    "small-d8": dict(shape=(48, 96, 96), radius_range=(3.5, 4.5), anisotropy=1.0, seed=11, bit_depth=8, snr=8.0),
    "large-d60": dict(shape=(96, 192, 192), radius_range=(27.0, 33.0), anisotropy=1.0, seed=12, bit_depth=16, snr=12.0),
    "aniso3-dim8bit": dict(shape=(24, 128, 128), radius_range=(7.0, 11.0), anisotropy=3.0, seed=13, bit_depth=8,
                           snr=3.0),
    "crowded": dict(shape=(40, 128, 128), radius_range=(5.0, 8.0), anisotropy=1.5, seed=14, bit_depth=16, snr=6.0,
                    density=0.7),
}


#: name -> make_tissue_volume arguments (seeds the data script never draws).
PANEL_GEN2: dict[str, dict] = {
    "tissue-dense": dict(shape=(64, 256, 256), anisotropy=2.0, diameter=17.0, packing=0.5, lobes=0.15,
                         elongation=0.25, snr=8.0, seed=9001),
    "tissue-lobed-aniso3": dict(shape=(32, 160, 160), anisotropy=3.0, diameter=22.0, packing=0.45, lobes=0.3,
                                elongation=0.3, psf_z_factor=5.0, snr=6.0, seed=9002, bit_depth=8),
    "tissue-small-dim": dict(shape=(48, 128, 128), anisotropy=1.5, diameter=11.0, packing=0.4, dim_fraction=0.35,
                             snr=3.0, seed=9003),
}


def score(source: str, name: str, image, truth: np.ndarray, model: str | None, anisotropy: float | None,
          options: dict, do_3d: bool = True) -> dict:
    """Segment ``image`` (diameter estimated) and score it against ``truth`` (both (z, y, x) or (y, x))."""
    start = time.perf_counter()
    result = run_segmentation(image, model, anisotropy=anisotropy, do_3d=do_3d, progress=False, **options)
    ap50, ap75 = (float(v) for v in average_precision(truth, result.labels, thresholds=(0.5, 0.75)))
    ratios = match_instances(np.asarray(truth), result.labels, threshold=0.5).size_ratio
    return {"source": source, "volume": name, "ap50": round(ap50, 3), "ap75": round(ap75, 3),
            "size_ratio": round(float(np.median(ratios)), 3) if ratios.size else None,
            "n_true": int(np.asarray(truth).max()), "n_found": int(result.labels.max()),
            "diameter": round(float(result.params.get("diameter") or 0), 1),
            "seconds": round(time.perf_counter() - start, 1)}


def real3d_rows(root: Path, model, options: dict) -> list[dict]:
    rows = []
    for folder in sorted(p for p in root.iterdir() if (p / "image.tif").is_file()):
        image, truth = read_image(folder / "image.tif"), np.asarray(read_labels(folder / "labels.tif"))
        rows.append(score("real3d", folder.name, image, truth, model, None, options))
        print(json.dumps(rows[-1]), flush=True)
        half = truth.shape[0] // 2
        second = dataclasses.replace(image, data=np.asarray(image.data)[half:])
        rows.append(score("real3d-val-half", folder.name + "[z/2:]", second, truth[half:], model, None, options))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def real2d_rows(root: Path, model, options: dict) -> list[dict]:
    import tifffile

    rows = []
    for source in sorted(p for p in root.iterdir() if (p / "images").is_dir()):
        images = sorted((source / "images").glob("*.tif"))
        for image_path in images[::10]:
            truth = tifffile.imread(source / "masks" / image_path.name).astype(np.int32)
            image = tifffile.imread(image_path)
            if image.ndim != 2:
                continue
            rows.append(score("real2d", f"{source.name}/{image_path.name}", image, truth, model, None, options,
                              do_3d=False))
    return rows


def parse_options(items: list[str]) -> dict:
    options = {}
    for item in items:
        key, _, value = item.partition("=")
        options[key] = json.loads(value)
    return options


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model name or checkpoint (default: bundled)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--sources", default="gen1,gen2,real3d,real2d", help="comma-separated sources to score")
    p.add_argument("--nuclei3d", type=Path, default=None, help="root of real annotated 3D volumes")
    p.add_argument("--nuclei2d", type=Path, default=None, help="root of a real 2D corpus (every 10th image)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                   help="segment option, e.g. min_size_fraction=0.2 (repeatable)")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    options = parse_options(args.set)
    sources = set(args.sources.split(","))
    rows = []
    if "gen1" in sources:
        for name, settings in PANEL.items():
            settings = dict(settings)
            image, truth = make_nuclei_volume(settings.pop("shape"), **settings)
            rows.append(score("gen1", name, image, truth, args.model, settings["anisotropy"], options))
            print(json.dumps(rows[-1]), flush=True)
        rows.append(score("gen1", "sample", read_image(sample_path()), read_labels(sample_labels_path()), args.model,
                          None, options))
        print(json.dumps(rows[-1]), flush=True)
    if "gen2" in sources:
        for name, settings in PANEL_GEN2.items():
            settings = dict(settings)
            image, truth = make_tissue_volume(settings.pop("shape"), **settings)
            rows.append(score("gen2", name, image, truth, args.model, settings["anisotropy"], options))
            print(json.dumps(rows[-1]), flush=True)
    if "real3d" in sources and args.nuclei3d is not None:
        rows += real3d_rows(args.nuclei3d, args.model, options)
    if "real2d" in sources and args.nuclei2d is not None:
        rows += real2d_rows(args.nuclei2d, args.model, options)
    for source in dict.fromkeys(r["source"] for r in rows):
        values = [r["ap50"] for r in rows if r["source"] == source]
        ratios = [r["size_ratio"] for r in rows if r["source"] == source and r["size_ratio"] is not None]
        size = f", matched masks / true objects in voxels: median {np.median(ratios):.2f}" if ratios else ""
        print(f"{source}: mean AP@0.5 {np.mean(values):.3f} over {len(values)}{size}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
