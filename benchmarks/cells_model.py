#!/usr/bin/env python
"""Accuracy of a cells (membrane) model on held-out volumes, per source, next to a classical baseline.

Sources (each row says which):

- ``membrane-test``: volumes of :mod:`mediar3d.data.synthetic_membrane` with settings drawn by
  ``sample_membrane_params`` from seeds ``[TEST_SEED, k]``, which neither the training data
  (``prepare_cells_model_data.py``, seeds ``[0, k]``) nor the tuning volumes (``--write-tuning``,
  seeds ``[TUNE_SEED, k]``) use; nothing was chosen on them;
- ``sample``: the bundled cells sample volume (``mediar3d segment --sample cells``).

No real annotated membrane-stained volume was available to the project, so there is no real
source. The diameter is estimated by the model, never given; the anisotropy is the
generator's. The baseline (``--baseline``) is a seeded watershed on the smoothed membrane
signal (:func:`watershed_baseline`), given the true diameter and anisotropy: an advantage
the network does not get. Prints one JSON row per volume (AP@0.5, AP@0.75, true and found
counts, seconds) and the mean AP@0.5 per source and method.

Usage::

    python benchmarks/cells_model.py --model cells --baseline
    python benchmarks/cells_model.py --write-tuning TUNE/       # image/label pairs for `mediar3d tune`
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from mediar3d.data.synthetic_membrane import make_membrane_volume, sample_membrane_params
from mediar3d.evaluation import average_precision
from mediar3d.inference import run_segmentation
from mediar3d.inference.diameter import median_diameter
from mediar3d.io import read_image, read_labels, write_image, write_labels
from mediar3d.sample import sample_labels_path, sample_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from prepare_cells_model_data import volume_shape  # noqa: E402

#: Seeds of the held-out test volumes and of the tuning volumes (the training data uses 0).
TEST_SEED, TUNE_SEED = 100, 50


def membrane_volumes(seed: int, count: int):
    """Yield (name, image, labels, anisotropy) of generator volumes ``[seed, k]``, k < count."""
    for k in range(count):
        rng = np.random.default_rng([seed, k])
        params = sample_membrane_params(rng)
        image, labels = make_membrane_volume(volume_shape(params, rng), seed=int(rng.integers(2**31 - 1)), **params)
        yield f"membrane-{seed}-{k}", image, labels, float(params["anisotropy"])


def watershed_baseline(image: np.ndarray, anisotropy: float, diameter: float) -> np.ndarray:
    """Classical membrane segmentation: smooth, find the tissue, seed basins between walls, watershed.

    Args:
        image: (z, y, x) membrane stain.
        anisotropy: z step / x-y pixel size.
        diameter: Typical cell diameter (x/y pixels); the true one is passed in the benchmark.

    Returns:
        Labels (z, y, x) int32.
    """
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    from mediar3d.data.normalize import normalize_percentile

    spacing = np.array([anisotropy, 1.0, 1.0])
    img = normalize_percentile(np.asarray(image, np.float32), (0.5, 99.5))
    smooth = ndimage.gaussian_filter(img, max(1.0, diameter / 12) / spacing)
    coarse = ndimage.gaussian_filter(img, diameter / 2 / spacing)
    tissue = coarse > 0.5 * threshold_otsu(coarse)
    walls = smooth > threshold_otsu(smooth[tissue]) if tissue.any() else smooth > threshold_otsu(smooth)
    inside = ndimage.distance_transform_edt(~walls & tissue, sampling=spacing)
    peaks = peak_local_max(inside, min_distance=max(2, int(diameter / 4)), threshold_abs=diameter / 10,
                           labels=tissue.astype(int), exclude_border=False)
    markers = np.zeros(img.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(smooth, markers, mask=tissue).astype(np.int32)


def score(source: str, name: str, labels: np.ndarray, truth: np.ndarray, method: str, seconds: float) -> dict:
    ap50, ap75 = (float(v) for v in average_precision(truth, labels, thresholds=(0.5, 0.75)))
    return {"source": source, "volume": name, "method": method, "ap50": round(ap50, 3), "ap75": round(ap75, 3),
            "n_true": int(truth.max()), "n_found": int(labels.max()), "seconds": round(seconds, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cells", help="model name or checkpoint (default: the bundled cells model)")
    p.add_argument("--volumes", type=int, default=6, help="held-out test volumes")
    p.add_argument("--baseline", action="store_true", help="also score the watershed baseline")
    p.add_argument("--no-model", action="store_true", help="score only the baseline")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="segment option (repeatable)")
    p.add_argument("--write-tuning", type=Path, default=None, metavar="DIR",
                   help="write --volumes tuning volumes (seed TUNE_SEED) as DIR/<name>_{image,labels}.tif and stop")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.write_tuning is not None:
        for name, image, labels, aniso in membrane_volumes(TUNE_SEED, args.volumes):
            voxel = (aniso * 0.5, 0.5, 0.5)
            write_image(args.write_tuning / f"{name}_image.tif", image, voxel_size=voxel)
            write_labels(args.write_tuning / f"{name}_labels.tif", labels, voxel_size=voxel)
            print(f"{name}: {image.shape}, anisotropy {aniso}, {int(labels.max())} cells", flush=True)
        return 0
    options = {k: json.loads(v) for k, v in (item.partition("=")[::2] for item in args.set)}
    panel = [("membrane-test", *row) for row in membrane_volumes(TEST_SEED, args.volumes)]
    sample = read_image(sample_path("cells"))
    vz, vy, vx = sample.voxel_size
    panel.append(("sample", "cells-sample", sample, np.asarray(read_labels(sample_labels_path("cells"))),
                  float(vz) / (0.5 * (float(vy) + float(vx)))))
    rows = []
    for source, name, image, truth, aniso in panel:
        if not args.no_model:
            start = time.perf_counter()
            result = run_segmentation(image, args.model, anisotropy=aniso, progress=False, **options)
            rows.append(score(source, name, result.labels, truth, "model", time.perf_counter() - start))
            print(json.dumps(rows[-1]), flush=True)
        if args.baseline:
            start = time.perf_counter()
            data = np.asarray(getattr(image, "data", image))
            labels = watershed_baseline(data, aniso, float(median_diameter(truth, aniso)))
            rows.append(score(source, name, labels, truth, "watershed", time.perf_counter() - start))
            print(json.dumps(rows[-1]), flush=True)
    for source in dict.fromkeys(r["source"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows):
            values = [r["ap50"] for r in rows if r["source"] == source and r["method"] == method]
            if values:
                print(f"{source} {method}: mean AP@0.5 {np.mean(values):.3f} over {len(values)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
