#!/usr/bin/env python3
"""Benchmark: flow generation and flows -> masks, mediar3d against Cellpose 4, on one machine.

For each volume size, in one run:
  1. labels = mediar3d.data.synthetic.make_nuclei_volume(shape, n_nuclei=n, seed=0)[1]
  2. Cellpose (separate venv, CPU): shared/tools/peer_cellpose_3d.py on those labels, once
     with its 3D flows and once with the summed per-slice 2D flows ('ortho2d'); it times its
     masks_to_flows and its compute_masks (resize_and_compute_masks, do_3D=True, niter=200),
     scores the masks and stores its flows (--flows-cache) and masks (--save-masks).
  3. mediar3d, in this process: masks_to_flows and ortho2d_flows, then compute_masks with
     default settings on its own flows and on Cellpose's stored flows (the identical arrays
     Cellpose post-processed), cell probability +5 / -5 logits as the peer uses.
  4. Every mask volume (ours and Cellpose's) is scored with mediar3d.evaluation at IoU 0.5,
     0.75, 0.9 (AP = TP / (TP + FP + FN)).
Wall times, CPU times and the peak RSS of each phase (VmHWM reset through
/proc/self/clear_refs) are printed as JSON lines, then a Markdown table.

Usage (from the repository root):
  .venv/bin/python benchmarks/postprocess.py --sizes 64x256x256:300 128x512x512:1000 \
      --peer-python .peer/bin/python --peer-script ../shared/tools/peer_cellpose_3d.py \
      --work /tmp/mediar3d-bench
  (--no-peer skips Cellpose; --flows 3d or ortho2d runs one kind only; --peer-flows 3d runs
  Cellpose on its 3D flows only; --no-flow-check-row adds mediar3d without its flow-consistency
  check, which Cellpose 4 does not run in 3D.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024.0, 1)


def measure(fn, *args, **kwargs):
    """Run fn; return (result, wall s, cpu s, rss before MB, peak rss MB)."""
    base = _status_kb("VmRSS")
    _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return out, round(wall, 3), round(cpu, 3), _mb(base), _mb(_status_kb("VmHWM"))


def score(gt: np.ndarray, pred: np.ndarray) -> dict:
    from mediar3d.evaluation import average_precision

    ap = average_precision(gt, pred, thresholds=(0.5, 0.75, 0.9))
    return {"ap50": round(float(ap[0]), 4), "ap75": round(float(ap[1]), 4),
            "ap90": round(float(ap[2]), 4), "n_pred": int(pred.max())}


def warm_up() -> float:
    """Compile the numba kernels on a tiny volume; return the seconds it took."""
    from mediar3d.flows import masks_to_flows, ortho2d_flows
    from mediar3d.postprocess import compute_masks

    t0 = time.perf_counter()
    lab = np.zeros((12, 24, 24), np.int32)
    lab[2:10, 3:12, 3:12] = 1
    lab[2:10, 12:21, 5:14] = 2
    cp = np.where(lab > 0, 5.0, -5.0).astype(np.float32)
    compute_masks(masks_to_flows(lab), cp)
    compute_masks(ortho2d_flows(lab), cp)
    return round(time.perf_counter() - t0, 2)


def run_peer(args, labels_path: Path, kind: str, work: Path) -> dict:
    flows_cache = work / f"{labels_path.stem}_cellpose_{kind}.npy"
    masks_path = work / f"{labels_path.stem}_cellpose_{kind}_masks.tif"
    if flows_cache.exists():
        flows_cache.unlink()  # always time Cellpose's own flow generation
    cmd = [args.peer_python, args.peer_script, str(labels_path), "--flows", kind,
           "--threads", str(args.threads), "--flows-cache", str(flows_cache),
           "--save-masks", str(masks_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"peer failed ({proc.returncode}): {proc.stderr[-2000:]}")
    res = json.loads(lines[-1])
    res["flows_cache"] = str(flows_cache)
    res["masks_path"] = str(masks_path)
    return res


def bench_size(args, shape: tuple[int, int, int], n: int, work: Path) -> list[dict]:
    import tifffile

    from mediar3d.data.synthetic import make_nuclei_volume
    from mediar3d.flows import masks_to_flows, ortho2d_flows
    from mediar3d.postprocess import compute_masks

    gt = make_nuclei_volume(shape, n_nuclei=n, seed=0)[1]
    name = "x".join(map(str, shape))
    labels_path = work / f"nuclei_{name}.tif"
    tifffile.imwrite(labels_path, gt, compression="zlib")
    cp = np.where(gt > 0, 5.0, -5.0).astype(np.float32)
    common = {"shape": name, "n_gt": int(gt.max()), "fg_fraction": round(float((gt > 0).mean()), 4)}
    rows = []
    for kind in args.flows:
        make = masks_to_flows if kind == "3d" else ortho2d_flows
        load = round(os.getloadavg()[0], 2)
        flows, fw, fc, fbase, fpeak = measure(make, gt)
        masks, mw, mc, mbase, mpeak = measure(compute_masks, flows, cp)
        row = {"tool": "mediar3d", "flows": kind, "input": "own flows", **common,
               "flowgen_s": fw, "flowgen_cpu_s": fc, "reconstruct_s": mw, "reconstruct_cpu_s": mc,
               "rss_before_flowgen_mb": fbase, "peak_rss_flowgen_mb": fpeak,
               "rss_before_reconstruct_mb": mbase, "peak_rss_reconstruct_mb": mpeak,
               "loadavg_1m_at_start": load, **score(gt, masks)}
        print(json.dumps(row), flush=True)
        rows.append(row)
        del masks
        if args.no_flow_check_row:
            # Cellpose 4 ignores flow_threshold in 3D: the same steps as the peer's
            masks, mw, mc, mbase, mpeak = measure(compute_masks, flows, cp, flow_threshold=0.0)
            row = {"tool": "mediar3d", "flows": kind, "input": "own flows, no flow check", **common,
                   "reconstruct_s": mw, "reconstruct_cpu_s": mc, "rss_before_reconstruct_mb": mbase,
                   "peak_rss_reconstruct_mb": mpeak, "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
                   **score(gt, masks)}
            print(json.dumps(row), flush=True)
            rows.append(row)
            del masks
        if not args.no_peer and kind in (args.peer_flows or args.flows):
            peer = run_peer(args, labels_path, kind, work)
            cp_masks = tifffile.imread(peer["masks_path"])
            prow = {"tool": "cellpose", "flows": kind, "input": "own flows", **common,
                    "flowgen_s": peer["flowgen_s"], "flowgen_cpu_s": peer["flowgen_cpu_s"],
                    "reconstruct_s": peer["reconstruct_s"], "reconstruct_cpu_s": peer["reconstruct_cpu_s"],
                    "rss_before_flowgen_mb": peer["base_rss_mb"],
                    "peak_rss_flowgen_mb": peer["peak_rss_flowgen_mb"],
                    "peak_rss_reconstruct_mb": peer["peak_rss_reconstruct_mb"],
                    "loadavg_1m_at_start": peer["loadavg_1m_at_start"],
                    "cellpose": peer["cellpose"], "threads": peer["threads"],
                    "peer_ap50": peer["ap50"], "peer_ap90": peer["ap90"], **score(gt, cp_masks)}
            print(json.dumps(prow), flush=True)
            rows.append(prow)
            cp_flows = np.load(peer["flows_cache"])
            inside = gt > 0
            cos = (cp_flows[:, inside] * flows[:, inside]).sum(0) / np.maximum(
                np.linalg.norm(cp_flows[:, inside], axis=0) * np.linalg.norm(flows[:, inside], axis=0), 1e-12)
            del flows
            masks, mw, mc, mbase, mpeak = measure(compute_masks, cp_flows, cp)
            row = {"tool": "mediar3d", "flows": kind, "input": "cellpose flows", **common,
                   "reconstruct_s": mw, "reconstruct_cpu_s": mc, "rss_before_reconstruct_mb": mbase,
                   "peak_rss_reconstruct_mb": mpeak, "flow_cosine_vs_cellpose_median": round(float(np.median(cos)), 4),
                   "flow_cosine_vs_cellpose_p01": round(float(np.percentile(cos, 1)), 4),
                   "loadavg_1m_at_start": round(os.getloadavg()[0], 2), **score(gt, masks)}
            print(json.dumps(row), flush=True)
            rows.append(row)
            del cp_flows, masks
        else:
            del flows
    return rows


def table(rows: list[dict]) -> str:
    head = ("| volume | flows | tool | input | flow gen s | flows->masks s | AP50 | AP75 | AP90 | masks | "
            "peak RSS flows / masks MB |")
    out = [head, "|" + "---|" * 11]
    for r in rows:
        out.append(f"| {r['shape']} ({r['n_gt']}) | {r['flows']} | {r['tool']} | {r['input']} | "
                   f"{r.get('flowgen_s', '')} | {r['reconstruct_s']} | {r['ap50']} | {r['ap75']} | "
                   f"{r['ap90']} | {r['n_pred']} | {r.get('peak_rss_flowgen_mb', '')} / "
                   f"{r['peak_rss_reconstruct_mb']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["64x256x256:300"],
                    help="volumes as ZxYxX:N_NUCLEI (default 64x256x256:300)")
    ap.add_argument("--flows", nargs="+", choices=["3d", "ortho2d"], default=["3d", "ortho2d"])
    ap.add_argument("--peer-python", default=".peer/bin/python")
    ap.add_argument("--peer-script", default="../shared/tools/peer_cellpose_3d.py")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the Cellpose run")
    ap.add_argument("--no-peer", action="store_true", help="skip Cellpose")
    ap.add_argument("--peer-flows", nargs="+", choices=["3d", "ortho2d"], default=None,
                    help="flow kinds Cellpose runs on (default: all of --flows; its ortho2d flow "
                         "generation takes ~4x its 3D one)")
    ap.add_argument("--work", default="/tmp/mediar3d-bench", help="folder for labels, flows, masks")
    ap.add_argument("--no-flow-check-row", action="store_true",
                    help="also time mediar3d with flow_threshold=0 (Cellpose 4 skips its flow check in 3D)")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"numba_warmup_s": warm_up(), "cpus": os.cpu_count(),
                      "loadavg_1m": round(os.getloadavg()[0], 2)}), flush=True)
    rows = []
    for spec in args.sizes:
        dims, n = spec.split(":")
        shape = tuple(int(s) for s in dims.split("x"))
        rows += bench_size(args, shape, int(n), work)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
