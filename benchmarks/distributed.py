"""Benchmark: block-wise flows -> masks on a multi-GB Zarr volume, 2-worker local Dask cluster.

Makes a synthetic volume chunk by chunk (never whole in memory): touching ball-shaped
cells on a jittered grid, their flows (unit vectors to each cell's centre, (dz, dy, dx))
and cell-probability logits, stored *uncompressed* so the bytes on disk are the real
volume size. Then runs ``mediar3d.distributed.segment_blocks`` with
``FlowsBlockFn`` (``mediar3d.postprocess.compute_masks`` on every block extent) on a
local cluster whose per-worker memory limit is far below the volume size, samples
each worker's resident memory, and prints a JSON record (wall time, peak memory per
worker, voxels/s, objects found vs made). Deletes the volume afterwards unless --keep.

    python benchmarks/distributed.py --dir bench-distributed --shape 256 1024 1024
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import threading
import time
from pathlib import Path

# This file's name would shadow the `distributed` package when run as a script.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402


def ball_centres(shape, spacing, seed):
    """Jittered-grid centres (n, 3) and radii (n,) of touching ball cells in (z, y, x)."""
    rng = np.random.default_rng(seed)
    axes = [np.arange(spacing / 2, n, spacing) for n in shape]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    centres = grid + rng.uniform(-0.2, 0.2, grid.shape) * spacing
    radii = rng.uniform(0.45, 0.6, len(grid)) * spacing
    return centres, radii


def render_chunk(box, centres, radii):
    """Labels, flows (3, ...) and logits of the cells in a box (tuple of slices), by nearest centre."""
    lo = np.array([s.start for s in box], float)
    hi = np.array([s.stop for s in box], float)
    shape = tuple(int(h - l) for l, h in zip(lo, hi))
    near = np.all((centres + radii[:, None] > lo) & (centres - radii[:, None] < hi), axis=1)
    best = np.full(shape, np.inf, np.float32)
    label = np.zeros(shape, np.int64)
    flows = np.zeros((3,) + shape, np.float32)
    for k in np.flatnonzero(near):
        c, r = centres[k], radii[k]
        a = np.maximum(np.floor(c - r - lo), 0).astype(int)
        b = np.minimum(np.ceil(c + r - lo) + 1, shape).astype(int)
        sl = tuple(slice(i, j) for i, j in zip(a, b))
        zz, yy, xx = np.ogrid[sl[0], sl[1], sl[2]]
        d = [c[0] - lo[0] - zz, c[1] - lo[1] - yy, c[2] - lo[2] - xx]
        dist = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2).astype(np.float32)
        score = dist / np.float32(r)
        win = (score < 1.0) & (score < best[sl])
        best[sl][win] = score[win]
        label[sl][win] = k + 1
        safe = np.maximum(dist, 1e-6)
        for i in range(3):
            flows[(i,) + sl][win] = (np.broadcast_to(d[i], dist.shape) / safe)[win]
    logits = np.where(label > 0, 4.0, -4.0).astype(np.float32)
    return label, flows, logits


def make_volume(folder: Path, shape, chunks, spacing, seed):
    """Write flows.zarr (3, z, y, x) and cellprob.zarr (z, y, x), float32, uncompressed."""
    import zarr

    v3 = int(zarr.__version__.split(".")[0]) >= 3
    none = {"compressors": None} if v3 else {"compressor": None}
    make = zarr.create_array if v3 else zarr.open_array
    extra = {} if v3 else {"mode": "w"}
    flows = make(store=str(folder / "flows.zarr"), shape=(3,) + shape, chunks=(3,) + chunks, dtype="float32",
                 fill_value=0, **none, **extra)
    prob = make(store=str(folder / "cellprob.zarr"), shape=shape, chunks=chunks, dtype="float32",
                fill_value=0, **none, **extra)
    centres, radii = ball_centres(shape, spacing, seed)
    cells = set()
    for i in range(0, shape[0], chunks[0]):
        for j in range(0, shape[1], chunks[1]):
            for k in range(0, shape[2], chunks[2]):
                box = tuple(slice(o, min(o + c, n)) for o, c, n in zip((i, j, k), chunks, shape))
                label, f, p = render_chunk(box, centres, radii)
                flows[(slice(None),) + box] = f
                prob[box] = p
                cells.update(np.unique(label[label > 0]).tolist())
    return len(cells)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class MemorySampler(threading.Thread):
    """Polls every worker's resident set size and CPU time; keeps the peak RSS and last CPU time."""

    def __init__(self, client, every=0.5):
        super().__init__(daemon=True)
        self.client, self.every, self.stop = client, every, threading.Event()
        self.peak, self.cpu, self.cpu0 = {}, {}, {}

    def run(self):
        import psutil

        def usage():
            proc = psutil.Process()
            t = proc.cpu_times()
            return proc.memory_info().rss, t.user + t.system

        while not self.stop.is_set():
            try:
                for addr, (rss, cpu) in self.client.run(usage).items():
                    self.peak[addr] = max(self.peak.get(addr, 0), rss)
                    self.cpu0.setdefault(addr, cpu)
                    self.cpu[addr] = cpu
            except (OSError, TimeoutError):
                pass
            self.stop.wait(self.every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="scratch folder (deleted afterwards unless --keep)")
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 1024, 1024))
    parser.add_argument("--chunks", type=int, nargs=3, default=(64, 256, 256))
    parser.add_argument("--block", type=int, nargs=3, default=(128, 192, 192))
    parser.add_argument("--spacing", type=float, default=14.0, help="cell spacing in voxels (diameter ~ 1.05x)")
    parser.add_argument("--halo", type=int, default=20, help="voxels; must exceed the largest cell (1.2 x spacing)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1.25GiB", help="per worker")
    parser.add_argument("--flow-threshold", type=float, default=0.0,
                        help="compute_masks flow check; 0 (off) because the synthetic radial flows are not the "
                             "heat-diffusion flows the check recomputes, so it would prune correct cells")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the record here")
    args = parser.parse_args()

    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    from mediar3d.distributed import FlowsBlockFn, segment_blocks

    shape, chunks = tuple(args.shape), tuple(args.chunks)
    args.dir.mkdir(parents=True, exist_ok=True)
    record = {"shape": shape, "voxels": math.prod(shape), "block": args.block, "workers": args.workers,
              "threads_per_worker": 1, "memory_limit_per_worker": args.memory_limit,
              "flow_threshold": args.flow_threshold}
    try:
        t0 = time.perf_counter()
        record["cells_made"] = make_volume(args.dir, shape, chunks, args.spacing, seed=0)
        record["make_s"] = round(time.perf_counter() - t0, 1)
        record["input_bytes_on_disk"] = du(args.dir / "flows.zarr") + du(args.dir / "cellprob.zarr")
        halo = args.halo
        record["halo"] = halo
        limit = parse_bytes(args.memory_limit)
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=limit,
                          processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
            sampler = MemorySampler(client)
            sampler.start()
            t0 = time.perf_counter()
            result = segment_blocks(
                (str(args.dir / "flows.zarr"), str(args.dir / "cellprob.zarr")), args.dir / "labels.ome.zarr",
                block_fn=FlowsBlockFn({"min_size": 15, "flow_threshold": args.flow_threshold}), block_size=args.block, halo=halo, client=client,
                progress=False,
            )
            wall = time.perf_counter() - t0
            sampler.stop.set()
            sampler.join()
        record.update(
            wall_s=round(wall, 1), stage_s={k: round(v, 1) for k, v in result.seconds.items()},
            voxels_per_s=round(record["voxels"] / wall), n_blocks=result.n_blocks, cells_found=result.n_labels,
            merges=result.merges, output_bytes_on_disk=du(result.output),
            peak_rss_per_worker_MiB=sorted(round(v / 2**20) for v in sampler.peak.values()),
            cpu_s_per_worker=sorted(round(sampler.cpu[a] - sampler.cpu0[a], 1) for a in sampler.cpu),
        )
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    text = json.dumps(record, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
