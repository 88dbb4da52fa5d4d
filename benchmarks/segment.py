#!/usr/bin/env python
"""Benchmark `mediar3d.segment` on synthetic volumes: wall time, peak memory, network vs post-processing.

Each size runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own.
The volume is made by `mediar3d.data.synthetic.make_nuclei_volume` (seeded); the bundled default
model segments it with its diameter estimated from the data (the default path), and the labels are
scored against the ground truth (AP at IoU 0.5).

Usage::

    python benchmarks/segment.py                       # 64x256x256 and 128x512x512
    python benchmarks/segment.py --shape 64 256 256 --threads 2 --json out.json
    python benchmarks/segment.py --shape 64 256 256 --threads 2 --tile 256   # the window size before 512
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

SIZES = ((64, 256, 256), (128, 512, 512))


def run_one(shape: tuple[int, int, int], seed: int, model: str | None, diameter: float | None,
            options: dict | None = None) -> dict:
    import numpy as np
    import torch

    from mediar3d.data.synthetic import make_nuclei_volume
    from mediar3d.evaluation import average_precision
    from mediar3d.inference import run_segmentation

    image, labels = make_nuclei_volume(shape, seed=seed, bit_depth=16)
    start = time.perf_counter()
    result = run_segmentation(image, model, diameter=diameter, progress=False, **(options or {}))
    wall = time.perf_counter() - start
    params = result.params
    return {
        "shape": list(shape), "n_true": int(labels.max()), "n_pred": params["n_objects"],
        "ap50": round(float(average_precision(labels, result.labels, thresholds=(0.5,))[0]), 3),
        "wall_s": round(wall, 1), "diameter_s": params["time_diameter_s"], "network_s": params["time_network_s"],
        "postprocess_s": params["time_postprocess_s"], "diameter": params["diameter"],
        "network_grid": params["network_shape"],
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "torch_threads": torch.get_num_threads(), "numpy_version": np.__version__, **(options or {}),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=3, default=None, help="one size (z y x); default: both standard sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="model name or checkpoint (default: bundled)")
    p.add_argument("--diameter", type=float, default=None, help="skip the estimate and use this diameter")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--tile", type=int, default=None, help="2D window side (default: segment's)")
    p.add_argument("--batch-size", type=int, default=None, help="windows per network call (default: segment's)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    if args.shape is not None:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        options = {k: v for k, v in (("tile", args.tile), ("batch_size", args.batch_size)) if v is not None}
        print(json.dumps(run_one(tuple(args.shape), args.seed, args.model, args.diameter, options)))
        return 0
    results = []
    for shape in SIZES:
        cmd = [sys.executable, __file__, "--shape", *map(str, shape), "--seed", str(args.seed)]
        for flag, value in (("--model", args.model), ("--diameter", args.diameter), ("--threads", args.threads),
                            ("--tile", args.tile), ("--batch-size", args.batch_size)):
            if value is not None:
                cmd += [flag, str(value)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(out))
        print(out, flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": platform.platform(), "results": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
