#!/usr/bin/env python
"""Benchmark the 3D feature network against the orthogonal-slice 2D path: network time and peak memory.

Both methods turn one normalised synthetic volume (default 64x256x256, from
`mediar3d.data.synthetic.make_nuclei_volume`) into 3D flows + cell-probability logits:

- ``feature3d``: `mediar3d.inference.volume3d.predict_volume` with the ``feature3d``
  network (default: frozen ``unet-small`` encoder, depth 4, default 3D decoder) in sliding
  3D windows (default 32x256x256, overlap 0.25);
- ``ortho``: `mediar3d.inference.orthoslice.predict_orthoslices` with the ``unet-small``
  2D network on every z-, y- and x-slice (Algorithm 1), tile 256, batch 8.

Weights do not change the cost, so untrained networks are used unless checkpoints are
given. Post-processing (identical for both) is not timed. ``network_s`` is wall time,
``cpu_s`` the process CPU time over all threads (robust when other jobs share the cores). Each method runs in a fresh
subprocess, so its peak resident memory (ru_maxrss) is its own.

Usage::

    python benchmarks/feature3d.py                                  # both methods, 64x256x256
    python benchmarks/feature3d.py --method feature3d --shape 32 128 128 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

METHODS = ("feature3d", "ortho")


def _network(method: str, checkpoint: str | None):
    from mediar3d.models import create_model, load_model

    if checkpoint:
        return load_model(checkpoint)[0]
    return create_model("feature3d" if method == "feature3d" else "unet-small")


def run_one(method: str, shape: tuple[int, int, int], seed: int, checkpoint: str | None, roi: tuple[int, int, int],
            batch_size: int) -> dict:
    import numpy as np
    import torch

    from mediar3d.data.synthetic import make_nuclei_volume
    from mediar3d.inference.normalize import normalize_percentile

    image, _ = make_nuclei_volume(shape, seed=seed)
    volume = normalize_percentile(image)
    net = _network(method, checkpoint).eval()
    params = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu_start = time.perf_counter(), time.process_time()
    if method == "feature3d":
        from mediar3d.inference.volume3d import predict_volume

        out = predict_volume(net, volume, roi_size=roi, overlap=0.25, batch_size=batch_size)
        finite = bool(np.isfinite(out).all())
    else:
        from functools import partial

        from mediar3d.inference.orthoslice import predict_orthoslices
        from mediar3d.inference.tiling import predict_slices

        slice_fn = partial(predict_slices, net_fn=net, tile=256, overlap=0.25, batch_size=8, divisor=net.stride)
        flows, logits = predict_orthoslices(volume, slice_fn, batch_size=8)
        finite = bool(np.isfinite(flows).all() and np.isfinite(logits).all())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "method": method, "shape": list(shape), "network_s": round(seconds, 2), "cpu_s": round(cpu, 2),
        "s_per_mvoxel": round(seconds / (np.prod(shape) / 1e6), 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "rss_before_gb": round(rss_before / 1024**2, 2), "params_m": round(params / 1e6, 2),
        "trainable_m": round(trainable / 1e6, 2), "roi": list(roi) if method == "feature3d" else None,
        "finite": finite, "torch_threads": torch.get_num_threads(), "load_avg_1min": round(os.getloadavg()[0], 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=METHODS, default=None, help="run one method here (default: both, in subprocesses)")
    p.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256), help="volume size (z y x)")
    p.add_argument("--roi", type=int, nargs=3, default=(32, 256, 256), help="feature3d sliding window (z y x)")
    p.add_argument("--batch-size", type=int, default=1, help="feature3d windows per network call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--feature3d-checkpoint", default=None, help="a trained feature3d checkpoint (default: untrained)")
    p.add_argument("--ortho-checkpoint", default=None, help="a 2D checkpoint (default: untrained unet-small)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    if args.method is not None:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        checkpoint = args.feature3d_checkpoint if args.method == "feature3d" else args.ortho_checkpoint
        print(json.dumps(run_one(args.method, tuple(args.shape), args.seed, checkpoint, tuple(args.roi),
                                 args.batch_size)))
        return 0
    results = []
    for method in METHODS:
        cmd = [sys.executable, __file__, "--method", method, "--shape", *map(str, args.shape), "--roi",
               *map(str, args.roi), "--batch-size", str(args.batch_size), "--seed", str(args.seed)]
        for flag, value in (("--feature3d-checkpoint", args.feature3d_checkpoint),
                            ("--ortho-checkpoint", args.ortho_checkpoint), ("--threads", args.threads)):
            if value is not None:
                cmd += [flag, str(value)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(out))
        print(out, flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": platform.platform(), "cpus": os.cpu_count(), "results": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
