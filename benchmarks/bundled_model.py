#!/usr/bin/env python
"""Accuracy of a 2D model run in 3D on a fixed panel of held-out synthetic volumes.

Each panel volume stresses one thing the bundled model is judged on (small or large
nuclei, strong anisotropy with a dim 8-bit signal, crowding); the bundled sample volume
is scored too. The diameter is always estimated, never given. Prints one row per volume
(AP@0.5, AP@0.75, true and found counts, estimated diameter, seconds) and the mean AP@0.5.

Usage::

    python benchmarks/bundled_model.py                       # the bundled default model
    python benchmarks/bundled_model.py --model run/model_best.pt --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from mediar3d.data.synthetic import make_nuclei_volume
from mediar3d.evaluation import average_precision
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


def score(name: str, image, truth: np.ndarray, model: str | None, anisotropy: float | None) -> dict:
    """Segment ``image`` (diameter estimated) and score it against ``truth`` (both (z, y, x))."""
    start = time.perf_counter()
    result = run_segmentation(image, model, anisotropy=anisotropy, progress=False)
    ap50, ap75 = (float(v) for v in average_precision(truth, result.labels, thresholds=(0.5, 0.75)))
    return {"volume": name, "ap50": round(ap50, 3), "ap75": round(ap75, 3), "n_true": int(truth.max()),
            "n_found": int(result.labels.max()), "diameter": round(float(result.params.get("diameter") or 0), 1),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model name or checkpoint (default: bundled)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, settings in PANEL.items():
        settings = dict(settings)
        image, truth = make_nuclei_volume(settings.pop("shape"), **settings)
        rows.append(score(name, image, truth, args.model, settings["anisotropy"]))
        print(json.dumps(rows[-1]), flush=True)
    rows.append(score("sample", read_image(sample_path()), read_labels(sample_labels_path()), args.model, None))
    print(json.dumps(rows[-1]))
    print(f"mean AP@0.5 over {len(rows)} volumes: {np.mean([r['ap50'] for r in rows]):.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
