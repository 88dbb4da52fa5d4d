#!/usr/bin/env python
"""Peak resident memory of `mediar3d segment` end to end on a synthetic volume.

Writes a synthetic 16-bit nuclei volume (`mediar3d.data.synthetic.make_nuclei_volume`, seeded)
as a TIFF, runs ``python -m mediar3d segment`` on it in a child process with the bundled default
model (diameter estimated, whole volume: ``--blocks off``), and reports the child's peak resident
set size (``ru_maxrss`` of the waited-for child), its wall time, its status lines and AP@0.5.

Usage::

    python benchmarks/memory.py --shape 128 512 512 --dir bench-memory
    python benchmarks/memory.py --shape 32 128 128 --dir bench-memory --json memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=int, nargs=3, default=(128, 512, 512), help="volume size z y x")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", default="bench-memory", help="work folder for the volume and the labels")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the child (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    import numpy as np
    import tifffile

    from mediar3d.data.synthetic import make_nuclei_volume

    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    name = "x".join(map(str, shape))
    image_path, truth_path = work / f"nuclei_{name}.tif", work / f"nuclei_{name}_truth.npy"
    if not image_path.exists():
        image, truth = make_nuclei_volume(shape, seed=args.seed, bit_depth=16)
        tifffile.imwrite(image_path, image.astype(np.uint16))
        np.save(truth_path, truth)
        del image, truth
    out = work / "out"
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, "-m", "mediar3d", "segment", str(image_path), "-o", str(out), "--blocks", "off",
           "--overwrite", "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        return proc.returncode
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    result = {"shape": list(shape), "peak_rss_bytes": int(peak), "peak_rss_gb": round(peak / 1e9, 3),
              "wall_s": round(wall, 1), "command": " ".join(cmd[1:])}
    result["status"] = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()][-8:]
    try:
        from mediar3d.evaluation import average_precision
        from mediar3d.io import read_image

        labels = np.asarray(read_image(next(out.glob("*_labels.tif"))).data)
        truth = np.load(truth_path)
        result["ap50"] = round(float(average_precision(truth, labels, thresholds=(0.5,))[0]), 3)
        result["n_true"], result["n_pred"] = int(truth.max()), int(labels.max())
    except Exception as error:  # the memory figure stands without the score
        result["ap50_error"] = str(error)
    print(json.dumps(result, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
