#!/usr/bin/env python3
"""Benchmark: parameters and forward time of every 2D network, per 256^2 and 512^2 slice.

For each registered 2D model (full default configuration, random weights, eval mode,
`torch.inference_mode`), one (1, 1, S, S) slice per call: a warm-up call, then
`--repeats` timed calls; the median and minimum wall time are reported, and the median
CPU time of this process per call (all its threads; on a shared, overloaded machine this
is the steadier figure: with --threads 1 it is what one idle core would take). Prints one
JSON line per (model, size), then a Markdown table with the thesis' parameter counts.

Usage (from the repository root):
    .venv/bin/python benchmarks/models.py                       # all models, 256 and 512, CPU
    .venv/bin/python benchmarks/models.py --models unet-small --repeats 50 --threads 2
    .venv/bin/python benchmarks/models.py --device cuda --batch 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from mediar3d.models import count_parameters, create_model, get_model_entry, list_models


def time_forward(net: torch.nn.Module, size: int, batch: int, repeats: int,
                 device: torch.device) -> tuple[list[float], list[float]]:
    """Wall and process-CPU times (seconds) of `repeats` forward calls on (batch, C, size, size), after a warm-up."""
    x = torch.rand(batch, net.in_channels, size, size, device=device)
    wall, cpu = [], []
    with torch.inference_mode():
        net(x)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, start_cpu = time.perf_counter(), time.process_time()
            net(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list_models(spatial_dims=2), help="registry names")
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512], help="slice sizes S (S x S)")
    parser.add_argument("--batch", type=int, default=1, help="slices per call (times are per call)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per model and size")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device),
                      "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "load_average": os.getloadavg()}), flush=True)
    rows = []
    for name in args.models:
        torch.manual_seed(0)
        net = create_model(name).to(device).eval()
        params = count_parameters(net) / 1e6
        row = {"model": name, "params_m": round(params, 2), "thesis_params_m": get_model_entry(name).thesis_params_m}
        for size in args.sizes:
            times, cpu = time_forward(net, size, args.batch, args.repeats, device)
            row[f"median_ms_{size}"] = round(1e3 * statistics.median(times), 1)
            row[f"min_ms_{size}"] = round(1e3 * min(times), 1)
            row[f"cpu_ms_{size}"] = round(1e3 * statistics.median(cpu), 1)
            print(json.dumps({"model": name, "size": size, "batch": args.batch, "params_m": row["params_m"],
                              "median_ms": row[f"median_ms_{size}"], "min_ms": row[f"min_ms_{size}"],
                              "cpu_ms": row[f"cpu_ms_{size}"], "repeats": args.repeats,
                              "load_average": os.getloadavg()[0]}), flush=True)
        rows.append(row)
        del net
    header = "| model | parameters (M) | thesis (M) | " + " | ".join(
        f"{s}x{s} wall median / min, CPU (ms)" for s in args.sizes) + " |"
    print(header)
    print("|" + "---|" * (3 + len(args.sizes)))
    for row in rows:
        thesis = f"{row['thesis_params_m']:.2f}" if row["thesis_params_m"] else "-"
        cells = " | ".join(f"{row[f'median_ms_{s}']} / {row[f'min_ms_{s}']}, {row[f'cpu_ms_{s}']}" for s in args.sizes)
        print(f"| `{row['model']}` | {row['params_m']:.2f} | {thesis} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
